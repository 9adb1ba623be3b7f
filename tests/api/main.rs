//! End-to-end API tests: the real server on loopback, on SQLite and on PostgreSQL.

mod clients;
mod clips;
mod conventions;
mod edge;
mod failures;
mod health;
mod ingest;
mod ingest_limits;
mod live;
mod multistream;
mod network;
mod nodes;
mod openapi;
mod playback;
mod playback_gate;
mod player;
mod recording;
mod signing_keys;
mod storage;
mod streams;
mod tasks;
mod tenancy;
mod viewership;
mod vod;
mod webhooks;
mod webrtc;
