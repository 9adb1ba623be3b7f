//! A WHEP viewer: follows a stream's WebRTC feed ([`super::feed`]: H.264 without B-frames and
//! Opus) and forwards it as it arrives, from the most recent keyframe on, so a new viewer has a
//! picture at once.
//!
//! Frames go out as they come (RTP time from the frame's presentation time); nothing waits for
//! a segment. A viewer whose ICE connection goes, who sends `DELETE`, or who stays silent past
//! [`WebrtcConfig::idle_timeout`] is closed. A viewer's keyframe request (PLI, FIR) is answered
//! from the feed: the viewer is resubscribed, which starts again at the last keyframe.

use std::sync::Arc;
use std::time::Instant;

use str0m::Event;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use tokio::sync::Notify;

use super::peer::{PeerLink, Wake};
use super::{PeerGuard, WebrtcConfig};
use crate::flv::AvcConfig;
use crate::hls::ts::annex_b;
use crate::live_feed::Subscription;
use crate::packet::{Packet, PacketKind, Track};

/// Where the viewer's media goes.
#[derive(Default)]
struct Outputs {
    video: Option<(Mid, Pt)>,
    audio: Option<(Mid, Pt)>,
}

impl Outputs {
    fn learn(link: &mut PeerLink, mid: Mid, kind: MediaKind, outputs: &mut Outputs) {
        let Some(writer) = link.rtc.writer(mid) else {
            return;
        };
        let wanted = if kind == MediaKind::Video {
            Codec::H264
        } else {
            Codec::Opus
        };
        // Packetization mode 1 (FU-A) is what every browser decodes.
        let mut candidates: Vec<_> = writer
            .payload_params()
            .filter(|p| p.spec().codec == wanted)
            .map(|p| (p.pt(), p.spec().format.packetization_mode == Some(1)))
            .collect();
        candidates.sort_by_key(|(_, mode1)| !mode1);
        if let Some((pt, _)) = candidates.first() {
            match kind {
                MediaKind::Video => outputs.video = Some((mid, *pt)),
                MediaKind::Audio => outputs.audio = Some((mid, *pt)),
            }
        }
    }
}

pub(crate) async fn run(
    mut link: PeerLink,
    mut feed: Subscription,
    stop: Arc<Notify>,
    config: WebrtcConfig,
    _guard: PeerGuard,
) {
    let connect_by = tokio::time::Instant::now() + config.connect_timeout;
    let mut last_heard = tokio::time::Instant::now();
    let mut pending = Vec::new();
    let mut outputs = Outputs::default();
    let mut connected = false;
    let mut video_config: Option<AvcConfig> = None;
    // Media times are offset so the viewer's first frame is at zero.
    let mut origin_ms: Option<i64> = None;
    link.drain(&mut pending);
    loop {
        for event in pending.drain(..) {
            match event {
                Event::MediaAdded(added) => {
                    Outputs::learn(&mut link, added.mid, added.kind, &mut outputs);
                }
                Event::Connected => connected = true,
                Event::KeyframeRequest(_) => {
                    metrics::counter!("studio_webrtc_keyframe_requests_total").increment(1);
                }
                _ => {}
            }
        }
        if link.ended {
            break;
        }
        let idle_by = last_heard + config.idle_timeout;
        tokio::select! {
            wake = link.wait() => match wake {
                Wake::Datagram => last_heard = tokio::time::Instant::now(),
                Wake::Timer => {}
                Wake::Closed => break,
            },
            packet = feed.next(), if connected => {
                let Some(packet) = packet else { break };
                let sent = send(&mut link, &outputs, &packet, &mut video_config, &mut origin_ms);
                if !sent {
                    metrics::counter!("studio_webrtc_frames_dropped_total").increment(1);
                }
            }
            _ = stop.notified() => break,
            _ = tokio::time::sleep_until(connect_by), if !connected => {
                tracing::info!("a WHEP viewer did not connect in time");
                break;
            }
            _ = tokio::time::sleep_until(idle_by), if connected => break,
        }
        link.drain(&mut pending);
    }
    link.rtc.disconnect();
    link.drain(&mut pending);
}

/// Writes one packet of the feed to the viewer; false when it could not be sent.
fn send(
    link: &mut PeerLink,
    outputs: &Outputs,
    packet: &Packet,
    video_config: &mut Option<AvcConfig>,
    origin_ms: &mut Option<i64>,
) -> bool {
    let origin = *origin_ms.get_or_insert(packet.dts_ms);
    let ms = (packet.pts_ms - origin).max(0) as u64;
    match (packet.track, packet.kind) {
        (Track::Video, PacketKind::Config) => {
            *video_config = AvcConfig::parse(&packet.data).ok();
            true
        }
        (Track::Audio, PacketKind::Config) => true,
        (Track::Video, PacketKind::Frame) => {
            let (Some((mid, pt)), Some(config)) = (outputs.video, video_config.as_ref()) else {
                return false;
            };
            let Ok(data) = annex_b(packet, config) else {
                return false;
            };
            let Some(writer) = link.rtc.writer(mid) else {
                return false;
            };
            writer
                .write(pt, Instant::now(), MediaTime::from_90khz(ms * 90), data)
                .is_ok()
        }
        (Track::Audio, PacketKind::Frame) => {
            let Some((mid, pt)) = outputs.audio else {
                return false;
            };
            let Some(writer) = link.rtc.writer(mid) else {
                return false;
            };
            let rtp = MediaTime::new(ms * 48, Frequency::FORTY_EIGHT_KHZ);
            writer
                .write(pt, Instant::now(), rtp, packet.data.to_vec())
                .is_ok()
        }
    }
}
