//! The embedded Livepeer gateway: the gateway side of the orchestrator protocol (`network-protocol.md`).
//!
//! So far: probabilistic micropayments ([`pm`]) and the signatures that identify the gateway to orchestrators
//! ([`credentials`]). Discovery, the gRPC/HTTP transport and selection come next.

pub mod credentials;
pub mod pm;
