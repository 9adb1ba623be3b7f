//! Webhooks: subscriptions, the delivery engine that sends events to them, and their logs.

pub mod delivery;
pub mod destination;
pub mod model;
pub mod repo;
pub mod routes;
pub mod signature;
