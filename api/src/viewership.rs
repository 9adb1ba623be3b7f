//! Viewership and usage analytics.
//!
//! - `collector`: media requests served become viewer sessions and hourly rollups, off the
//!   request path (batched writes every flush interval);
//! - `beacon`: `POST /analytics/log`, the player beacon of Livepeer's web player (time to first
//!   frame, rebuffering, errors);
//! - `agent`: device type, browser and OS from a user agent;
//! - `repo`: the `view_sessions` and `view_rollups` tables;
//! - `usage`: transcoded and stored minutes;
//! - `routes`: `/data/views/query[/creator|/total/{playbackId}]`, `/data/views/now`,
//!   `/data/usage/query`.

pub mod agent;
pub mod beacon;
pub mod collector;
pub mod repo;
pub mod routes;
pub mod usage;

pub use collector::{Event, Hit, Media, Views};
