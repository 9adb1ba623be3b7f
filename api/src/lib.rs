//! The `studio` server: a self-hostable video platform that speaks the Livepeer Studio REST API.
//!
//! Rooms of the house:
//! - `app`: shared state, the router, starting and stopping a server;
//! - `config`, `db`, `clock`, `ids`, `error`, `logging`: foundations;
//! - `auth`, `tenancy`: API keys, users and projects;
//! - `http`: JSON bodies, list paging, CORS and metrics shared by every resource;
//! - `streams`, `sessions`, `assets`, `multistream`, `webhooks`, `playback`: the REST resources;
//! - `access_control`: signing keys and the playback gate (JWT and webhook playback policies);
//! - `live`: RTMP ingest (media-core) wired to streams and sessions;
//! - `recording`: recorded sessions turned into assets (VOD playlist and MP4);
//! - `tasks`: background work (Studio's `task`) and the job runner that does it once across nodes;
//! - `events`: the outbox every webhook event goes through; `webhooks::delivery` sends them;
//! - `profiles`: transcoding profiles shared by streams and (later) assets;
//! - `viewership`: views counted from playback and players' beacons, and the usage API;
//! - `health`: what `/api/healthz` checks;
//! - `openapi`: the generated API document.

pub mod access_control;
pub mod app;
pub mod assets;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod ids;
pub mod live;
pub mod logging;
pub mod multistream;
pub mod openapi;
pub mod playback;
pub mod profiles;
pub mod recording;
pub mod secrets;
pub mod sessions;
pub mod streams;
pub mod tasks;
pub mod tenancy;
pub mod viewership;
pub mod webhooks;
