//! The embedded Livepeer gateway: the gateway side of the orchestrator protocol (`network-protocol.md`).
//!
//! - [`gateway`]: the [`Transcoder`](studio_media_core::transcode::Transcoder) that sends live segments to
//!   orchestrators, pays them and reads the renditions back, with per-segment fallback ([`gateway::WithFallback`]).
//! - [`discovery`]: where orchestrators come from (a static list, a webhook, the chain).
//! - [`orchestrator`], [`segment`], [`capabilities`]: the messages of one exchange, built and read.
//! - [`transport`]: gRPC and HTTPS over TLS with HTTP/2, accepting orchestrators' self-signed certificates.
//! - [`proto`]: the protobuf messages of `net/lp_rpc.proto`.
//! - [`pm`]: probabilistic micropayment tickets; [`credentials`]: what the gateway signs to identify itself.

pub mod capabilities;
pub mod chain;
pub mod credentials;
pub mod discovery;
pub mod gateway;
pub mod keystore;
pub mod orchestrator;
pub mod pm;
pub mod proto;
pub mod segment;
pub mod transport;

/// The Ethereum types of this crate's API (addresses, 256-bit amounts).
pub use alloy::primitives::{Address, U256};
