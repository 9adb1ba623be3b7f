//! Users, projects and API keys: who owns what, and the admin API that manages them.

pub mod accounts;
pub mod routes;
