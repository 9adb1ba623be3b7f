//! SRT ingest: encoders push MPEG-TS over SRT to one UDP port, served with srt-tokio (pure Rust;
//! it interoperates with libsrt callers such as ffmpeg and OBS).
//!
//! The caller's stream ID names the stream key, either as the whole stream ID
//! (`srt://host:2935?streamid=KEY`) or in the SRT access-control form `#!::r=KEY,m=publish`
//! ([`stream_key_from_stream_id`]). The key is authorized through the caller's
//! [`PublishAuthorizer`] while the handshake waits, before the connection is accepted: a refused
//! caller gets an SRT rejection code (SRT cannot carry a message) and the caller of this server
//! sees no event at all. Accepted publishes produce the same [`IngestEvent`]s as RTMP:
//! `Started` (with the publish's own queue of packets demuxed by [`TsDemuxer`]), then exactly
//! one `Ended`.
//!
//! What a client controls is bounded: connections, pending or accepted
//! ([`SrtConfig::max_connections`]); the authorization wait; silence on an accepted connection;
//! the stream key's length (srt-protocol caps stream IDs at 512 bytes); and the demuxer's
//! buffers ([`SrtConfig::demuxer`]).
//!
//! Back-pressure differs from RTMP's: srt-tokio's listener feeds every connection of the port
//! from one task through bounded channels. A publish whose own queue is full stops reading its
//! connection; srt-tokio then drops what arrives too late for it (as on a slow network) rather
//! than waiting, and the publish ends if its queue stays full (see [`session`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{ByteCount, SocketOptions};
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener, SrtSocket, bind_socket};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::session::{self, PacketSender, SessionLimitError};
use super::{
    EndReason, IngestEvent, IngestLimits, IngestProtocol, LogLimiter, PublishAuthorizer,
    PublishRequest, SessionHandle,
};
use crate::mpegts::{TsDemuxError, TsDemuxer, TsDemuxerLimits};
use crate::packet::Packet;

/// Where and how the SRT server listens, and the limits it puts on clients.
#[derive(Debug, Clone)]
pub struct SrtConfig {
    /// Listen address (UDP); `0.0.0.0:2935` by default (the `--srt-addr` flag).
    pub addr: SocketAddr,
    /// Longest wait for the authorization callback. The caller is inside its connect timeout
    /// meanwhile (3 s by default in libsrt), so this stays below it.
    pub authorize_timeout: Duration,
    /// Longest time without media on an accepted connection before it is dropped.
    pub idle_timeout: Duration,
    /// Connections, pending authorization or accepted, beyond which callers are rejected.
    pub max_connections: usize,
    /// Longest stream key accepted, in bytes.
    pub max_stream_key_len: usize,
    /// Capacity of the channel of [`IngestEvent`]s (starts and ends; packets travel on each
    /// publish's own queue).
    pub event_capacity: usize,
    /// Bounds on each publisher's MPEG-TS demuxer.
    pub demuxer: TsDemuxerLimits,
    /// What every accepted publish is held to.
    pub limits: IngestLimits,
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 2935)),
            authorize_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_stream_key_len: 256,
            event_capacity: 1024,
            demuxer: TsDemuxerLimits::default(),
            limits: IngestLimits::default(),
        }
    }
}

/// UDP receive buffer asked of the kernel: SRT's 64 KiB default overflows at video bitrates
/// during a scheduling hiccup. Linux caps it at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: u64 = 4 * 1024 * 1024;
/// How long closing an SRT connection may take (it sends a shutdown to the caller).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Refused callers are logged at this rate at most: garbage datagrams and bad stream ids are
/// free to send.
static REFUSALS: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));
/// Longest wait in [`SrtServer::close`] for the UDP port to become free.
const PORT_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an accepted SRT connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    /// Nothing was received for [`SrtConfig::idle_timeout`].
    #[error("no data for {0:?}")]
    IdleTimeout(Duration),
    /// The published MPEG-TS is not H.264/AAC or is malformed.
    #[error(transparent)]
    Media(#[from] TsDemuxError),
    /// The caller dropped the event receiver.
    #[error("event receiver dropped")]
    ReceiverGone,
}

/// Why a stream ID names no stream key that may publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// The caller sent no stream ID.
    #[error("no stream ID; publish to srt://HOST:PORT?streamid=STREAM_KEY")]
    Missing,
    /// An access-control entry is not `key=value`.
    #[error("malformed stream ID entry {0:?}; expected #!::r=STREAM_KEY,m=publish")]
    Malformed(String),
    /// The access-control form has no `r=` entry.
    #[error("the stream ID has no resource; expected #!::r=STREAM_KEY,m=publish")]
    NoResource,
    /// The caller wants to do something other than publish.
    #[error("mode {0:?} is not supported: this server only accepts publishers (m=publish)")]
    NotPublish(String),
    /// The caller wants a connection type other than a live stream.
    #[error("connection type {0:?} is not supported (t=stream)")]
    NotStream(String),
    /// The stream key is empty or too long.
    #[error("stream key of {len} bytes (must be 1 to {limit})")]
    BadKeyLength {
        /// The key's length.
        len: usize,
        /// The configured maximum.
        limit: usize,
    },
}

/// The stream key a stream ID publishes to: the whole stream ID, or the `r` entry of the SRT
/// access-control form `#!::r=KEY,m=publish` (other entries such as `u=` or `s=` are allowed
/// and ignored; a mode other than `publish` is refused, a missing one is taken as publish).
///
/// A percent-encoded stream ID is decoded first: FFmpeg before 6.0 sends the `streamid` of an
/// `srt://` URL as written, so `streamid=%23%21%3A%3Ar%3DKEY` arrives encoded. Stream keys never
/// contain `%`.
pub fn stream_key_from_stream_id(
    stream_id: Option<&str>,
    max_key_len: usize,
) -> Result<String, StreamIdError> {
    let stream_id = stream_id.ok_or(StreamIdError::Missing)?;
    let decoded;
    let stream_id = if stream_id.contains('%') {
        decoded = percent_decode(stream_id);
        decoded.as_str()
    } else {
        stream_id
    };
    let key = match stream_id.strip_prefix("#!::") {
        None => stream_id,
        Some(entries) => {
            let mut resource = None;
            for entry in entries.split(',') {
                let (name, value) = entry
                    .split_once('=')
                    .ok_or_else(|| StreamIdError::Malformed(entry.to_owned()))?;
                match name {
                    "r" => resource = Some(value),
                    "m" if value != "publish" => {
                        return Err(StreamIdError::NotPublish(value.to_owned()));
                    }
                    "t" if value != "stream" => {
                        return Err(StreamIdError::NotStream(value.to_owned()));
                    }
                    _ => {}
                }
            }
            resource.ok_or(StreamIdError::NoResource)?
        }
    };
    if key.is_empty() || key.len() > max_key_len {
        return Err(StreamIdError::BadKeyLength {
            len: key.len(),
            limit: max_key_len,
        });
    }
    Ok(key.to_owned())
}

/// Decodes `%XX` escapes; anything else, invalid escapes and non-UTF-8 results included, is
/// kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// A running SRT server. Dropping it stops accepting and drops every connection (without
/// [`IngestEvent::Ended`] events: the caller is shutting down); [`SrtServer::close`] also waits
/// until the UDP port is released.
#[derive(Debug)]
pub struct SrtServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for SrtServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct Shared<A> {
    config: SrtConfig,
    authorizer: A,
    events: mpsc::Sender<IngestEvent>,
}

impl SrtServer {
    /// Binds [`SrtConfig::addr`] (port 0 picks a free port) and starts serving; events arrive
    /// on the returned receiver.
    pub async fn bind<A: PublishAuthorizer>(
        config: SrtConfig,
        authorizer: A,
    ) -> std::io::Result<(Self, mpsc::Receiver<IngestEvent>)> {
        let mut options = SocketOptions::default();
        options.connect.local = config.addr;
        options.connect.udp_recv_buffer_size = ByteCount(UDP_RECEIVE_BUFFER);
        // srt-tokio's listener needs a fixed port, so bind the socket first and hand it over.
        let socket = bind_socket(&options).await?;
        let local_addr = socket.local_addr()?;
        let (listener, incoming) = SrtListener::builder()
            .set(|o| *o = options)
            .socket(socket)
            .bind(local_addr)
            .await?;
        let (events, receiver) = mpsc::channel(config.event_capacity.max(1));
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let shared = Arc::new(Shared {
            config,
            authorizer,
            events,
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, incoming, shared, limit, stopped));
        let server = Self {
            local_addr,
            stop: Some(stop),
            task: Some(task),
        };
        Ok((server, receiver))
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Drops every connection, closes the listener and waits until it has released its port.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // srt-tokio's packet socket lets go of the UDP socket from a task of its own, a moment
        // after the listener has closed: wait until the port can be bound again.
        let deadline = tokio::time::Instant::now() + PORT_RELEASE_TIMEOUT;
        while std::net::UdpSocket::bind(self.local_addr).is_err()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop<A: PublishAuthorizer>(
    mut listener: SrtListener,
    mut incoming: SrtIncoming,
    shared: Arc<Shared<A>>,
    limit: Arc<Semaphore>,
    mut stop: oneshot::Receiver<()>,
) {
    // Owning the connection tasks here means ending this task ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            request = incoming.incoming().next() => {
                let Some(request) = request else { break };
                let remote = request.remote();
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        connections.spawn(async move {
                            let _permit = permit;
                            serve(request, &shared).await;
                        });
                    }
                    Err(_) => {
                        if let Some(suppressed) = REFUSALS.allow() {
                            tracing::warn!(%remote, suppressed, "srt connection limit reached; rejecting");
                        }
                        // Answered from a task: the listener may be busy delivering packets.
                        connections.spawn(reject(request, ServerRejectReason::Overload));
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut stop => break,
        }
    }
    connections.shutdown().await;
    listener.close().await;
}

async fn reject(request: ConnectionRequest, reason: ServerRejectReason) {
    let _ = request.reject(RejectReason::Server(reason)).await;
}

/// Authorizes one caller and, if accepted, reads its publish to the end.
async fn serve<A: PublishAuthorizer>(request: ConnectionRequest, shared: &Shared<A>) {
    let config = &shared.config;
    let remote = request.remote();
    let stream_id = request.stream_id().map(|id| id.as_str());
    let stream_key = match stream_key_from_stream_id(stream_id, config.max_stream_key_len) {
        Ok(key) => key,
        Err(error) => {
            if let Some(suppressed) = REFUSALS.allow() {
                tracing::info!(%remote, %error, suppressed, "srt publish refused");
            }
            let reason = match error {
                StreamIdError::NotPublish(_) | StreamIdError::NotStream(_) => {
                    ServerRejectReason::BadMode
                }
                _ => ServerRejectReason::BadRequest,
            };
            return reject(request, reason).await;
        }
    };
    let publish = PublishRequest {
        stream_key: stream_key.clone(),
        remote_addr: remote,
        protocol: IngestProtocol::Srt,
    };
    let grant = match timeout(
        config.authorize_timeout,
        shared.authorizer.authorize(publish),
    )
    .await
    {
        Ok(Ok(grant)) => grant,
        Ok(Err(refusal)) => {
            if let Some(suppressed) = REFUSALS.allow() {
                tracing::info!(%remote, reason = %refusal.reason, suppressed, "srt publish refused");
            }
            return reject(request, ServerRejectReason::Forbidden).await;
        }
        Err(_) => {
            tracing::warn!(%remote, timeout = ?config.authorize_timeout, "srt authorization timed out");
            return reject(request, ServerRejectReason::Down).await;
        }
    };
    let mut socket = match request.accept(None).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::info!(%remote, %error, "srt caller left during authorization");
            return;
        }
    };
    let (handle, stop) = SessionHandle::new();
    let session_id = handle.id();
    let (mut packets, receiver) = session::channel(&config.limits);
    tracing::info!(%remote, session = session_id.0, "srt publish started");
    let started = IngestEvent::Started {
        handle,
        stream_key,
        grant,
        remote_addr: remote,
        protocol: IngestProtocol::Srt,
        packets: receiver,
    };
    let reason = match emit(shared, &stop, started).await {
        Ok(()) => receive(&mut socket, shared, &stop, &mut packets).await,
        Err(reason) => reason,
    };
    drop(packets);
    // Tells the caller (a shutdown packet) instead of leaving it to time out.
    let _ = timeout(CLOSE_TIMEOUT, socket.close()).await;
    tracing::info!(%remote, session = session_id.0, ?reason, "srt publish ended");
    let _ = shared
        .events
        .send(IngestEvent::Ended { session_id, reason })
        .await;
}

/// Demuxes the connection's MPEG-TS onto the publish's queue until it ends.
///
/// srt-tokio feeds every connection of the port from one task and waits when a connection is
/// not read: a publish that stopped reading (paced, or behind) would stall every SRT publisher of
/// the server. So the socket is read without pause, into a backlog bounded in packets and bytes,
/// and the backlog is forwarded (paced, charged) to the publish's queue alongside. What does not
/// fit in the backlog is dropped, as SRT drops what arrives too late; a backlog that stays full
/// for the queue's stall timeout ends the publish.
async fn receive<A>(
    socket: &mut SrtSocket,
    shared: &Shared<A>,
    stop: &Notify,
    queue: &mut PacketSender,
) -> EndReason {
    let limits = &shared.config.limits;
    let (backlog, mut forwarding) = mpsc::channel::<Packet>(limits.queue_packets.max(1));
    let backlog_bytes = AtomicUsize::new(0);
    let forward = async {
        while let Some(packet) = forwarding.recv().await {
            backlog_bytes.fetch_sub(packet.data.len(), Ordering::Relaxed);
            queue.send(packet).await?;
        }
        Ok::<(), SessionLimitError>(())
    };
    let read = read_socket(socket, shared, backlog, &backlog_bytes);
    // Forwarding ends early only with an error: the backlog stays open while the socket is read.
    let forward = forward.fuse();
    tokio::pin!(forward, read);
    let reason = tokio::select! {
        biased;
        () = stop.notified() => return EndReason::Disconnected,
        Err(error) = &mut forward => return EndReason::Error(error.into()),
        reason = &mut read => reason,
    };
    // The connection is over (the backlog's sender with it): forward what is left.
    tokio::select! {
        biased;
        () = stop.notified() => EndReason::Disconnected,
        forwarded = forward => match forwarded {
            Err(error) => EndReason::Error(error.into()),
            Ok(()) => reason,
        },
    }
}

/// Reads and demuxes the socket into `backlog` until the connection ends.
async fn read_socket<A>(
    socket: &mut SrtSocket,
    shared: &Shared<A>,
    backlog: mpsc::Sender<Packet>,
    backlog_bytes: &AtomicUsize,
) -> EndReason {
    let config = &shared.config;
    let idle = config.idle_timeout;
    let mut demuxer = TsDemuxer::with_limits(config.demuxer.clone());
    let mut packets = Vec::new();
    let mut full_since: Option<tokio::time::Instant> = None;
    loop {
        let ended = match timeout(idle, socket.next()).await {
            Err(_) => return failed(SrtError::IdleTimeout(idle)),
            // srt-tokio reports neither errors nor why a connection ended: the caller shut
            // down, or it went silent past SRT's peer idle timeout.
            Ok(None) | Ok(Some(Err(_))) => true,
            Ok(Some(Ok((_, data)))) => {
                if let Err(error) = demuxer.push(&data, &mut packets) {
                    return failed(error);
                }
                false
            }
        };
        if ended && let Err(error) = demuxer.finish(&mut packets) {
            return failed(error);
        }
        for packet in packets.drain(..) {
            let size = packet.data.len();
            let fits =
                backlog_bytes.load(Ordering::Relaxed) + size <= config.limits.max_publish_bytes;
            if fits && backlog.try_send(packet).is_ok() {
                backlog_bytes.fetch_add(size, Ordering::Relaxed);
                full_since = None;
                continue;
            }
            let since = *full_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= config.limits.queue_stall_timeout {
                return EndReason::Error(
                    SessionLimitError::QueueStalled(config.limits.queue_stall_timeout).into(),
                );
            }
            if let Some(suppressed) = REFUSALS.allow() {
                tracing::warn!(suppressed, "srt publish behind; dropping a packet");
            }
        }
        if ended {
            return EndReason::ConnectionClosed;
        }
    }
}

/// Sends an event, giving up if the caller disconnects the session meanwhile (a caller that is
/// slow to drain events must still be able to stop a publisher).
async fn emit<A>(shared: &Shared<A>, stop: &Notify, event: IngestEvent) -> Result<(), EndReason> {
    tokio::select! {
        biased;
        () = stop.notified() => Err(EndReason::Disconnected),
        sent = shared.events.send(event) => sent.map_err(|_| failed(SrtError::ReceiverGone)),
    }
}

/// The end of a connection that `error` closed.
fn failed(error: impl Into<SrtError>) -> EndReason {
    EndReason::Error(error.into().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_name_the_key_plainly_or_in_access_control_form() {
        let key = |id: &str| stream_key_from_stream_id(Some(id), 32);
        assert_eq!(key("abcd-efgh").unwrap(), "abcd-efgh");
        assert_eq!(key("#!::r=abcd-efgh,m=publish").unwrap(), "abcd-efgh");
        assert_eq!(
            key("#!::m=publish,u=alice,r=abcd,s=x1,t=stream").unwrap(),
            "abcd"
        );
        assert_eq!(
            key("#!::r=abcd").unwrap(),
            "abcd",
            "publish is the only thing one can do here"
        );
        assert_eq!(
            key("#!::r=abcd,m=request"),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(
            key("#!::r=abcd,m=playing"),
            Err(StreamIdError::NotPublish("playing".into()))
        );
        assert_eq!(
            key("#!::r=abcd,t=file"),
            Err(StreamIdError::NotStream("file".into()))
        );
        assert_eq!(key("#!::u=alice,m=publish"), Err(StreamIdError::NoResource));
        assert_eq!(
            key("#!::r=abcd,junk"),
            Err(StreamIdError::Malformed("junk".into()))
        );
        assert_eq!(
            key(""),
            Err(StreamIdError::BadKeyLength { len: 0, limit: 32 })
        );
        assert_eq!(
            key("#!::r="),
            Err(StreamIdError::BadKeyLength { len: 0, limit: 32 })
        );
        assert_eq!(
            key(&"k".repeat(33)),
            Err(StreamIdError::BadKeyLength { len: 33, limit: 32 })
        );
        assert_eq!(
            stream_key_from_stream_id(None, 32),
            Err(StreamIdError::Missing)
        );
        assert_eq!(key("%23%21%3A%3Ar%3Dabcd%2Cm%3Dpublish").unwrap(), "abcd");
        assert_eq!(
            key("%23%21%3a%3Ar%3Dabcd%2Cm%3Drequest"),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%FF"), "%FF", "not UTF-8: kept as sent");
        assert!(
            StreamIdError::NotPublish("request".into())
                .to_string()
                .contains("m=publish")
        );
    }
}
