//! A WHIP publisher: once its peer connects, a publish like any other ([`IngestEvent::Started`],
//! a packet queue held to [`IngestLimits`](crate::ingest::IngestLimits), then exactly one
//! [`IngestEvent::Ended`]).
//!
//! The H.264 that str0m depacketizes (Annex B access units) becomes AVCC frames, with a decoder
//! configuration built from the parameter sets the browser sends in band before each keyframe.
//! Frames that cannot be decoded (before the first keyframe, after a loss) are dropped and a
//! keyframe is asked of the publisher (PLI), at most once a second; keyframes are also asked for
//! every [`KEYFRAME_INTERVAL`], which browsers otherwise send only when asked, so that HLS
//! segments can be cut. Opus audio becomes AAC
//! ([`crate::transcode::audio`]), since HLS players expect AAC.
//!
//! Timestamps: each track's RTP clock counts from the arrival of its first frame, so audio and
//! video start in step whatever their random RTP offsets are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::Event;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use tokio::sync::{Notify, mpsc};

use super::peer::{PeerLink, Wake};
use super::{PeerGuard, WebrtcConfig};
use crate::h264::{access_unit_from_annex_b, avc_decoder_config};
use crate::ingest::session::{self, PacketSender};
use crate::ingest::{EndReason, IngestEvent, IngestProtocol, PublishGrant, SessionHandle};
use crate::packet::{Packet, PacketKind, Track};
use crate::transcode::audio::AudioTranscoder;

/// Shortest time between two keyframe requests to a publisher.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// Keyframes are asked for this often: browsers send one only when asked (or on loss), and
/// the segmenter cuts HLS segments at keyframes, aiming at 2 s.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

/// Who publishes: what the authorizer granted, for [`IngestEvent::Started`].
#[derive(Debug, Clone)]
pub struct PublishPeer {
    /// The stream key of the WHIP URL.
    pub stream_key: String,
    /// What the authorizer returned.
    pub grant: PublishGrant,
    /// The address the offer came from.
    pub remote_addr: SocketAddr,
}

/// Why the server ended a WHIP publish.
#[derive(Debug, thiserror::Error)]
pub enum WebrtcError {
    /// Nothing came from the publisher for [`WebrtcConfig::idle_timeout`].
    #[error("no data for {0:?}")]
    IdleTimeout(Duration),
    /// The publisher's audio could not be turned into AAC.
    #[error("audio: {0}")]
    Audio(String),
}

/// The publish once the peer is connected.
struct Live {
    handle: SessionHandle,
    disconnect: Arc<Notify>,
    packets: PacketSender,
}

pub(crate) async fn run(
    mut link: PeerLink,
    peer: PublishPeer,
    stop: Arc<Notify>,
    events: mpsc::Sender<IngestEvent>,
    config: WebrtcConfig,
    _guard: PeerGuard,
) {
    let connect_by = tokio::time::Instant::now() + config.connect_timeout;
    let session_start = Instant::now();
    let mut last_heard = tokio::time::Instant::now();
    let mut pending = Vec::new();
    let mut live: Option<Live> = None;
    let mut video = VideoTrack::default();
    let mut audio = AudioTrack::default();
    let mut video_mid: Option<Mid> = None;
    link.drain(&mut pending);
    let reason = 'session: loop {
        for event in pending.drain(..) {
            match event {
                Event::MediaAdded(added) if added.kind == MediaKind::Video => {
                    video_mid = Some(added.mid);
                }
                Event::Connected if live.is_none() => {
                    let (handle, disconnect) = SessionHandle::new();
                    let (sender, receiver) = session::channel(&config.limits);
                    let started = IngestEvent::Started {
                        handle: handle.clone(),
                        stream_key: peer.stream_key.clone(),
                        grant: peer.grant.clone(),
                        remote_addr: peer.remote_addr,
                        protocol: IngestProtocol::Webrtc,
                        packets: receiver,
                    };
                    if events.send(started).await.is_err() {
                        return;
                    }
                    live = Some(Live {
                        handle,
                        disconnect,
                        packets: sender,
                    });
                }
                Event::MediaData(data) => {
                    let Some(live) = live.as_mut() else { continue };
                    let packets = match data.params.spec().codec {
                        Codec::H264 => video.frame(&data, session_start),
                        // With video coming, audio waits for its first keyframe: the first
                        // segment starts with a picture (and the master playlist names both).
                        Codec::Opus if video_mid.is_some() && !video.decodable => Vec::new(),
                        Codec::Opus => match audio.frame(&data, session_start) {
                            Ok(packets) => packets,
                            Err(err) => break 'session EndReason::Error(err.into()),
                        },
                        _ => Vec::new(),
                    };
                    for packet in packets {
                        if let Err(err) = live.packets.send(packet).await {
                            break 'session EndReason::Error(err.into());
                        }
                    }
                }
                _ => {}
            }
        }
        if live.is_some()
            && video.wants_keyframe()
            && let Some(mut writer) = video_mid.and_then(|mid| link.rtc.writer(mid))
        {
            // Refused when the media cannot carry feedback; then the next keyframe is awaited.
            let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
            link.drain(&mut pending);
            continue;
        }
        if link.ended {
            break EndReason::ConnectionClosed;
        }
        let idle_by = last_heard + config.idle_timeout;
        let disconnect = live.as_ref().map(|l| l.disconnect.clone());
        tokio::select! {
            wake = link.wait() => match wake {
                Wake::Datagram => last_heard = tokio::time::Instant::now(),
                Wake::Timer => {}
                Wake::Closed => break EndReason::Disconnected,
            },
            _ = stop.notified() => break EndReason::Unpublished,
            _ = async { disconnect.as_ref().expect("guarded").notified().await }, if disconnect.is_some() => {
                break EndReason::Disconnected;
            }
            _ = tokio::time::sleep_until(connect_by), if live.is_none() => {
                tracing::info!(remote = %peer.remote_addr, "a WHIP peer did not connect in time");
                return;
            }
            _ = tokio::time::sleep_until(idle_by), if live.is_some() => {
                break EndReason::Error(WebrtcError::IdleTimeout(config.idle_timeout).into());
            }
        }
        link.drain(&mut pending);
    };
    link.rtc.disconnect();
    link.drain(&mut pending);
    if let Some(live) = live {
        let session_id = live.handle.id();
        drop(live);
        let _ = events.send(IngestEvent::Ended { session_id, reason }).await;
    }
}

/// A track's RTP clock in milliseconds from the session's start.
#[derive(Debug, Clone, Copy)]
struct TrackClock {
    first_rtp: u64,
    first_ms: i64,
}

impl TrackClock {
    fn start(data: &MediaData, session_start: Instant) -> Self {
        Self {
            first_rtp: data.time.numer(),
            first_ms: data
                .network_time
                .saturating_duration_since(session_start)
                .as_millis() as i64,
        }
    }

    fn ms(&self, data: &MediaData) -> i64 {
        let rate = i128::from(data.time.denom().max(1));
        let ticks = i128::from(data.time.numer()) - i128::from(self.first_rtp);
        self.first_ms + (ticks * 1000 / rate) as i64
    }
}

/// The publisher's video, from depacketized Annex B access units to AVCC packets.
#[derive(Default)]
struct VideoTrack {
    clock: Option<TrackClock>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    /// A decoder configuration was sent and a keyframe followed it: frames decode.
    decodable: bool,
    /// Frames are being dropped until a keyframe comes.
    waiting: bool,
    last_request: Option<Instant>,
    last_keyframe: Option<Instant>,
}

impl VideoTrack {
    fn frame(&mut self, data: &MediaData, session_start: Instant) -> Vec<Packet> {
        let clock = *self
            .clock
            .get_or_insert_with(|| TrackClock::start(data, session_start));
        let ms = clock.ms(data);
        let unit = access_unit_from_annex_b(&data.data);
        let mut out = Vec::with_capacity(2);
        if (!unit.sps.is_empty() && unit.sps != self.sps)
            || (!unit.pps.is_empty() && unit.pps != self.pps)
        {
            if !unit.sps.is_empty() {
                self.sps = unit.sps.clone();
            }
            if !unit.pps.is_empty() {
                self.pps = unit.pps.clone();
            }
            if let Some(config) = avc_decoder_config(&self.sps, &self.pps) {
                out.push(Packet {
                    track: Track::Video,
                    kind: PacketKind::Config,
                    dts_ms: ms,
                    pts_ms: ms,
                    keyframe: false,
                    data: config,
                });
            }
        }
        if !data.contiguous && !unit.has_idr {
            // A frame was lost: what follows decodes badly until the next keyframe.
            self.decodable = false;
        }
        if unit.has_idr && !self.sps.is_empty() && !self.pps.is_empty() {
            self.decodable = true;
            self.last_keyframe = Some(Instant::now());
        }
        self.waiting = !self.decodable;
        if self.decodable && !unit.avcc.is_empty() {
            out.push(Packet {
                track: Track::Video,
                kind: PacketKind::Frame,
                dts_ms: ms,
                pts_ms: ms,
                keyframe: unit.has_idr,
                data: unit.avcc,
            });
        }
        out
    }

    /// Whether a keyframe should be asked for now (and notes that it is).
    fn wants_keyframe(&mut self) -> bool {
        let now = Instant::now();
        let due = self.waiting
            || self
                .last_keyframe
                .is_some_and(|at| now.duration_since(at) >= KEYFRAME_INTERVAL);
        if !due {
            return false;
        }
        if self
            .last_request
            .is_some_and(|last| now.duration_since(last) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        self.last_request = Some(now);
        true
    }
}

/// The publisher's Opus audio, as AAC packets.
#[derive(Default)]
struct AudioTrack {
    clock: Option<TrackClock>,
    transcoder: Option<AudioTranscoder>,
}

impl AudioTrack {
    fn frame(
        &mut self,
        data: &MediaData,
        session_start: Instant,
    ) -> Result<Vec<Packet>, WebrtcError> {
        let clock = *self
            .clock
            .get_or_insert_with(|| TrackClock::start(data, session_start));
        let ms = clock.ms(data);
        let mut out = Vec::new();
        let transcoder = match &mut self.transcoder {
            Some(transcoder) => transcoder,
            None => {
                let transcoder = AudioTranscoder::opus_to_aac()
                    .map_err(|e| WebrtcError::Audio(e.to_string()))?;
                out.push(Packet {
                    track: Track::Audio,
                    kind: PacketKind::Config,
                    dts_ms: ms,
                    pts_ms: ms,
                    keyframe: false,
                    data: transcoder.config(),
                });
                self.transcoder.insert(transcoder)
            }
        };
        let frames = transcoder
            .push(&data.data, ms)
            .map_err(|e| WebrtcError::Audio(e.to_string()))?;
        out.extend(frames.into_iter().map(|(ms, data)| Packet {
            track: Track::Audio,
            kind: PacketKind::Frame,
            dts_ms: ms,
            pts_ms: ms,
            keyframe: false,
            data,
        }));
        Ok(out)
    }
}
