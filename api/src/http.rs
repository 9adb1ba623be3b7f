//! HTTP plumbing shared by every resource: the server and its connection deadlines, JSON bodies,
//! list paging, CORS and metrics.

pub mod cors;
pub mod guard;
pub mod json;
pub mod list;
pub mod metrics;
pub mod server;
pub mod validate;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The address of the client that sent the request: the TCP peer (the server records it on
/// every connection, [`server::serve`]); unspecified for requests that did not come over a
/// connection (tests calling the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(ClientAddr(peer))
    }
}
