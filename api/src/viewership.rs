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

/// The viewer's country as the trusted proxy in front says it (`viewership.country_header`), upper
/// case; empty when not configured or not sent.
pub fn country(
    config: &crate::config::ViewershipConfig,
    headers: &axum::http::HeaderMap,
) -> String {
    config
        .country_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .chars()
                .take(8)
                .collect::<String>()
                .to_ascii_uppercase()
        })
        .unwrap_or_default()
}
