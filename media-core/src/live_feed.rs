//! A live stream's packets as they arrive, for every consumer that must not wait for segments
//! (WebRTC viewers, and later restreaming): one publisher pushes, any number of subscribers
//! follow.
//!
//! A new subscriber starts from the most recent keyframe, so that its decoder has a picture at
//! once: the feed keeps the decoder configurations and every packet since the last keyframe
//! (bounded: a GOP too long to keep is dropped, and the subscriber then waits for the next
//! keyframe). A subscriber that falls behind the feed's queue loses what it missed and resumes
//! at the next keyframe; it never slows the publisher or the other subscribers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::packet::{Packet, PacketKind, Track};

/// Packets queued for subscribers before a slow one starts losing them.
const QUEUE_PACKETS: usize = 1024;
/// Most bytes of the current GOP kept for new subscribers.
const MAX_GOP_BYTES: usize = 16 * 1024 * 1024;
/// Most packets of the current GOP kept for new subscribers.
const MAX_GOP_PACKETS: usize = 4096;

/// One live stream's packets, shared by its subscribers. Cheap to share behind an `Arc`.
pub struct LiveFeed {
    state: Mutex<State>,
}

struct State {
    /// `None` once the feed is closed.
    sender: Option<broadcast::Sender<Arc<Packet>>>,
    video_config: Option<Arc<Packet>>,
    audio_config: Option<Arc<Packet>>,
    /// Every frame since the last video keyframe (empty before the first one, and after a GOP
    /// outgrew the bounds until the next one).
    gop: Vec<Arc<Packet>>,
    gop_bytes: usize,
    /// Whether the feed has carried a B-frame (a frame presented after a later-decoded one).
    reordered: bool,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    /// An open feed without subscribers.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(QUEUE_PACKETS);
        Self {
            state: Mutex::new(State {
                sender: Some(sender),
                video_config: None,
                audio_config: None,
                gop: Vec::new(),
                gop_bytes: 0,
                reordered: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands `packet` to every subscriber. Never waits.
    pub fn push(&self, packet: &Packet) {
        let packet = Arc::new(packet.clone());
        let mut state = self.state();
        let Some(sender) = state.sender.clone() else {
            return;
        };
        match (packet.track, packet.kind) {
            (Track::Video, PacketKind::Config) => state.video_config = Some(packet.clone()),
            (Track::Audio, PacketKind::Config) => state.audio_config = Some(packet.clone()),
            (_, PacketKind::Frame) => {
                if packet.track == Track::Video && packet.pts_ms != packet.dts_ms {
                    state.reordered = true;
                }
                if packet.is_video_keyframe() {
                    state.gop.clear();
                    state.gop_bytes = 0;
                    state.gop.push(packet.clone());
                    state.gop_bytes = packet.data.len();
                } else if !state.gop.is_empty() {
                    state.gop_bytes += packet.data.len();
                    if state.gop_bytes > MAX_GOP_BYTES || state.gop.len() >= MAX_GOP_PACKETS {
                        state.gop.clear();
                        state.gop_bytes = 0;
                    } else {
                        state.gop.push(packet.clone());
                    }
                }
            }
        }
        // No subscriber is not an error: the packet is simply not wanted.
        let _ = sender.send(packet);
    }

    /// Ends the feed: subscribers get what is queued, then `None`.
    pub fn close(&self) {
        self.state().sender = None;
    }

    /// Whether [`LiveFeed::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().sender.is_none()
    }

    /// Whether the video so far had B-frames (players that decode in arrival order, such as
    /// WebRTC's, cannot show those).
    pub fn has_b_frames(&self) -> bool {
        self.state().reordered
    }

    /// A new subscriber, starting with the decoder configurations and the current GOP. `None`
    /// once the feed is closed.
    pub fn subscribe(&self) -> Option<Subscription> {
        let state = self.state();
        let receiver = state.sender.as_ref()?.subscribe();
        let mut backlog = VecDeque::with_capacity(state.gop.len() + 2);
        backlog.extend(state.video_config.iter().cloned());
        backlog.extend(state.audio_config.iter().cloned());
        backlog.extend(state.gop.iter().cloned());
        Some(Subscription {
            waiting_for_keyframe: state.gop.is_empty(),
            backlog,
            receiver,
        })
    }

    /// Subscribers following the feed now.
    pub fn subscribers(&self) -> usize {
        self.state()
            .sender
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }
}

/// One consumer's place in a [`LiveFeed`].
pub struct Subscription {
    backlog: VecDeque<Arc<Packet>>,
    receiver: broadcast::Receiver<Arc<Packet>>,
    /// Frames are skipped until a video keyframe (after joining without one, or after lagging).
    waiting_for_keyframe: bool,
}

impl Subscription {
    /// The next packet to decode, in decode order; `None` once the feed closed and everything
    /// was taken. Frames that cannot be decoded (before the first keyframe, or after this
    /// subscriber lost packets by lagging) are skipped.
    pub async fn next(&mut self) -> Option<Arc<Packet>> {
        if let Some(packet) = self.backlog.pop_front() {
            return Some(packet);
        }
        loop {
            let packet = match self.receiver.recv().await {
                Ok(packet) => packet,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!("studio_live_feed_lagged_packets_total").increment(missed);
                    self.waiting_for_keyframe = true;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if self.waiting_for_keyframe && packet.kind == PacketKind::Frame {
                if !packet.is_video_keyframe() {
                    continue;
                }
                self.waiting_for_keyframe = false;
            }
            return Some(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn frame(track: Track, ms: i64, keyframe: bool) -> Packet {
        Packet {
            track,
            kind: PacketKind::Frame,
            dts_ms: ms,
            pts_ms: ms,
            keyframe,
            data: Bytes::from(vec![0u8; 10]),
        }
    }

    fn config(track: Track) -> Packet {
        Packet {
            track,
            kind: PacketKind::Config,
            dts_ms: 0,
            pts_ms: 0,
            keyframe: false,
            data: Bytes::from_static(b"cfg"),
        }
    }

    #[tokio::test]
    async fn a_late_subscriber_starts_at_the_last_keyframe_with_the_configs() {
        let feed = LiveFeed::new();
        feed.push(&config(Track::Video));
        feed.push(&frame(Track::Video, 0, true));
        feed.push(&frame(Track::Video, 33, false));
        feed.push(&config(Track::Audio));
        feed.push(&frame(Track::Video, 66, true));
        feed.push(&frame(Track::Audio, 70, false));
        let mut sub = feed.subscribe().unwrap();
        feed.push(&frame(Track::Video, 100, false));
        feed.close();
        let mut got = Vec::new();
        while let Some(p) = sub.next().await {
            got.push((p.track, p.kind, p.dts_ms));
        }
        assert_eq!(
            got,
            vec![
                (Track::Video, PacketKind::Config, 0),
                (Track::Audio, PacketKind::Config, 0),
                (Track::Video, PacketKind::Frame, 66),
                (Track::Audio, PacketKind::Frame, 70),
                (Track::Video, PacketKind::Frame, 100),
            ]
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_lags_resumes_at_the_next_keyframe() {
        let feed = LiveFeed::new();
        let mut sub = feed.subscribe().unwrap();
        feed.push(&frame(Track::Video, 0, true));
        for i in 1..(QUEUE_PACKETS as i64 + 10) {
            feed.push(&frame(Track::Video, i, false));
        }
        feed.push(&frame(Track::Video, 5000, true));
        feed.push(&frame(Track::Video, 5001, false));
        feed.close();
        let mut got = Vec::new();
        while let Some(p) = sub.next().await {
            got.push(p.dts_ms);
        }
        assert_eq!(got, vec![5000, 5001]);
        assert!(!feed.has_b_frames());
    }
}
