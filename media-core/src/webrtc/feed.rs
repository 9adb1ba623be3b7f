//! What the WHEP viewers of one stream follow: a second [`LiveFeed`] made from the stream's
//! once, whatever the number of viewers, with what WebRTC can carry:
//!
//! - **Audio in Opus.** AAC is transcoded ([`AudioTranscoder`]) once for every viewer.
//! - **Video without B-frames.** WebRTC players show frames in the order they decode them, so a
//!   source with B-frames (x264's defaults, OBS with "bframes") would stutter there. H.264
//!   without them is passed on as it is; from the first B-frame on, the video is re-encoded
//!   frame by frame with x264 `zerolatency` (no B-frames, no lookahead: a frame leaves as soon as
//!   it is encoded), at the source's size, with a keyframe every 2 s.
//!
//! In this feed, audio frames are Opus packets (one per 20 ms) and carry no configuration.
//! It runs on a thread of its own, ends when the source feed ends, and stops early when nobody
//! has followed it for [`IDLE_AFTER`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg::codec::{self, threading};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use crate::flv::AvcConfig;
use crate::h264::{access_unit_from_annex_b, avc_decoder_config};
use crate::hls::ts::annex_b;
use crate::live_feed::LiveFeed;
use crate::packet::{Packet, PacketKind, Track};
use crate::transcode::audio::AudioTranscoder;

/// A feed nobody follows for this long stops.
const IDLE_AFTER: Duration = Duration::from_secs(10);
/// Keyframe interval of re-encoded video: how long a new viewer may wait for its first picture.
const GOP: Duration = Duration::from_secs(2);

/// Starts making the WebRTC feed of `source`.
pub fn for_webrtc(source: &LiveFeed) -> Option<Arc<LiveFeed>> {
    let mut subscription = source.subscribe()?;
    let output = Arc::new(LiveFeed::new());
    let feed = output.clone();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("webrtc-feed".into())
        .spawn(move || {
            let mut video = Video::default();
            let mut audio: Option<(bytes::Bytes, AudioTranscoder)> = None;
            let mut idle_since: Option<Instant> = None;
            while let Some(packet) = runtime.block_on(subscription.next()) {
                if feed.subscribers() == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= IDLE_AFTER {
                        break;
                    }
                } else {
                    idle_since = None;
                }
                match (packet.track, packet.kind) {
                    (Track::Audio, PacketKind::Config) => {
                        if audio.as_ref().is_none_or(|(config, _)| *config != packet.data) {
                            audio = AudioTranscoder::aac_to_opus(&packet.data)
                                .ok()
                                .map(|transcoder| (packet.data.clone(), transcoder));
                        }
                    }
                    (Track::Audio, PacketKind::Frame) => {
                        let Some((_, transcoder)) = audio.as_mut() else {
                            continue;
                        };
                        for (ms, data) in transcoder.push(&packet.data, packet.pts_ms).unwrap_or_default() {
                            feed.push(&Packet {
                                track: Track::Audio,
                                kind: PacketKind::Frame,
                                dts_ms: ms,
                                pts_ms: ms,
                                keyframe: false,
                                data,
                            });
                        }
                    }
                    (Track::Video, PacketKind::Config) => {
                        video.source_config = AvcConfig::parse(&packet.data).ok();
                        if video.reencoder.is_none() {
                            feed.push(&packet);
                        }
                    }
                    (Track::Video, PacketKind::Frame) => {
                        if packet.pts_ms != packet.dts_ms && video.reencoder.is_none() {
                            metrics::counter!("studio_webrtc_b_frame_free_copies_started_total")
                                .increment(1);
                            video.reencoder = Some(Reencoder::default());
                        }
                        match video.reencoder.as_mut() {
                            None => feed.push(&packet),
                            Some(reencoder) => {
                                let config = video.source_config.as_ref();
                                if let Err(err) = reencoder.frame(config, &packet, &feed) {
                                    tracing::warn!(error = %err, "re-encoding a live stream for WebRTC failed");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            feed.close();
        })
        .ok()?;
    Some(output)
}

/// The video side of the feed: passed through, or re-encoded once a B-frame was seen.
#[derive(Default)]
struct Video {
    source_config: Option<AvcConfig>,
    reencoder: Option<Reencoder>,
}

#[derive(Default)]
struct Reencoder {
    decoder: Option<ffmpeg::decoder::Video>,
    encoder: Option<ffmpeg::encoder::Video>,
    scaler: Option<scaling::Context>,
    sps: Vec<bytes::Bytes>,
    pps: Vec<bytes::Bytes>,
}

impl Reencoder {
    fn frame(
        &mut self,
        config: Option<&AvcConfig>,
        packet: &Packet,
        out: &LiveFeed,
    ) -> Result<(), ffmpeg::Error> {
        let Some(config) = config else {
            return Ok(());
        };
        let Ok(data) = annex_b(packet, config) else {
            return Ok(());
        };
        if self.decoder.is_none() {
            crate::transcode::local::init_ffmpeg().map_err(|_| ffmpeg::Error::Bug)?;
            let codec =
                codec::decoder::find(codec::Id::H264).ok_or(ffmpeg::Error::DecoderNotFound)?;
            let mut context = codec::context::Context::new_with_codec(codec);
            // Slices only: frame threading would hold frames back.
            context.set_threading(threading::Config {
                kind: threading::Type::Slice,
                count: 0,
                ..Default::default()
            });
            self.decoder = Some(context.decoder().video()?);
        }
        let decoder = self.decoder.as_mut().expect("opened above");
        let mut input = ffmpeg::Packet::copy(&data);
        input.set_pts(Some(packet.pts_ms));
        input.set_dts(Some(packet.dts_ms));
        // A frame the decoder refuses is skipped; the next keyframe recovers.
        if decoder.send_packet(&input).is_err() {
            return Ok(());
        }
        let mut decoded = VideoFrame::empty();
        while decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded
                .timestamp()
                .or(decoded.pts())
                .unwrap_or(packet.pts_ms);
            if self.encoder.is_none() {
                self.encoder = Some(open_encoder(decoded.width(), decoded.height())?);
            }
            let frame = if decoded.format() == Pixel::YUV420P {
                let mut frame = decoded.clone();
                frame.set_pts(Some(pts));
                frame
            } else {
                let scaler = match &mut self.scaler {
                    Some(scaler) => scaler,
                    None => self.scaler.insert(scaling::Context::get(
                        decoded.format(),
                        decoded.width(),
                        decoded.height(),
                        Pixel::YUV420P,
                        decoded.width(),
                        decoded.height(),
                        scaling::Flags::BILINEAR,
                    )?),
                };
                let mut frame = VideoFrame::empty();
                scaler.run(&decoded, &mut frame)?;
                frame.set_pts(Some(pts));
                frame
            };
            let encoder = self.encoder.as_mut().expect("opened above");
            encoder.send_frame(&frame)?;
            let mut encoded = ffmpeg::Packet::empty();
            while encoder.receive_packet(&mut encoded).is_ok() {
                let Some(data) = encoded.data() else { continue };
                let unit = access_unit_from_annex_b(data);
                let ms = encoded.pts().unwrap_or(pts);
                if !unit.sps.is_empty() && (unit.sps != self.sps || unit.pps != self.pps) {
                    self.sps = unit.sps.clone();
                    self.pps = unit.pps.clone();
                    if let Some(config) = avc_decoder_config(&self.sps, &self.pps) {
                        out.push(&Packet {
                            track: Track::Video,
                            kind: PacketKind::Config,
                            dts_ms: ms,
                            pts_ms: ms,
                            keyframe: false,
                            data: config,
                        });
                    }
                }
                out.push(&Packet {
                    track: Track::Video,
                    kind: PacketKind::Frame,
                    dts_ms: ms,
                    pts_ms: ms,
                    keyframe: encoded.is_key() || unit.has_idr,
                    data: unit.avcc,
                });
            }
        }
        Ok(())
    }
}

fn open_encoder(width: u32, height: u32) -> Result<ffmpeg::encoder::Video, ffmpeg::Error> {
    let codec = codec::encoder::find_by_name("libx264").ok_or(ffmpeg::Error::EncoderNotFound)?;
    let mut encoder = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(Pixel::YUV420P);
    encoder.set_time_base(Rational::new(1, 1000));
    // Timestamps are in ms; x264 sizes its rate control on a nominal 30 fps.
    encoder.set_frame_rate(Some(Rational::new(30, 1)));
    encoder.set_gop((GOP.as_secs() * 30) as u32);
    encoder.set_max_b_frames(0);
    encoder.set_bit_rate(bitrate_for(width, height));
    let mut options = Dictionary::new();
    options.set("preset", "veryfast");
    options.set("tune", "zerolatency");
    options.set("profile", "baseline");
    encoder.open_with(options)
}

/// A bitrate that keeps the picture clean at its size (about 0.1 bit per pixel at 30 fps).
fn bitrate_for(width: u32, height: u32) -> usize {
    (u64::from(width) * u64::from(height) * 3).clamp(300_000, 8_000_000) as usize
}
