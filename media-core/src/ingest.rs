//! Servers that accept live media from encoders, and what they share.
//!
//! [`rtmp`], [`srt`] and WHIP ([`crate::webrtc`]) differ in transport and container (FLV over RTMP, MPEG-TS over SRT) but
//! not in contract: both ask the caller's [`PublishAuthorizer`] before accepting a publish,
//! report [`IngestEvent`]s of the same shape, hand each publish's packets over on a queue of its
//! own held to the same [`IngestLimits`] ([`session`]), and let the caller end a publish through a
//! [`SessionHandle`]. Session ids come from one process-wide counter, so the events of both
//! servers can be merged into one stream without ids colliding.

mod log_limit;
pub mod rtmp;
pub mod session;
pub mod srt;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

pub use log_limit::LogLimiter;
pub use session::{IngestLimits, MemoryBudget, PacketReceiver, SessionLimitError};

/// The protocol a publisher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestProtocol {
    /// RTMP (FLV tags), `rtmp://host/live/<key>`.
    Rtmp,
    /// SRT carrying MPEG-TS, `srt://host:port?streamid=<key>`.
    Srt,
    /// WebRTC (WHIP), `POST {public_url}/webrtc/<key>`.
    Webrtc,
}

impl IngestProtocol {
    /// Lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Rtmp => "rtmp",
            IngestProtocol::Srt => "srt",
            IngestProtocol::Webrtc => "webrtc",
        }
    }
}

/// What the authorizer is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The stream key the encoder publishes with.
    pub stream_key: String,
    /// The encoder's address.
    pub remote_addr: SocketAddr,
    /// How it publishes.
    pub protocol: IngestProtocol,
}

/// Permission to publish, with whatever the caller needs to find the stream again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishGrant {
    /// An identifier chosen by the caller (e.g. the stream's id); opaque to media-core.
    pub stream_id: String,
}

/// A refused publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Sent to RTMP encoders in the error status (SRT can only send a code), so it must not
    /// contain secrets.
    pub reason: String,
}

impl Refusal {
    /// A refusal with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Decides whether a stream key may publish. Implemented for async closures
/// `Fn(PublishRequest) -> impl Future<Output = Result<PublishGrant, Refusal>>`.
pub trait PublishAuthorizer: Send + Sync + 'static {
    /// Called once per publish attempt, before anything is accepted.
    fn authorize(
        &self,
        request: PublishRequest,
    ) -> impl Future<Output = Result<PublishGrant, Refusal>> + Send;
}

impl<F, Fut> PublishAuthorizer for F
where
    F: Fn(PublishRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<PublishGrant, Refusal>> + Send,
{
    fn authorize(
        &self,
        request: PublishRequest,
    ) -> impl Future<Output = Result<PublishGrant, Refusal>> + Send {
        self(request)
    }
}

/// Identifies one accepted publish, unique in the process across all ingest servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A new id, never handed out before in this process.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Lets the caller end a publish (stream deleted or suspended, key rotated).
#[derive(Debug, Clone)]
pub struct SessionHandle {
    id: SessionId,
    stop: Arc<Notify>,
}

impl SessionHandle {
    /// A handle for a new session, and the signal its connection task waits on.
    pub(crate) fn new() -> (Self, Arc<Notify>) {
        let stop = Arc::new(Notify::new());
        let handle = Self {
            id: SessionId::next(),
            stop: stop.clone(),
        };
        (handle, stop)
    }

    /// The session this handle controls.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Drops the publisher's connection. Takes effect at the connection task's next poll,
    /// well within a second; [`IngestEvent::Ended`] with [`EndReason::Disconnected`] follows.
    pub fn disconnect(&self) {
        // notify_one keeps a permit when nobody waits yet, so the request is never lost.
        self.stop.notify_one();
    }
}

/// What an ingest server reports to its caller.
#[derive(Debug)]
pub enum IngestEvent {
    /// A publish was authorized and accepted.
    Started {
        /// Control over the session.
        handle: SessionHandle,
        /// The stream key it publishes with.
        stream_key: String,
        /// What the authorizer returned.
        grant: PublishGrant,
        /// The encoder's address.
        remote_addr: SocketAddr,
        /// How it publishes.
        protocol: IngestProtocol,
        /// The session's demuxed packets, on a queue of its own: a consumer that falls behind
        /// slows only this publisher. Ends (`None`) when the session does.
        packets: PacketReceiver,
    },
    /// A started session is over; nothing more comes for it.
    Ended {
        /// The session that ended.
        session_id: SessionId,
        /// Why.
        reason: EndReason,
    },
}

/// Why a publish ended.
#[derive(Debug)]
pub enum EndReason {
    /// The encoder unpublished (RTMP deleteStream): a clean stop.
    Unpublished,
    /// The encoder closed the connection without unpublishing. SRT has no unpublish, so this
    /// is how every SRT publish that the server did not end itself ends.
    ConnectionClosed,
    /// The caller called [`SessionHandle::disconnect`].
    Disconnected,
    /// Something went wrong; the connection was closed.
    Error(IngestError),
}

/// Why a server closed a connection, by protocol.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An RTMP connection failed.
    #[error(transparent)]
    Rtmp(#[from] rtmp::RtmpError),
    /// An SRT connection failed.
    #[error(transparent)]
    Srt(#[from] srt::SrtError),
    /// A WHIP publish failed.
    #[error(transparent)]
    Webrtc(#[from] crate::webrtc::publish::WebrtcError),
    /// The publish broke a limit every publish is held to (memory, pacing, queue).
    #[error(transparent)]
    Limit(#[from] SessionLimitError),
}

impl EndReason {
    /// A short, stable label of why the publish ended (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            EndReason::Unpublished => "unpublished",
            EndReason::ConnectionClosed => "connection_closed",
            EndReason::Disconnected => "disconnected",
            EndReason::Error(IngestError::Limit(limit)) => limit.kind(),
            EndReason::Error(IngestError::Rtmp(_)) => "rtmp_error",
            EndReason::Error(IngestError::Srt(_)) => "srt_error",
            EndReason::Error(IngestError::Webrtc(_)) => "webrtc_error",
        }
    }
}
