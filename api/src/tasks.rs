//! Background work as Studio's `task` resource, run by a job system in the database.
//!
//! - `model`: the task as the API shows it;
//! - `repo`: task rows, always within a project, and the claim/lease/finish statements the
//!   runner uses; every change of phase writes its `task.*` event in the same transaction;
//! - `runner`: claims due tasks with a lease, renews it while a job runs, retries, cancels,
//!   enforces deadlines and per-node concurrency;
//! - `routes`: `GET /task` and `GET /task/{id}`.

pub mod model;
pub mod repo;
pub mod routes;
pub mod runner;

pub use model::{Task, TaskPhase, TaskStatus, TaskType};
