//! The bundled transcoder, on FFmpeg's libraries (ffmpeg-next): decode the source segment
//! once, then scale and encode every rendition in parallel, one thread per rendition.
//!
//! The H.264 encoder is chosen at start-up by [`probe_encoder`]: NVENC when an NVIDIA encoder
//! can really be opened (a GPU without NVENC, such as an H100, fails that and falls back),
//! libx264 otherwise. Each segment gets fresh encoders, so every output segment starts with an
//! IDR picture and decodes on its own.
//!
//! Every segment is an [`ffmpeg_job`] with a deadline proportional to its duration
//! ([`DeadlinePolicy::SEGMENT_TRANSCODE`]); the decoder and every encoder check it between
//! frames, so a segment that cannot be done in time gives its worker back.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use bytes::Bytes;
use ffmpeg::codec::{self, threading};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;
use tokio::sync::Semaphore;

use super::plan::{Gop, H264Profile, Rendition};
use super::{TranscodeError, TranscodeFuture, TranscodeJob, TranscodeOutput, Transcoder};
use crate::ffmpeg_job::{self, DeadlinePolicy, JobControl, JobKind};
use crate::flv::AvcConfig;
use crate::h264::{access_unit_from_annex_b, avc_decoder_config};
use crate::hls::ts::annex_b;
use crate::packet::{Packet, PacketKind, Track};
use crate::segment::Segment;

/// Decoded frames waiting for one rendition's encoder; bounds memory to a few frames.
const FRAME_QUEUE: usize = 4;
/// x264's speed/quality trade-off for live renditions.
const X264_PRESET: &str = "veryfast";
/// NVENC's equivalent (FFmpeg 5's p1-p7 scale; p4 is its default balance).
const NVENC_PRESET: &str = "p4";

/// Which H.264 encoder the bundled transcoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Encoder {
    /// libx264 on the CPU.
    X264,
    /// NVIDIA's hardware encoder (`h264_nvenc`).
    Nvenc,
}

impl H264Encoder {
    /// FFmpeg's name for the encoder.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            H264Encoder::X264 => "libx264",
            H264Encoder::Nvenc => "h264_nvenc",
        }
    }
}

/// Which encoder the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderPreference {
    /// NVENC if usable, else libx264.
    #[default]
    Auto,
    /// NVENC or nothing: an unusable NVENC is an error at start-up.
    Nvenc,
    /// libx264 even where NVENC exists.
    X264,
}

/// The probe's verdict, with the reason NVENC was not taken (for the start-up log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub encoder: H264Encoder,
    pub nvenc_unusable: Option<String>,
}

/// Initializes FFmpeg's libraries once and keeps their log to errors.
pub(crate) fn init_ffmpeg() -> Result<(), TranscodeError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        Ok(())
    })
    .clone()
    .map_err(TranscodeError::Unavailable)
}

/// Picks the H.264 encoder by opening one: NVENC exists in Debian's FFmpeg even where no
/// NVIDIA driver or no NVENC engine is present, so only a real open proves it usable.
pub fn probe_encoder(preference: EncoderPreference) -> Result<EncoderChoice, TranscodeError> {
    init_ffmpeg()?;
    if preference == EncoderPreference::X264 {
        require_x264()?;
        return Ok(EncoderChoice {
            encoder: H264Encoder::X264,
            nvenc_unusable: Some("libx264 is configured".into()),
        });
    }
    match open_encoder(H264Encoder::Nvenc, &probe_rendition(), Rational::new(30, 1)) {
        Ok(_) => Ok(EncoderChoice {
            encoder: H264Encoder::Nvenc,
            nvenc_unusable: None,
        }),
        Err(err) if preference == EncoderPreference::Auto => {
            require_x264()?;
            Ok(EncoderChoice {
                encoder: H264Encoder::X264,
                nvenc_unusable: Some(err.to_string()),
            })
        }
        Err(err) => Err(TranscodeError::Unavailable(format!(
            "NVENC is configured but cannot be used: {err}"
        ))),
    }
}

fn require_x264() -> Result<(), TranscodeError> {
    codec::encoder::find_by_name("libx264")
        .map(|_| ())
        .ok_or_else(|| TranscodeError::Unavailable("this FFmpeg build has no libx264".into()))
}

/// A small rendition to open encoders with while probing.
fn probe_rendition() -> Rendition {
    let profile = super::RenditionProfile {
        name: "probe".into(),
        width: 256,
        height: 144,
        bitrate: 200_000,
        fps: None,
        gop: Gop::Segment,
        profile: H264Profile::Main,
        quality: None,
    };
    Rendition {
        profile,
        width: 256,
        height: 144,
        level: 30,
    }
}

/// The bundled transcoder. Segments run on Tokio's blocking pool, at most one per core at a
/// time: each already keeps several threads busy, and more at once would only make every
/// stream late.
pub struct LocalTranscoder {
    encoder: H264Encoder,
    permits: Arc<Semaphore>,
    deadlines: DeadlinePolicy,
}

impl LocalTranscoder {
    /// A transcoder encoding with `encoder` (see [`probe_encoder`]), running at most
    /// `concurrency` segments at once.
    pub fn new(encoder: H264Encoder, concurrency: usize) -> Result<Self, TranscodeError> {
        init_ffmpeg()?;
        Ok(LocalTranscoder {
            encoder,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            deadlines: DeadlinePolicy::SEGMENT_TRANSCODE,
        })
    }

    /// Gives each segment the deadline `deadlines` sets for its duration, instead of
    /// [`DeadlinePolicy::SEGMENT_TRANSCODE`].
    pub fn with_deadlines(mut self, deadlines: DeadlinePolicy) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// The encoder in use.
    pub fn encoder(&self) -> H264Encoder {
        self.encoder
    }
}

impl Transcoder for LocalTranscoder {
    fn name(&self) -> String {
        format!("local/{}", self.encoder.ffmpeg_name())
    }

    fn transcode(&self, job: TranscodeJob) -> TranscodeFuture {
        let permits = self.permits.clone();
        let encoder = self.encoder;
        let media = Duration::from_millis(job.segment.duration_ms.max(0) as u64);
        let budget = self.deadlines.for_media(media);
        Box::pin(async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| TranscodeError::Unavailable("shutting down".into()))?;
            // The deadline starts with the work, not with the wait for a permit. The permit
            // stays with the thread: a job stopped at its deadline frees it once its threads
            // have stopped, so a core is never counted free while one still works.
            ffmpeg_job::run(JobKind::Transcode, budget, move |control| {
                let _permit = permit;
                transcode_segment(encoder, &job.segment, &job.renditions, control)
            })
            .await
        })
    }
}

/// Transcodes one segment synchronously: decode once, and feed every decoded frame to one
/// encoding thread per rendition. Every thread checks `job` between frames and stops with
/// [`TranscodeError::Job`] when it says so.
pub fn transcode_segment(
    encoder: H264Encoder,
    segment: &Segment,
    renditions: &[Rendition],
    job: &JobControl,
) -> Result<TranscodeOutput, TranscodeError> {
    transcode_frames(encoder, segment, renditions, job).map_err(|err| job.explain(err))
}

fn transcode_frames(
    encoder: H264Encoder,
    segment: &Segment,
    renditions: &[Rendition],
    job: &JobControl,
) -> Result<TranscodeOutput, TranscodeError> {
    init_ffmpeg()?;
    let config = segment
        .video_config
        .as_ref()
        .ok_or_else(|| TranscodeError::Source("the segment has no video".into()))?;
    let config = AvcConfig::parse(config).map_err(|e| TranscodeError::Source(e.to_string()))?;
    let video: Vec<&Packet> = segment
        .packets
        .iter()
        .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
        .collect();
    if video.is_empty() {
        return Err(TranscodeError::Source(
            "the segment has no video frames".into(),
        ));
    }
    let source_rate = source_frame_rate(segment.video_frame_rate().unwrap_or(30.0));
    let end_ms = segment.start_ms + segment.duration_ms.max(1);

    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(renditions.len());
        let mut workers = Vec::with_capacity(renditions.len());
        for rendition in renditions {
            let (frames, receiver) = sync_channel::<Arc<VideoFrame>>(FRAME_QUEUE);
            queues.push(frames);
            let start_ms = segment.start_ms;
            workers.push(scope.spawn(move || {
                encode_rendition(
                    encoder,
                    rendition,
                    source_rate,
                    start_ms,
                    end_ms,
                    receiver,
                    job,
                )
            }));
        }
        let decoded = decode(&config, &video, job, |frame| {
            let frame = Arc::new(frame);
            for queue in &queues {
                // A worker that failed has dropped its receiver; its error is reported below.
                let _ = queue.send(frame.clone());
            }
        });
        drop(queues);
        let mut outputs = Vec::with_capacity(renditions.len());
        for worker in workers {
            let encoded = worker
                .join()
                .map_err(|_| TranscodeError::Unavailable("an encoding thread panicked".into()))??;
            outputs.push(encoded);
        }
        decoded?;
        Ok(outputs
            .into_iter()
            .map(|encoded| rendition_segment(segment, encoded))
            .collect())
    })
}

/// The source frame rate as a fraction, rounded to a thousandth (which keeps 29.97 and 30
/// apart).
fn source_frame_rate(fps: f64) -> Rational {
    let milli = (fps * 1000.0).round().clamp(1.0, 240_000.0) as i32;
    Rational::new(milli, 1000).reduce()
}

/// Decodes the video packets (Annex B, parameter sets before keyframes, millisecond
/// timestamps) and hands every frame to `each` in presentation order.
pub(crate) fn decode(
    config: &AvcConfig,
    packets: &[&Packet],
    job: &JobControl,
    mut each: impl FnMut(VideoFrame),
) -> Result<(), TranscodeError> {
    let codec = codec::decoder::find(codec::Id::H264)
        .ok_or_else(|| TranscodeError::Unavailable("no H.264 decoder".into()))?;
    let mut context = codec::context::Context::new_with_codec(codec);
    context.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| TranscodeError::codec("opening the decoder", e))?;
    let mut frame = VideoFrame::empty();
    let mut drain = |decoder: &mut ffmpeg::decoder::Video, each: &mut dyn FnMut(VideoFrame)| {
        while decoder.receive_frame(&mut frame).is_ok() {
            each(std::mem::replace(&mut frame, VideoFrame::empty()));
        }
    };
    for packet in packets {
        job.check()?;
        let data = annex_b(packet, config).map_err(|e| TranscodeError::Source(e.to_string()))?;
        let mut input = ffmpeg::Packet::copy(&data);
        input.set_pts(Some(packet.pts_ms));
        input.set_dts(Some(packet.dts_ms));
        decoder
            .send_packet(&input)
            .map_err(|e| TranscodeError::codec("decoding", e))?;
        drain(&mut decoder, &mut each);
    }
    decoder
        .send_eof()
        .map_err(|e| TranscodeError::codec("decoding", e))?;
    drain(&mut decoder, &mut each);
    Ok(())
}

/// What one rendition's encoder produced.
struct Encoded {
    config: Bytes,
    packets: Vec<Packet>,
}

/// Scales, resamples in time (when the rendition has its own frame rate) and encodes the frames
/// of one segment for one rendition.
fn encode_rendition(
    kind: H264Encoder,
    rendition: &Rendition,
    source_rate: Rational,
    start_ms: i64,
    end_ms: i64,
    frames: Receiver<Arc<VideoFrame>>,
    job: &JobControl,
) -> Result<Encoded, TranscodeError> {
    let rate = rendition.profile.fps.map_or(source_rate, |f| {
        Rational::new(f.num as i32, f.den.max(1) as i32)
    });
    let mut encoder = open_encoder(kind, rendition, rate)?;
    let mut output = EncodedStream::default();
    let mut scaler: Option<scaling::Context> = None;
    // With a rendition frame rate, frames are sampled on a grid of slots anchored at timestamp
    // 0, so consecutive segments share one grid and every slot is encoded exactly once: each
    // slot in [start, end) shows the last frame presented at or before it (the first frame
    // also covers the slots before it).
    let grid = rendition.profile.fps.map(|f| SlotGrid::new(f.num, f.den));
    let mut slot = grid.map_or(0, |g| g.first_at_or_after(start_ms));
    let mut held: Option<VideoFrame> = None;

    for frame in frames {
        job.check()?;
        let scaled = scale(&mut scaler, &frame, rendition)?;
        let pts = frame.timestamp().or(frame.pts()).unwrap_or(start_ms);
        let Some(grid) = grid else {
            let mut scaled = scaled;
            scaled.set_pts(Some(pts));
            send(&mut encoder, &scaled, &mut output, job)?;
            continue;
        };
        if let Some(previous) = held.as_mut() {
            while grid.time_ms(slot) < pts as f64 && grid.time_ms(slot) < end_ms as f64 {
                previous.set_pts(Some(grid.time_ms(slot).round() as i64));
                send(&mut encoder, previous, &mut output, job)?;
                slot += 1;
            }
        }
        held = Some(scaled);
    }
    if let (Some(grid), Some(last)) = (grid, held.as_mut()) {
        while grid.time_ms(slot) < end_ms as f64 {
            last.set_pts(Some(grid.time_ms(slot).round() as i64));
            send(&mut encoder, last, &mut output, job)?;
            slot += 1;
        }
    }
    // Flushing runs the encoder's whole lookahead: not worth starting for a stopped job.
    job.check()?;
    encoder
        .send_eof()
        .map_err(|e| TranscodeError::codec("encoding", e))?;
    output.drain(&mut encoder);
    output.finish(rendition)
}

/// Frame times of a constant frame rate: slot `k` is at `k * den / num` seconds.
#[derive(Debug, Clone, Copy)]
struct SlotGrid {
    num: f64,
    den: f64,
}

impl SlotGrid {
    fn new(num: u32, den: u32) -> Self {
        SlotGrid {
            num: f64::from(num.max(1)),
            den: f64::from(den.max(1)),
        }
    }

    fn time_ms(self, slot: i64) -> f64 {
        slot as f64 * 1000.0 * self.den / self.num
    }

    fn first_at_or_after(self, ms: i64) -> i64 {
        (ms as f64 * self.num / (1000.0 * self.den)).ceil() as i64
    }
}

fn scale(
    scaler: &mut Option<scaling::Context>,
    frame: &VideoFrame,
    rendition: &Rendition,
) -> Result<VideoFrame, TranscodeError> {
    let stale = scaler.as_ref().is_none_or(|s| {
        let input = s.input();
        input.format != frame.format()
            || input.width != frame.width()
            || input.height != frame.height()
    });
    if stale {
        let context = scaling::Context::get(
            frame.format(),
            frame.width(),
            frame.height(),
            Pixel::YUV420P,
            rendition.width,
            rendition.height,
            scaling::Flags::BICUBIC,
        )
        .map_err(|e| TranscodeError::codec("setting up the scaler", e))?;
        *scaler = Some(context);
    }
    let mut scaled = VideoFrame::empty();
    if let Some(scaler) = scaler.as_mut() {
        scaler
            .run(frame, &mut scaled)
            .map_err(|e| TranscodeError::codec("scaling", e))?;
    }
    Ok(scaled)
}

/// Encodes one frame. Checks `job` first: one source frame may become many encoded ones when a
/// rendition fills the slots of its own frame rate.
fn send(
    encoder: &mut ffmpeg::encoder::Video,
    frame: &VideoFrame,
    output: &mut EncodedStream,
    job: &JobControl,
) -> Result<(), TranscodeError> {
    job.check()?;
    encoder
        .send_frame(frame)
        .map_err(|e| TranscodeError::codec("encoding", e))?;
    output.drain(encoder);
    Ok(())
}

/// Opens an H.264 encoder for a rendition, with millisecond timestamps.
fn open_encoder(
    kind: H264Encoder,
    rendition: &Rendition,
    rate: Rational,
) -> Result<ffmpeg::encoder::Video, TranscodeError> {
    let codec = codec::encoder::find_by_name(kind.ffmpeg_name()).ok_or_else(|| {
        TranscodeError::Unavailable(format!("this FFmpeg build has no {}", kind.ffmpeg_name()))
    })?;
    let mut encoder = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| TranscodeError::codec("creating the encoder", e))?;
    let profile = &rendition.profile;
    encoder.set_width(rendition.width);
    encoder.set_height(rendition.height);
    encoder.set_format(Pixel::YUV420P);
    encoder.set_time_base(Rational::new(1, 1000));
    encoder.set_frame_rate(Some(rate));
    let fps = f64::from(rate.numerator()) / f64::from(rate.denominator().max(1));
    encoder.set_gop(match profile.gop {
        Gop::Intra => 1,
        Gop::Seconds(seconds) => ((seconds * fps).round() as u32).max(1),
        // Larger than any segment: the only keyframe is the first.
        Gop::Segment => 100_000,
    });
    if !profile.profile.b_frames() {
        encoder.set_max_b_frames(0);
    }
    let mut options = Dictionary::new();
    match profile.quality {
        Some(quality) if kind == H264Encoder::X264 => options.set("crf", &quality.to_string()),
        Some(quality) => {
            options.set("rc", "vbr");
            options.set("cq", &quality.to_string());
        }
        None => encoder.set_bit_rate(usize::try_from(profile.bitrate).unwrap_or(usize::MAX)),
    }
    let profile_name = match profile.profile {
        H264Profile::Baseline => "baseline",
        H264Profile::Main => "main",
        H264Profile::High | H264Profile::ConstrainedHigh => "high",
    };
    options.set("profile", profile_name);
    options.set(
        "level",
        &format!("{}.{}", rendition.level / 10, rendition.level % 10),
    );
    match kind {
        H264Encoder::X264 => {
            options.set("preset", X264_PRESET);
            // Every segment is encoded on its own: a scene cut must not start a GOP that the
            // segment boundary would cut short anyway, and the level must hold.
            options.set("forced-idr", "1");
        }
        H264Encoder::Nvenc => {
            options.set("preset", NVENC_PRESET);
            options.set("forced-idr", "1");
        }
    }
    encoder
        .open_with(options)
        .map_err(|e| TranscodeError::codec(kind.ffmpeg_name(), e))
}

/// Encoded packets as they leave the encoder, turned into AVCC.
#[derive(Default)]
struct EncodedStream {
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    packets: Vec<Packet>,
}

impl EncodedStream {
    fn drain(&mut self, encoder: &mut ffmpeg::encoder::Video) {
        let mut packet = ffmpeg::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else { continue };
            let unit = access_unit_from_annex_b(data);
            if self.sps.is_empty() && !unit.sps.is_empty() {
                self.sps = unit.sps;
                self.pps = unit.pps;
            }
            let pts = packet.pts().unwrap_or(0);
            self.packets.push(Packet {
                track: Track::Video,
                kind: PacketKind::Frame,
                dts_ms: packet.dts().unwrap_or(pts),
                pts_ms: pts,
                keyframe: packet.is_key() || unit.has_idr,
                data: unit.avcc,
            });
        }
    }

    fn finish(self, rendition: &Rendition) -> Result<Encoded, TranscodeError> {
        let config = avc_decoder_config(&self.sps, &self.pps).ok_or_else(|| {
            TranscodeError::codec("encoding", format!("{} wrote no SPS/PPS", rendition.name()))
        })?;
        if self.packets.first().is_none_or(|p| !p.keyframe) {
            return Err(TranscodeError::codec(
                "encoding",
                format!("{} did not start with a keyframe", rendition.name()),
            ));
        }
        Ok(Encoded {
            config,
            packets: self.packets,
        })
    }
}

/// A rendition's segment: the encoded video and the source's audio, on the source's timing.
fn rendition_segment(source: &Segment, encoded: Encoded) -> Segment {
    let audio = source
        .packets
        .iter()
        .filter(|p| p.track == Track::Audio && p.kind == PacketKind::Frame);
    let mut packets: Vec<Packet> = encoded.packets;
    packets.extend(audio.cloned());
    // Interleave by decode time, as a muxer expects them (stable: video first on ties).
    packets.sort_by_key(|p| p.dts_ms);
    Segment {
        sequence: source.sequence,
        start_ms: source.start_ms,
        duration_ms: source.duration_ms,
        size_bytes: packets.iter().map(|p| p.data.len() as u64).sum(),
        discontinuity: source.discontinuity,
        video_config: Some(encoded.config),
        audio_config: source.audio_config.clone(),
        packets,
    }
}
