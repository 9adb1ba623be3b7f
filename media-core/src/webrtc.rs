//! WebRTC on one UDP port (str0m, sans-IO): WHIP publishers and WHEP viewers.
//!
//! - [`udp`]: the port, shared by every peer: datagrams are routed by the ICE ufrag this server
//!   gave the peer, then by address. The server is ICE-lite (it answers connectivity checks and
//!   sends none), which is all a server with a reachable address needs.
//! - [`peer`]: drives one peer's `Rtc`.
//! - [`publish`]: a WHIP publisher's H.264 becomes [`Packet`](crate::packet::Packet)s on an
//!   [`IngestEvent`] queue, exactly as an RTMP or SRT publish does, so the rest of the pipeline
//!   (sessions, HLS, renditions, recording) does not know the difference.
//! - [`feed`]: what WHEP viewers of a stream follow, made once per stream from its
//!   [`LiveFeed`](crate::live_feed::LiveFeed): H.264 as it is (or re-encoded without B-frames)
//!   and the audio in Opus.
//! - [`play`]: a WHEP viewer follows that feed: H.264 is forwarded without waiting for segments,
//!   from the last keyframe on.
//!
//! Only H.264 (and Opus) are negotiated: browsers list VP8, VP9 and AV1 first but take H.264
//! when it is all the answer offers.
//!
//! Bounded: peers per node ([`WebrtcConfig::max_peers`]), the size of an offer, the time a peer
//! has to connect, the datagrams queued per peer, and silence from a connected peer.

pub mod feed;
mod peer;
pub mod play;
pub mod publish;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;
use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::ingest::{IngestEvent, IngestLimits};
use peer::PeerLink;
use udp::Router;

/// Where the WebRTC port listens and what it allows.
#[derive(Debug, Clone)]
pub struct WebrtcConfig {
    /// The UDP port of every session (`--webrtc-addr`, `0.0.0.0:8189` by default).
    pub addr: SocketAddr,
    /// Addresses advertised to peers as host candidates (the server's public addresses behind
    /// NAT or in the cloud). Empty: the bound address, or when that is unspecified, the
    /// address of the interface with the default route.
    pub public_ips: Vec<IpAddr>,
    /// Peers (publishers and viewers together) this node serves at once.
    pub max_peers: usize,
    /// Largest SDP offer accepted, in bytes.
    pub max_sdp_bytes: usize,
    /// Time a peer has, after the answer, to complete ICE and DTLS.
    pub connect_timeout: Duration,
    /// A connected peer silent this long is closed.
    pub idle_timeout: Duration,
    /// Datagrams queued for one peer before more are dropped.
    pub inbox_datagrams: usize,
    /// What a WHIP publish is held to, as RTMP and SRT publishes are.
    pub limits: IngestLimits,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8189)),
            public_ips: Vec::new(),
            max_peers: 1000,
            max_sdp_bytes: 32 * 1024,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            inbox_datagrams: 512,
            limits: IngestLimits::default(),
        }
    }
}

/// Why an offer was not answered.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The offer is larger than [`WebrtcConfig::max_sdp_bytes`].
    #[error("the SDP offer is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: usize, limit: usize },
    /// The offer is not SDP str0m can read.
    #[error("the SDP offer cannot be parsed: {0}")]
    Malformed(String),
    /// Nothing in the offer can be used (no H.264 video, no Opus audio).
    #[error("{0}")]
    NoUsableMedia(&'static str),
    /// The node serves [`WebrtcConfig::max_peers`] peers already.
    #[error("this server has no room for another WebRTC session; try again later")]
    Full,
    /// The server is shutting down.
    #[error("this server is shutting down")]
    Closed,
}

/// An accepted offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The SDP answer, for the `201`'s body.
    pub sdp: String,
    /// Names the session (for its `Location`, and [`WebrtcServer::close`]); unguessable.
    pub peer_id: String,
}

/// The WebRTC port of a node. Dropping it closes every session.
pub struct WebrtcServer {
    shared: Arc<Shared>,
    receive: JoinHandle<()>,
}

struct Shared {
    socket: Arc<UdpSocket>,
    router: Arc<Router>,
    /// Host candidates advertised in every answer; datagrams are fed as arriving on the first.
    candidates: Vec<SocketAddr>,
    config: WebrtcConfig,
    crypto: Arc<CryptoProvider>,
    /// Where WHIP publishes are reported.
    events: mpsc::Sender<IngestEvent>,
    /// Set by [`WebrtcServer::close_all`]: no new sessions.
    closed: std::sync::atomic::AtomicBool,
    /// Sessions by peer id, to close them on request.
    peers: std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>,
}

impl Drop for WebrtcServer {
    fn drop(&mut self) {
        self.close_all();
        self.receive.abort();
    }
}

impl WebrtcServer {
    /// Binds the port. WHIP publishes are reported on the returned channel, as the RTMP and
    /// SRT servers report theirs.
    pub async fn bind(
        config: WebrtcConfig,
    ) -> std::io::Result<(WebrtcServer, mpsc::Receiver<IngestEvent>)> {
        let socket = Arc::new(UdpSocket::bind(config.addr).await?);
        let bound = socket.local_addr()?;
        let ips = if !config.public_ips.is_empty() {
            config.public_ips.clone()
        } else if !bound.ip().is_unspecified() {
            vec![bound.ip()]
        } else {
            vec![default_route_address().unwrap_or(IpAddr::from([127, 0, 0, 1]))]
        };
        let candidates = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, bound.port()))
            .collect();
        let router = Arc::new(Router::default());
        let receive = tokio::spawn(udp::receive(socket.clone(), router.clone()));
        let (events, events_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            socket,
            router,
            candidates,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            config,
            events,
            closed: Default::default(),
            peers: Default::default(),
        });
        Ok((WebrtcServer { shared, receive }, events_rx))
    }

    /// The bound port's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .socket
            .local_addr()
            .expect("a bound UDP socket has an address")
    }

    /// The host candidates advertised to peers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.shared.candidates
    }

    /// Sessions open now (publishers and viewers).
    pub fn peers(&self) -> usize {
        self.shared.router.len()
    }

    /// Ends every session and refuses new ones (shutdown).
    pub fn close_all(&self) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let peers = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for stop in peers.values() {
            stop.notify_one();
        }
    }

    /// Ends the session `peer_id` (a WHIP or WHEP `DELETE`); false when there is none.
    pub fn close(&self, peer_id: &str) -> bool {
        let peers = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match peers.get(peer_id) {
            Some(stop) => {
                stop.notify_one();
                true
            }
            None => false,
        }
    }

    /// Accepts a WHIP offer of an authorized publisher; see [`publish`].
    pub fn publish(
        &self,
        offer: &str,
        request: publish::PublishPeer,
    ) -> Result<Answer, OfferError> {
        let (link, answer, stop) = self.shared.accept(offer, Role::Publish)?;
        let events = self.shared.events.clone();
        let guard = self.shared.register(&answer.peer_id, stop.clone());
        tokio::spawn(publish::run(
            link,
            request,
            stop,
            events,
            self.shared.config.clone(),
            guard,
        ));
        Ok(answer)
    }

    /// Accepts a WHEP offer of a viewer of `feed`; see [`play`].
    pub fn play(
        &self,
        offer: &str,
        feed: Arc<crate::live_feed::LiveFeed>,
    ) -> Result<Answer, OfferError> {
        let subscription = feed
            .subscribe()
            .ok_or(OfferError::NoUsableMedia("the stream has ended"))?;
        let (link, answer, stop) = self.shared.accept(offer, Role::Play)?;
        let guard = self.shared.register(&answer.peer_id, stop.clone());
        tokio::spawn(play::run(
            link,
            subscription,
            stop,
            self.shared.config.clone(),
            guard,
        ));
        Ok(answer)
    }
}

/// Which way media flows for a peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Publish,
    Play,
}

/// Removes a session from [`Shared::peers`] when it ends.
pub(crate) struct PeerGuard {
    shared: Arc<Shared>,
    peer_id: String,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.peer_id);
    }
}

impl Shared {
    fn register(self: &Arc<Self>, peer_id: &str, stop: Arc<Notify>) -> PeerGuard {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer_id.to_string(), stop);
        PeerGuard {
            shared: self.clone(),
            peer_id: peer_id.to_string(),
        }
    }

    /// Answers `offer` with a new `Rtc` routed on the port.
    fn accept(
        self: &Arc<Self>,
        offer: &str,
        role: Role,
    ) -> Result<(PeerLink, Answer, Arc<Notify>), OfferError> {
        if offer.len() > self.config.max_sdp_bytes {
            return Err(OfferError::TooLarge {
                size: offer.len(),
                limit: self.config.max_sdp_bytes,
            });
        }
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(OfferError::Closed);
        }
        if self.router.len() >= self.config.max_peers {
            return Err(OfferError::Full);
        }
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let creds = IceCreds {
            ufrag: random_token(16),
            pass: random_token(32),
        };
        let mut rtc: Rtc = RtcConfig::new()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        for candidate in &self.candidates {
            let candidate = Candidate::host(*candidate, "udp")
                .map_err(|e| OfferError::Malformed(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Malformed(e.to_string()))?
            .to_sdp_string();
        let usable = match role {
            Role::Publish => media_accepted(&answer, "video") || media_accepted(&answer, "audio"),
            Role::Play => media_accepted(&answer, "video"),
        };
        if !usable {
            return Err(OfferError::NoUsableMedia(match role {
                Role::Publish => "the offer has no H.264 video and no Opus audio to send",
                Role::Play => "the offer cannot receive H.264 video",
            }));
        }
        let (inbox_tx, inbox) = mpsc::channel(self.config.inbox_datagrams.max(1));
        let route = self.router.add(creds.ufrag, inbox_tx);
        let link = PeerLink::new(rtc, inbox, self.socket.clone(), self.candidates[0], route);
        Ok((
            link,
            Answer {
                sdp: answer,
                peer_id: random_token(24),
            },
            Arc::new(Notify::new()),
        ))
    }
}

/// Whether the SDP answer accepted (a non-zero port) a media section of `kind`.
fn media_accepted(answer: &str, kind: &str) -> bool {
    answer.lines().any(|line| {
        line.strip_prefix("m=")
            .and_then(|rest| rest.strip_prefix(kind))
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|port| port != "0")
    })
}

fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The local address of the interface a packet to the internet would leave by (no packet is
/// sent): what a server bound to every interface advertises when not told its public address.
fn default_route_address() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("203.0.113.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_media_sections_are_told_apart() {
        let answer = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n";
        assert!(media_accepted(answer, "video"));
        assert!(!media_accepted(answer, "audio"));
    }
}
