//! Live streams: the resource encoders publish to and viewers play.

pub mod model;
pub mod repo;
pub mod routes;
