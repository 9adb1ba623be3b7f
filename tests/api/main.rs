//! End-to-end API tests: the real server on loopback, on SQLite and on PostgreSQL.

mod conventions;
mod webhooks;
