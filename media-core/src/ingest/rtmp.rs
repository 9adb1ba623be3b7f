//! RTMP ingest: a tokio server around rml_rtmp's sans-IO handshake and `ServerSession`.
//!
//! One task per TCP connection. A publisher must connect to the configured application
//! (`live`), and its stream key is authorized through the caller's [`PublishAuthorizer`]
//! *before* the publish is accepted: a refused key gets an RTMP error status and a closed
//! connection, and the caller sees no event at all. Accepted publishes produce
//! [`IngestEvent::Started`], then [`IngestEvent::Packet`]s, then exactly one
//! [`IngestEvent::Ended`], all on one channel.
//!
//! What a client controls is bounded, and most tightly before its publish is authorized:
//!
//! - connections: [`RtmpConfig::max_connections`] in all; of those not yet publishing, at most
//!   [`RtmpConfig::max_unauthorized`], and [`RtmpConfig::max_unauthorized_per_address`] from one
//!   address, so a flood of idle sockets neither exhausts the server nor locks out publishers
//!   from elsewhere; they have [`RtmpConfig::handshake_timeout`] and
//!   [`RtmpConfig::publish_timeout`] to get going;
//! - bytes: every byte passes [`chunks::ChunkGuard`] before rml_rtmp, which refuses messages
//!   over [`RtmpConfig::max_unauthorized_message`] until the publish is authorized (then over
//!   the largest frame), and AMF commands that are large or deeply nested (rml_rtmp decodes them
//!   recursively: a deep one would overflow the stack and abort the process);
//! - after the publish: what every publish is held to ([`IngestLimits`]: memory, pacing against
//!   the wall clock, a queue of its own), silence, stream key length.
//!
//! A panic while serving a connection ends that connection only, reported as its end.

mod amf0;
mod chunks;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

use self::chunks::{ChunkError, ChunkGuard};
use super::session::{self, PacketSender};
use super::{
    EndReason, IngestEvent, IngestLimits, IngestProtocol, LogLimiter, PublishAuthorizer,
    PublishRequest, SessionHandle, SessionId,
};
use crate::flv::{FlvDemuxer, FlvError};

/// Refused and failed connections are logged at this rate at most.
static REFUSALS: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));
/// Bytes read at once before a publish is authorized, and after.
const UNAUTHORIZED_READ: usize = 4 * 1024;
const PUBLISHING_READ: usize = 64 * 1024;
/// An RTMP video or audio message is an FLV tag body: a frame plus a few bytes of header.
const FLV_TAG_OVERHEAD: usize = 16;

/// Where and how the RTMP server listens, and the limits it puts on clients.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// Listen address; `0.0.0.0:1935` by default (the `--rtmp-addr` flag).
    pub addr: SocketAddr,
    /// The only RTMP application name accepted; encoders push to `rtmp://host/live/<key>`.
    pub app: String,
    /// Longest time a client may take to complete the RTMP handshake.
    pub handshake_timeout: Duration,
    /// Longest time from TCP accept until a publish is accepted.
    pub publish_timeout: Duration,
    /// Longest silence on a connection before it is dropped. A publishing encoder sends
    /// frames many times a second, so silence means it is gone without closing TCP.
    pub idle_timeout: Duration,
    /// Longest wait for the authorization callback; a slow database must not hold sockets.
    pub authorize_timeout: Duration,
    /// Connections beyond this many are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections not yet publishing (handshaking, connecting, being authorized), from all
    /// addresses; more are closed as soon as they are accepted.
    pub max_unauthorized: usize,
    /// Connections not yet publishing from one IP address.
    pub max_unauthorized_per_address: usize,
    /// Longest RTMP message accepted before a publish is authorized (`connect`, `publish` and
    /// their companions take a few hundred bytes).
    pub max_unauthorized_message: usize,
    /// Longest stream key accepted, in bytes.
    pub max_stream_key_len: usize,
    /// Capacity of the channel of [`IngestEvent`]s (starts and ends; packets travel on each
    /// publish's own queue).
    pub event_capacity: usize,
    /// What every accepted publish is held to.
    pub limits: IngestLimits,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".to_owned(),
            handshake_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            authorize_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_unauthorized: 256,
            max_unauthorized_per_address: 16,
            max_unauthorized_message: 8 * 1024,
            max_stream_key_len: 256,
            event_capacity: 1024,
            limits: IngestLimits::default(),
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// Reading or writing the socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish within [`RtmpConfig::handshake_timeout`].
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake bytes were invalid.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// No publish was accepted within [`RtmpConfig::publish_timeout`].
    #[error("no publish within {0:?} of connecting")]
    PublishTimeout(Duration),
    /// Nothing was received for [`RtmpConfig::idle_timeout`].
    #[error("no data for {0:?}")]
    IdleTimeout(Duration),
    /// The RTMP chunk or message stream was invalid.
    #[error("RTMP session error: {0}")]
    Session(#[from] ServerSessionError),
    /// The chunk stream broke a limit or contradicted itself (see [`chunks`]).
    #[error("RTMP input refused: {0}")]
    Chunk(#[from] ChunkError),
    /// Serving the connection panicked; the connection was dropped.
    #[error("internal error serving the connection: {0}")]
    Panic(String),
    /// The client connected to an application other than [`RtmpConfig::app`].
    #[error("unknown RTMP application {0:?}")]
    UnknownApp(String),
    /// The client asked to play; this server only ingests.
    #[error("playback over RTMP is not supported")]
    PlayNotSupported,
    /// The client tried a second publish on the same connection.
    #[error("only one publish per connection")]
    SecondPublish,
    /// The stream key is empty or longer than [`RtmpConfig::max_stream_key_len`].
    #[error("stream key of {len} bytes (must be 1 to {limit})")]
    BadStreamKey {
        /// The key's length.
        len: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The authorizer refused the key.
    #[error("publish refused: {0}")]
    Refused(String),
    /// The authorizer did not answer within [`RtmpConfig::authorize_timeout`].
    #[error("authorization not answered within {0:?}")]
    AuthorizeTimeout(Duration),
    /// The published media is not H.264/AAC or is malformed.
    #[error(transparent)]
    Media(#[from] FlvError),
    /// The caller dropped the event receiver.
    #[error("event receiver dropped")]
    ReceiverGone,
}

/// A running RTMP server. Dropping it stops accepting and closes every connection (without
/// [`IngestEvent::Ended`] events: the caller is shutting down).
#[derive(Debug)]
pub struct RtmpServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared<A> {
    config: RtmpConfig,
    authorizer: A,
    events: mpsc::Sender<IngestEvent>,
    connections: Arc<Semaphore>,
    unauthorized: Arc<Semaphore>,
    per_address: Arc<AddressCounts>,
}

/// Connections not yet publishing, per address.
#[derive(Default)]
struct AddressCounts(Mutex<HashMap<IpAddr, usize>>);

/// One unauthorized connection's place in the counts; given back when dropped.
struct AddressSlot {
    counts: Arc<AddressCounts>,
    ip: IpAddr,
}

impl AddressCounts {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What a connection holds until its publish is authorized.
struct Unauthorized {
    _slot: AddressSlot,
    _permit: OwnedSemaphorePermit,
}

impl RtmpServer {
    /// Binds [`RtmpConfig::addr`] and starts serving; events arrive on the returned receiver.
    pub async fn bind<A: PublishAuthorizer>(
        config: RtmpConfig,
        authorizer: A,
    ) -> std::io::Result<(Self, mpsc::Receiver<IngestEvent>)> {
        let listener = TcpListener::bind(config.addr).await?;
        let local_addr = listener.local_addr()?;
        let (events, receiver) = mpsc::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            unauthorized: Arc::new(Semaphore::new(config.max_unauthorized)),
            per_address: Arc::default(),
            config,
            authorizer,
            events,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok((Self { local_addr, task }, receiver))
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn accept_loop<A: PublishAuthorizer>(listener: TcpListener, shared: Arc<Shared<A>>) {
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, remote) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Usually EMFILE; back off instead of spinning.
                        tracing::warn!(error = %e, "rtmp accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some((permit, unauthorized)) = admit(&shared, remote) else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    Connection::serve(socket, remote, unauthorized, &shared).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A place for a new connection, or `None` (and the socket is dropped) when a limit is reached.
fn admit<A>(
    shared: &Arc<Shared<A>>,
    remote: SocketAddr,
) -> Option<(OwnedSemaphorePermit, Unauthorized)> {
    let config = &shared.config;
    let refused = |why: &str| {
        if let Some(suppressed) = REFUSALS.allow() {
            tracing::warn!(%remote, suppressed, "rtmp connection refused: {why}");
        }
    };
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        refused("connection limit reached");
        return None;
    };
    let Some(slot) = shared
        .per_address
        .take(remote.ip(), config.max_unauthorized_per_address)
    else {
        refused("too many connections from this address are not publishing yet");
        return None;
    };
    let Ok(unauthorized) = shared.unauthorized.clone().try_acquire_owned() else {
        refused("too many connections are not publishing yet");
        return None;
    };
    Some((
        permit,
        Unauthorized {
            _slot: slot,
            _permit: unauthorized,
        },
    ))
}

/// The publish accepted on a connection.
struct Publishing {
    id: SessionId,
    stop: Arc<Notify>,
    demuxer: FlvDemuxer,
    packets: PacketSender,
}

struct Connection<'a, A> {
    socket: TcpStream,
    remote: SocketAddr,
    shared: &'a Shared<A>,
    guard: ChunkGuard,
    /// Held until the publish is authorized.
    unauthorized: Option<Unauthorized>,
    publishing: Option<Publishing>,
}

impl<'a, A: PublishAuthorizer> Connection<'a, A> {
    async fn serve(
        socket: TcpStream,
        remote: SocketAddr,
        unauthorized: Unauthorized,
        shared: &'a Shared<A>,
    ) {
        let _ = socket.set_nodelay(true);
        let mut conn = Connection {
            socket,
            remote,
            shared,
            guard: ChunkGuard::new(shared.config.max_unauthorized_message),
            unauthorized: Some(unauthorized),
            publishing: None,
        };
        // A bug that panics on some input must cost this connection only, and its publish
        // must still end properly.
        let reason = match AssertUnwindSafe(conn.run()).catch_unwind().await {
            Ok(reason) => reason,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(%remote, panic = %message, "serving an rtmp connection panicked");
                failed(RtmpError::Panic(message))
            }
        };
        match conn.publishing.take() {
            Some(p) => {
                tracing::info!(%remote, session = p.id.0, ?reason, "rtmp publish ended");
                let _ = shared
                    .events
                    .send(IngestEvent::Ended {
                        session_id: p.id,
                        reason,
                    })
                    .await;
            }
            // Nothing was started, so there is nothing to report: a refused or broken client.
            None => {
                if let Some(suppressed) = REFUSALS.allow() {
                    tracing::info!(%remote, ?reason, suppressed, "rtmp connection closed before publishing");
                }
            }
        }
    }

    async fn run(&mut self) -> EndReason {
        let config = &self.shared.config;
        let publish_deadline = Instant::now() + config.publish_timeout;
        let leftover = match timeout(config.handshake_timeout, self.handshake()).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return failed(e),
            Err(_) => {
                return failed(RtmpError::HandshakeTimeout(config.handshake_timeout));
            }
        };
        let mut session_config = ServerSessionConfig::new();
        // No bandwidth-check round trip: encoders don't need it.
        session_config.send_on_bw_done_message_on_start = false;
        let (mut session, results) = match ServerSession::new(session_config) {
            Ok(x) => x,
            Err(e) => return failed(e),
        };
        if let Some(outcome) = self.handle_results(&mut session, results).await {
            return outcome;
        }
        if !leftover.is_empty()
            && let Some(outcome) = self.feed(&mut session, &leftover).await
        {
            return outcome;
        }

        let mut buf = vec![0u8; UNAUTHORIZED_READ];
        loop {
            if self.publishing.is_some() && buf.len() < PUBLISHING_READ {
                buf.resize(PUBLISHING_READ, 0);
            }
            let stop = self.publishing.as_ref().map(|p| p.stop.clone());
            // Until a publish is accepted, the publish deadline bounds the wait as well.
            let idle_deadline = Instant::now() + config.idle_timeout;
            let (deadline, expired) = match &stop {
                None if publish_deadline < idle_deadline => (
                    publish_deadline,
                    RtmpError::PublishTimeout(config.publish_timeout),
                ),
                _ => (idle_deadline, RtmpError::IdleTimeout(config.idle_timeout)),
            };
            let n = tokio::select! {
                biased;
                () = stopped(stop.as_deref()) => return EndReason::Disconnected,
                read = timeout_at(deadline, self.socket.read(&mut buf)) => match read {
                    Err(_) => return failed(expired),
                    Ok(Err(e)) => return failed(e),
                    Ok(Ok(0)) => return EndReason::ConnectionClosed,
                    Ok(Ok(n)) => n,
                },
            };
            if let Some(reason) = self.feed(&mut session, &buf[..n]).await {
                return reason;
            }
        }
    }

    /// Runs the server side of the handshake; returns bytes that followed it (the first chunks).
    async fn handshake(&mut self) -> Result<Vec<u8>, RtmpError> {
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = [0u8; 4096];
        loop {
            let n = self.socket.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.socket.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.socket.write_all(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    async fn feed(&mut self, session: &mut ServerSession, bytes: &[u8]) -> Option<EndReason> {
        // rml_rtmp sees nothing the guard has not passed.
        if let Err(e) = self.guard.inspect(bytes) {
            return Some(failed(e));
        }
        match session.handle_input(bytes) {
            Ok(results) => self.handle_results(session, results).await,
            Err(e) => Some(failed(e)),
        }
    }

    /// Acts on the session's results in order (responses must go out in the order produced:
    /// RTMP chunk headers are compressed against the previous ones). `Some` ends the connection.
    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Option<EndReason> {
        let mut pending = std::collections::VecDeque::from(results);
        while let Some(result) = pending.pop_front() {
            let step = match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.write(&packet.bytes).await.err().map(failed)
                }
                ServerSessionResult::RaisedEvent(event) => {
                    match self.on_event(session, event).await {
                        Ok(more) => {
                            // Responses produced while handling this event precede later results.
                            for r in more.into_iter().rev() {
                                pending.push_front(r);
                            }
                            None
                        }
                        Err(reason) => Some(reason),
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => None,
            };
            if step.is_some() {
                return step;
            }
        }
        None
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        // A client that stops reading must not park this task forever.
        let idle = self.shared.config.idle_timeout;
        match timeout(idle, self.socket.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RtmpError::IdleTimeout(idle)),
        }
    }

    /// Writes the session's responses now, then closes with `error`.
    async fn reject(
        &mut self,
        responses: Result<Vec<ServerSessionResult>, ServerSessionError>,
        error: RtmpError,
    ) -> EndReason {
        if let Ok(responses) = responses {
            for r in responses {
                if let ServerSessionResult::OutboundResponse(p) = r
                    && self.write(&p.bytes).await.is_err()
                {
                    break;
                }
            }
            let _ = self.socket.flush().await;
        }
        failed(error)
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, EndReason> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name != self.shared.config.app {
                    let r = session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    );
                    return Err(self.reject(r, RtmpError::UnknownApp(app_name)).await);
                }
                session.accept_request(request_id).map_err(failed)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => self.on_publish(session, request_id, stream_key).await,
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let r = session.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "playback is not supported",
                );
                Err(self.reject(r, RtmpError::PlayNotSupported).await)
            }
            ServerSessionEvent::PublishStreamFinished { .. } => Err(EndReason::Unpublished),
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self
                .on_media(true, timestamp.value, data)
                .await
                .map(|()| Vec::new()),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self
                .on_media(false, timestamp.value, data)
                .await
                .map(|()| Vec::new()),
            // Metadata, acknowledgements, releaseStream/FCPublish and the like need no answer.
            _ => Ok(Vec::new()),
        }
    }

    async fn on_publish(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        stream_key: String,
    ) -> Result<Vec<ServerSessionResult>, EndReason> {
        let config = &self.shared.config;
        if self.publishing.is_some() {
            let r = session.reject_request(
                request_id,
                "NetStream.Publish.BadName",
                "already publishing",
            );
            return Err(self.reject(r, RtmpError::SecondPublish).await);
        }
        if stream_key.is_empty() || stream_key.len() > config.max_stream_key_len {
            let error = RtmpError::BadStreamKey {
                len: stream_key.len(),
                limit: config.max_stream_key_len,
            };
            let r = session.reject_request(
                request_id,
                "NetStream.Publish.BadName",
                "invalid stream key",
            );
            return Err(self.reject(r, error).await);
        }
        let request = PublishRequest {
            stream_key: stream_key.clone(),
            remote_addr: self.remote,
            protocol: IngestProtocol::Rtmp,
        };
        let grant = match timeout(
            config.authorize_timeout,
            self.shared.authorizer.authorize(request),
        )
        .await
        {
            Ok(Ok(grant)) => grant,
            Ok(Err(refusal)) => {
                let r =
                    session.reject_request(request_id, "NetStream.Publish.Denied", &refusal.reason);
                return Err(self.reject(r, RtmpError::Refused(refusal.reason)).await);
            }
            Err(_) => {
                let error = RtmpError::AuthorizeTimeout(config.authorize_timeout);
                let r = session.reject_request(
                    request_id,
                    "NetStream.Publish.Denied",
                    "authorization timed out",
                );
                return Err(self.reject(r, error).await);
            }
        };
        let responses = session.accept_request(request_id).map_err(failed)?;
        let (handle, stop) = SessionHandle::new();
        let id = handle.id();
        let (packets, receiver) = session::channel(&config.limits);
        self.publishing = Some(Publishing {
            id,
            stop,
            demuxer: FlvDemuxer::new(),
            packets,
        });
        // Authorized: frames may be as large as the limits allow, and the connection no longer
        // counts against the unauthorized ones.
        self.guard
            .authorized(config.limits.max_frame_bytes + FLV_TAG_OVERHEAD);
        self.unauthorized = None;
        tracing::info!(remote = %self.remote, session = id.0, "rtmp publish started");
        self.emit(IngestEvent::Started {
            handle,
            stream_key,
            grant,
            remote_addr: self.remote,
            protocol: IngestProtocol::Rtmp,
            packets: receiver,
        })
        .await?;
        Ok(responses)
    }

    async fn on_media(
        &mut self,
        video: bool,
        timestamp: u32,
        data: Bytes,
    ) -> Result<(), EndReason> {
        // rml_rtmp only raises media events for an accepted publish.
        let Some(p) = &mut self.publishing else {
            return Ok(());
        };
        let demuxed = if video {
            p.demuxer.video(timestamp, data)
        } else {
            p.demuxer.audio(timestamp, data)
        };
        let packet = match demuxed {
            Ok(Some(packet)) => packet,
            Ok(None) => return Ok(()),
            Err(e) => return Err(failed(e)),
        };
        // Waits while the publish runs ahead of real time or its queue is full: TCP then
        // pushes back on this encoder alone.
        tokio::select! {
            biased;
            () = p.stop.notified() => Err(EndReason::Disconnected),
            sent = p.packets.send(packet) => sent.map_err(|e| EndReason::Error(e.into())),
        }
    }

    /// Sends an event, giving up if the caller disconnects the session meanwhile (a caller
    /// that is slow to drain events must still be able to stop a publisher).
    async fn emit(&self, event: IngestEvent) -> Result<(), EndReason> {
        let stop = self
            .publishing
            .as_ref()
            .map(|p| p.stop.clone())
            .expect("emit only while publishing");
        tokio::select! {
            biased;
            _ = stop.notified() => Err(EndReason::Disconnected),
            sent = self.shared.events.send(event) => sent.map_err(|_| failed(RtmpError::ReceiverGone)),
        }
    }
}

/// Resolves when the session is asked to stop; never without a session.
async fn stopped(stop: Option<&Notify>) {
    match stop {
        Some(stop) => stop.notified().await,
        None => std::future::pending().await,
    }
}

/// The end of a connection that `error` closed.
fn failed(error: impl Into<RtmpError>) -> EndReason {
    EndReason::Error(error.into().into())
}
