//! The one UDP port every WebRTC peer of the node shares, and the routing of its datagrams.
//!
//! The server is ICE-lite: it never sends connectivity checks, it answers them. A peer's first
//! datagrams are STUN binding requests whose `USERNAME` starts with the ICE ufrag this server
//! chose for that peer, which names the peer; the address they come from is then remembered,
//! and the DTLS, SRTP and RTCP datagrams that follow are routed by address. Checks may come from
//! an address the peer never advertised (Chromium on loopback, NAT): that is accepted
//! (a peer-reflexive candidate), within [`MAX_ADDRESSES_PER_PEER`].
//!
//! Each peer has a bounded inbox: a peer that does not keep up loses datagrams, as on a slow
//! network, and never holds up the port or another peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Addresses one peer's datagrams may come from.
pub(crate) const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Largest datagram read (WebRTC keeps them under the path MTU).
const MAX_DATAGRAM: usize = 2048;

/// A datagram received for a peer: where it came from and what it held.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub source: SocketAddr,
    pub contents: Bytes,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_address: HashMap<SocketAddr, String>,
}

struct Route {
    inbox: mpsc::Sender<Datagram>,
    addresses: Vec<SocketAddr>,
}

/// The peers of the port, by ICE ufrag and by address.
#[derive(Default)]
pub(crate) struct Router {
    routes: Mutex<Routes>,
}

impl Router {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Routes datagrams for `ufrag` to `inbox` until the returned guard is dropped.
    pub(crate) fn add(
        self: &Arc<Self>,
        ufrag: String,
        inbox: mpsc::Sender<Datagram>,
    ) -> RouteGuard {
        self.routes().by_ufrag.insert(
            ufrag.clone(),
            Route {
                inbox,
                addresses: Vec::new(),
            },
        );
        RouteGuard {
            router: self.clone(),
            ufrag,
        }
    }

    /// Peers routed now.
    pub(crate) fn len(&self) -> usize {
        self.routes().by_ufrag.len()
    }

    /// Hands a datagram to its peer; false when no peer wants it.
    fn route(&self, datagram: Datagram) -> bool {
        let mut routes = self.routes();
        let routes = &mut *routes;
        let ufrag = match stun_local_ufrag(&datagram.contents) {
            Some(ufrag) => {
                let Some(route) = routes.by_ufrag.get_mut(ufrag) else {
                    return false;
                };
                if !route.addresses.contains(&datagram.source) {
                    if route.addresses.len() >= MAX_ADDRESSES_PER_PEER {
                        return false;
                    }
                    // An address already taken by another peer stays with it.
                    if routes.by_address.contains_key(&datagram.source) {
                        return false;
                    }
                    route.addresses.push(datagram.source);
                    routes.by_address.insert(datagram.source, ufrag.to_string());
                }
                ufrag.to_string()
            }
            None => match routes.by_address.get(&datagram.source) {
                Some(ufrag) => ufrag.clone(),
                None => return false,
            },
        };
        let Some(route) = routes.by_ufrag.get(&ufrag) else {
            return false;
        };
        // A full inbox loses the datagram, as a congested network would.
        route.inbox.try_send(datagram).is_ok()
    }
}

/// Keeps a peer routed; dropping it forgets the peer and its addresses.
pub(crate) struct RouteGuard {
    router: Arc<Router>,
    ufrag: String,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.router.routes();
        if let Some(route) = routes.by_ufrag.remove(&self.ufrag) {
            for address in route.addresses {
                routes.by_address.remove(&address);
            }
        }
    }
}

/// Reads the port until it fails (the socket is closed with the server), routing every datagram.
pub(crate) async fn receive(socket: Arc<UdpSocket>, router: Arc<Router>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, source) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors of earlier sends surface here on Linux; they concern one peer only.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(err) => {
                tracing::warn!(error = %err, "the WebRTC port failed; no more WebRTC traffic");
                return;
            }
        };
        let datagram = Datagram {
            source,
            contents: Bytes::copy_from_slice(&buf[..len]),
        };
        if !router.route(datagram) {
            metrics::counter!("studio_webrtc_datagrams_dropped_total").increment(1);
        }
    }
}

/// For a STUN binding request, the part of its `USERNAME` that names the receiver (RFC 8445:
/// `receiver-ufrag:sender-ufrag`). `None` for anything else.
pub(crate) fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USERNAME: u16 = 0x0006;
    if datagram.len() < 20 || datagram[0..2] != BINDING_REQUEST || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let attributes = datagram.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= attributes.len() {
        let kind = u16::from_be_bytes([attributes[at], attributes[at + 1]]);
        let len = usize::from(u16::from_be_bytes([attributes[at + 2], attributes[at + 3]]));
        let value = attributes.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut out = vec![0x00, 0x01];
        out.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        out.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        out.extend_from_slice(&[7u8; 12]);
        out.extend_from_slice(&[0x00, 0x06]);
        out.extend_from_slice(&(username.len() as u16).to_be_bytes());
        out.extend_from_slice(username);
        out.resize(20 + 4 + padded, 0);
        out
    }

    #[test]
    fn the_receiver_ufrag_is_read_from_a_binding_request() {
        assert_eq!(
            stun_local_ufrag(&binding_request(b"srv1:cli")),
            Some("srv1")
        );
        assert_eq!(stun_local_ufrag(&binding_request(b"abc")), Some("abc"));
        // Truncated, not STUN, or a response: nothing.
        let request = binding_request(b"srv1:cli");
        assert_eq!(stun_local_ufrag(&request[..request.len() - 4]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut response = request.clone();
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(stun_local_ufrag(&response), None);
    }

    #[tokio::test]
    async fn datagrams_follow_the_ufrag_then_the_address() {
        let router = Arc::new(Router::default());
        let (tx, mut rx) = mpsc::channel(4);
        let guard = router.add("srv1".into(), tx);
        let peer: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:5001".parse().unwrap();
        let dtls = Bytes::from_static(&[22, 254, 253, 0]);
        let unrouted = |source| Datagram {
            source,
            contents: dtls.clone(),
        };
        // Unknown address before any check: dropped.
        assert!(!router.route(unrouted(peer)));
        let check = Bytes::from(binding_request(b"srv1:cli"));
        assert!(router.route(Datagram {
            source: peer,
            contents: check.clone()
        }));
        assert!(router.route(unrouted(peer)));
        assert!(!router.route(unrouted(stranger)));
        // Another ufrag is not this peer.
        assert!(!router.route(Datagram {
            source: stranger,
            contents: Bytes::from(binding_request(b"other:cli"))
        }));
        assert_eq!(rx.recv().await.unwrap().contents, check);
        assert_eq!(rx.recv().await.unwrap().contents, dtls);
        drop(guard);
        assert!(!router.route(unrouted(peer)));
        assert_eq!(router.len(), 0);
    }
}
