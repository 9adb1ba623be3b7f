//! End-to-end API tests: the real server on loopback, on SQLite and on PostgreSQL.

mod clients;
mod conventions;
mod health;
mod ingest;
mod live;
mod multistream;
mod network;
mod nodes;
mod openapi;
mod playback;
mod player;
mod recording;
mod signing_keys;
mod streams;
mod tenancy;
mod webhooks;
