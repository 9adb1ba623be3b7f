//! HTTP plumbing shared by every resource: the server and its connection deadlines, JSON bodies,
//! list paging, CORS and metrics.

pub mod cors;
pub mod guard;
pub mod json;
pub mod list;
pub mod metrics;
pub mod server;
pub mod validate;
