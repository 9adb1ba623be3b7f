//! The path of one publish from its connection to its consumer, and the limits on it.
//!
//! Every accepted publish gets its own bounded queue ([`PacketSender`] -> [`PacketReceiver`]), so a
//! consumer that falls behind slows only its own encoder: never the other publishers of the
//! node. The sending side enforces what a publisher may not do whatever its consumer does:
//!
//! - **Memory.** Every byte of media a publish holds (queued, or still held by the consumer, e.g.
//!   in an open segment) is charged to one process-wide [`MemoryBudget`]. A publish whose next
//!   frame does not fit is ended with [`SessionLimitError::MemoryBudget`].
//! - **Media time.** A publish may not run ahead of the wall clock by more than
//!   [`IngestLimits::max_media_lead`]: beyond it, the connection pauses (the encoder is pushed
//!   back through TCP or SRT flow control) until real time catches up. A file pushed as fast as
//!   the network allows is paced to real time; a burst of frames stamped seconds apart cannot
//!   claim hours of media in seconds.
//! - **Stalls.** A queue that stays full for [`IngestLimits::queue_stall_timeout`] ends the
//!   publish with [`SessionLimitError::QueueStalled`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::packet::Packet;

/// What every publish of an ingest server is held to. Cheap to clone: the memory budget is shared.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Packets queued between a connection and its consumer.
    pub queue_packets: usize,
    /// Longest a connection waits on a full queue before its publish is ended.
    pub queue_stall_timeout: Duration,
    /// How far a publish's media time may run ahead of the wall clock before it is paused.
    pub max_media_lead: Duration,
    /// Largest single frame (an RTMP message, a PES packet) accepted from a publisher.
    pub max_frame_bytes: usize,
    /// Bytes of media one publish may hold at once (queued, and held by its consumer).
    pub max_publish_bytes: usize,
    /// Bytes of media all publishes of the process may hold at once.
    pub memory: Arc<MemoryBudget>,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            queue_packets: 1024,
            queue_stall_timeout: Duration::from_secs(10),
            max_media_lead: Duration::from_secs(10),
            max_frame_bytes: 8 * 1024 * 1024,
            max_publish_bytes: 64 * 1024 * 1024,
            memory: Arc::new(MemoryBudget::new(1024 * 1024 * 1024)),
        }
    }
}

/// Why the sending side ended a publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionLimitError {
    /// The process-wide ingest memory budget has no room for the next frame.
    #[error(
        "ingest memory budget of {limit} bytes exhausted (this publish holds {held} bytes); publish dropped"
    )]
    MemoryBudget {
        /// The budget.
        limit: usize,
        /// What this publish held when it was refused.
        held: usize,
    },
    /// This publish holds [`IngestLimits::max_publish_bytes`] already.
    #[error("publish holds more than {limit} bytes of media; publish dropped")]
    PublishMemory {
        /// The limit.
        limit: usize,
    },
    /// The consumer did not take a packet for this long.
    #[error("the pipeline did not keep up for {0:?}; publish dropped")]
    QueueStalled(Duration),
    /// A frame larger than [`IngestLimits::max_frame_bytes`].
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The consumer dropped its receiver.
    #[error("the consumer of this publish is gone")]
    ReceiverGone,
}

impl SessionLimitError {
    /// A short, stable label (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            SessionLimitError::MemoryBudget { .. } => "memory_budget",
            SessionLimitError::PublishMemory { .. } => "publish_memory",
            SessionLimitError::QueueStalled(_) => "queue_stalled",
            SessionLimitError::FrameTooLarge { .. } => "frame_too_large",
            SessionLimitError::ReceiverGone => "receiver_gone",
        }
    }
}

/// Bytes of ingest media the process may hold, shared by every publish of every server.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, by every publish together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_charge(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one publish holds of the budget. Released in full when both ends are gone.
#[derive(Debug)]
struct SessionMemory {
    budget: Arc<MemoryBudget>,
    limit: usize,
    held: AtomicUsize,
}

impl SessionMemory {
    /// Only the connection's task charges, so the check and the add cannot race each other.
    fn charge(&self, bytes: usize) -> Result<(), SessionLimitError> {
        if self.held.load(Ordering::Acquire).saturating_add(bytes) > self.limit {
            return Err(SessionLimitError::PublishMemory { limit: self.limit });
        }
        if self.budget.try_charge(bytes) {
            self.held.fetch_add(bytes, Ordering::AcqRel);
            Ok(())
        } else {
            Err(SessionLimitError::MemoryBudget {
                limit: self.budget.limit,
                held: self.held.load(Ordering::Acquire),
            })
        }
    }

    fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.budget.release(bytes);
    }
}

impl Drop for SessionMemory {
    fn drop(&mut self) {
        self.budget.release(*self.held.get_mut());
    }
}

/// A new publish's queue: the connection keeps the sender, the consumer gets the receiver.
pub(crate) fn channel(limits: &IngestLimits) -> (PacketSender, PacketReceiver) {
    let (sender, receiver) = mpsc::channel(limits.queue_packets.max(1));
    let memory = Arc::new(SessionMemory {
        budget: limits.memory.clone(),
        limit: limits.max_publish_bytes,
        held: AtomicUsize::new(0),
    });
    let sender = PacketSender {
        sender,
        memory: memory.clone(),
        stall_timeout: limits.queue_stall_timeout,
        max_frame_bytes: limits.max_frame_bytes,
        pacer: Pacer::new(limits.max_media_lead),
    };
    let receiver = PacketReceiver {
        receiver,
        memory,
        outstanding: 0,
    };
    (sender, receiver)
}

/// The connection's end of a publish's queue.
#[derive(Debug)]
pub(crate) struct PacketSender {
    sender: mpsc::Sender<Packet>,
    memory: Arc<SessionMemory>,
    stall_timeout: Duration,
    max_frame_bytes: usize,
    pacer: Pacer,
}

impl PacketSender {
    /// Paces, queues and charges one packet. Cancel-safe: dropping the future loses this packet
    /// only, and charges nothing.
    pub(crate) async fn send(&mut self, packet: Packet) -> Result<(), SessionLimitError> {
        let size = packet.data.len();
        if size > self.max_frame_bytes {
            return Err(SessionLimitError::FrameTooLarge {
                size,
                limit: self.max_frame_bytes,
            });
        }
        if let Some(until) = self.pacer.hold_until(packet.dts_ms) {
            tokio::time::sleep_until(until).await;
        }
        let permit = match tokio::time::timeout(self.stall_timeout, self.sender.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(SessionLimitError::ReceiverGone),
            Err(_) => return Err(SessionLimitError::QueueStalled(self.stall_timeout)),
        };
        self.memory.charge(size)?;
        permit.send(packet);
        Ok(())
    }
}

/// The consumer's end of a publish's queue. Bytes received stay charged to the memory budget
/// until the consumer says it no longer holds them ([`PacketReceiver::holding`]) or drops this.
#[derive(Debug)]
pub struct PacketReceiver {
    receiver: mpsc::Receiver<Packet>,
    memory: Arc<SessionMemory>,
    /// Bytes received and, as far as this end knows, still held by the consumer.
    outstanding: usize,
}

impl PacketReceiver {
    /// The next packet; `None` once the publish has ended and every packet was received.
    pub async fn recv(&mut self) -> Option<Packet> {
        let packet = self.receiver.recv().await?;
        self.outstanding += packet.data.len();
        Some(packet)
    }

    /// Tells the budget that of everything received, the consumer still holds `bytes` (e.g.
    /// the frames of its open segment); the rest is released.
    pub fn holding(&mut self, bytes: usize) {
        if bytes < self.outstanding {
            self.memory.release(self.outstanding - bytes);
            self.outstanding = bytes;
        }
    }

    /// Bytes this publish holds of the budget: queued, and held by the consumer.
    pub fn held_bytes(&self) -> usize {
        self.memory.held.load(Ordering::Acquire)
    }
}

/// Keeps a publish's media time within `max_lead` of the wall clock.
///
/// Media time advances by the steps between consecutive timestamps; a step larger than
/// [`Pacer::MAX_STEP_MS`] either way (an encoder restart, a broken clock) counts as no time, as
/// the segmenter bridges such jumps too. So jumps can neither stall a publish nor let it claim
/// more media than real time allows.
#[derive(Debug)]
struct Pacer {
    max_lead_ms: i64,
    /// When the first packet arrived.
    start: Option<Instant>,
    /// Media time since the first packet.
    media_ms: i64,
    last_dts_ms: i64,
}

impl Pacer {
    /// Matches the segmenter's default `max_gap`.
    const MAX_STEP_MS: i64 = 10_000;

    fn new(max_lead: Duration) -> Self {
        Self {
            max_lead_ms: i64::try_from(max_lead.as_millis()).unwrap_or(i64::MAX),
            start: None,
            media_ms: 0,
            last_dts_ms: 0,
        }
    }

    /// When a packet with this timestamp may be passed on; `None` for now.
    fn hold_until(&mut self, dts_ms: i64) -> Option<Instant> {
        let now = Instant::now();
        let step = dts_ms.saturating_sub(self.last_dts_ms);
        self.last_dts_ms = dts_ms;
        let Some(start) = self.start else {
            self.start = Some(now);
            return None;
        };
        if (-Self::MAX_STEP_MS..=Self::MAX_STEP_MS).contains(&step) {
            self.media_ms = self.media_ms.saturating_add(step);
        }
        let wall_ms = i64::try_from(now.duration_since(start).as_millis()).unwrap_or(i64::MAX);
        let lead_ms = self.media_ms.saturating_sub(wall_ms);
        if lead_ms <= self.max_lead_ms {
            return None;
        }
        let wait = u64::try_from(lead_ms - self.max_lead_ms).unwrap_or(0);
        Some(now + Duration::from_millis(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PacketKind, Track};
    use bytes::Bytes;

    fn frame(dts_ms: i64, size: usize) -> Packet {
        Packet {
            track: Track::Video,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms: dts_ms,
            keyframe: true,
            data: Bytes::from(vec![0u8; size]),
        }
    }

    fn limits(budget: usize) -> IngestLimits {
        IngestLimits {
            queue_packets: 4,
            queue_stall_timeout: Duration::from_millis(200),
            max_media_lead: Duration::from_secs(10),
            max_frame_bytes: 1000,
            max_publish_bytes: 3000,
            memory: Arc::new(MemoryBudget::new(budget)),
        }
    }

    #[tokio::test]
    async fn bytes_stay_charged_until_the_consumer_lets_go() {
        let limits = limits(2500);
        let (mut tx, mut rx) = channel(&limits);
        tx.send(frame(0, 1000)).await.unwrap();
        tx.send(frame(33, 1000)).await.unwrap();
        assert_eq!(limits.memory.used(), 2000);
        assert_eq!(
            tx.send(frame(66, 1000)).await,
            Err(SessionLimitError::MemoryBudget {
                limit: 2500,
                held: 2000
            })
        );
        rx.recv().await.unwrap();
        rx.recv().await.unwrap();
        assert_eq!(limits.memory.used(), 2000, "received is not released");
        rx.holding(500);
        assert_eq!(limits.memory.used(), 500);
        assert_eq!(rx.held_bytes(), 500);
        tx.send(frame(66, 1000)).await.unwrap();
        drop(tx);
        drop(rx);
        assert_eq!(
            limits.memory.used(),
            0,
            "everything returns when both ends go"
        );
    }

    #[tokio::test]
    async fn one_publish_cannot_take_the_whole_budget() {
        let limits = limits(1 << 20);
        let (mut greedy, _greedy_rx) = channel(&limits);
        for i in 0..3 {
            greedy.send(frame(i, 1000)).await.unwrap();
        }
        assert_eq!(
            greedy.send(frame(3, 1)).await,
            Err(SessionLimitError::PublishMemory { limit: 3000 })
        );
        let (mut other, _other_rx) = channel(&limits);
        other.send(frame(0, 1000)).await.unwrap();
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let limits = limits(1 << 20);
        let (mut tx, _rx) = channel(&limits);
        assert_eq!(
            tx.send(frame(0, 1001)).await,
            Err(SessionLimitError::FrameTooLarge {
                size: 1001,
                limit: 1000
            })
        );
        assert_eq!(limits.memory.used(), 0);
    }

    #[tokio::test]
    async fn a_queue_nobody_drains_ends_the_publish_and_returns_its_charge() {
        let limits = limits(1 << 20);
        let (mut tx, _rx) = channel(&limits);
        for i in 0..4 {
            tx.send(frame(i * 33, 10)).await.unwrap();
        }
        let started = std::time::Instant::now();
        assert_eq!(
            tx.send(frame(200, 10)).await,
            Err(SessionLimitError::QueueStalled(Duration::from_millis(200)))
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(limits.memory.used(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn media_time_may_not_run_ahead_of_the_wall_clock() {
        let mut pacer = Pacer::new(Duration::from_secs(10));
        let start = Instant::now();
        // A burst of keyframes stamped 2 s apart: 10 s of lead pass, then each waits.
        for i in 0..=5 {
            assert_eq!(pacer.hold_until(i * 2000), None, "frame {i}");
        }
        let until = pacer.hold_until(12_000).expect("12 s of media at once");
        assert_eq!(until - start, Duration::from_secs(2));
        // Jumps count as no time: neither a way around the pacing nor a reason to stall.
        assert_eq!(pacer.hold_until(3_600_000), Some(until));
        assert_eq!(pacer.hold_until(3_600_000 - 20_000), Some(until));
        assert_eq!(
            pacer.hold_until(3_580_000 + 33),
            Some(until + Duration::from_millis(33))
        );
        // Real time passing lets media through again.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(pacer.hold_until(3_580_066), None);
        assert!(pacer.hold_until(3_580_066 + 5_000).is_some());
    }
}
