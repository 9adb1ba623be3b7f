//! Access control: who may play what.
//!
//! - `signing_keys`: the `/access-control/signing-key` resource (P-256 key pairs of a project);
//! - `gate`: the playback gate every playback request passes: a content's playback policy
//!   (`public`, `jwt`, `webhook`, and `allowedOrigins`) against what the viewer presents;
//! - `credentials`: reading JWTs, access keys, grants and the page origin from a request;
//! - `jwt`: verifying playback JWTs against the project's signing keys;
//! - `webhook`: asking a project's access webhook about an access key;
//! - `grant`: the signed grants the gate writes into the playlists of admitted viewers;
//! - `cache`: the bounded expiring cache their decisions live in.

pub mod cache;
pub mod credentials;
pub mod gate;
pub mod grant;
pub mod jwt;
pub mod signing_keys;
pub mod webhook;

pub use credentials::Credentials;
pub use gate::{Admission, Content, PlaybackGate};
