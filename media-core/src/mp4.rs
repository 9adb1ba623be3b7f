//! MP4 files: remuxing MPEG-TS (what HLS segments hold) into a progressive-download MP4 with its
//! index first (`faststart`), and probing a media file for the facts an asset advertises.
//!
//! Both run FFmpeg's own demuxers and muxers (through ffmpeg-next), copying packets without
//! re-encoding. They block and stop when their [`JobControl`] says so; [`remux_and_probe`] runs
//! both as [`ffmpeg_job`]s under their deadlines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg::{Dictionary, Packet, Rational, Rescale, codec, encoder, format, media};
use ffmpeg_next as ffmpeg;

use crate::ffmpeg_job::{self, DeadlinePolicy, JobControl, JobError, JobKind};

/// Why a remux or probe failed.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    /// FFmpeg could not read the input or write the output.
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
    /// The input holds neither audio nor video.
    #[error("the input has no audio or video stream")]
    NoMedia,
    /// The job ran out of time or was cancelled.
    #[error(transparent)]
    Job(#[from] JobError),
}

/// What a media file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// The container's short name as FFmpeg knows it (`mov` for MP4 read back, `mpegts`).
    pub container: String,
    /// Seconds, from the earliest to the latest sample of any track.
    pub duration_s: f64,
    /// Bits per second of the whole file, if known.
    pub bitrate: Option<i64>,
    pub tracks: Vec<TrackInfo>,
}

/// One audio or video track of a [`MediaInfo`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    pub kind: TrackKind,
    /// FFmpeg's codec name (`h264`, `aac`).
    pub codec: String,
    /// Seconds from the file's start.
    pub start_time_s: Option<f64>,
    /// Seconds.
    pub duration_s: Option<f64>,
    pub bitrate: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// FFmpeg's pixel format name (`yuv420p`).
    pub pixel_format: Option<String>,
    pub fps: Option<f64>,
    pub channels: Option<u16>,
    pub sample_rate: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

fn init() -> Result<(), Mp4Error> {
    // Idempotent; registers nothing global beyond FFmpeg's own one-time setup.
    ffmpeg::init()?;
    Ok(())
}

/// Copies the audio and video of the MPEG-TS file `input` into a new MP4 file `output`, index
/// first so players can start before the download ends. Timestamps are shifted to start at 0
/// (an HLS session starts wherever the encoder's clock was); ADTS audio is turned into the
/// raw AAC MP4 wants by the bitstream filter FFmpeg's MP4 muxer inserts itself.
///
/// Stops with [`Mp4Error::Job`] when `job` says so: reads are interrupted, and the job is
/// checked between packets (an endless input keeps delivering them).
pub fn remux_ts_to_mp4(input: &Path, output: &Path, job: &JobControl) -> Result<(), Mp4Error> {
    remux(input, output, job).map_err(|err| job.explain(err))
}

fn remux(input: &Path, output: &Path, job: &JobControl) -> Result<(), Mp4Error> {
    init()?;
    let mut ictx = ffmpeg_job::open_input(input, job)?;
    let mut octx = format::output_as(&output, "mp4")?;
    // Input stream index -> (output index, input time base).
    let mut mapping: Vec<Option<(usize, Rational)>> = vec![None; ictx.nb_streams() as usize];
    let mut start_us: Option<i64> = None;
    for ist in ictx.streams() {
        let Some(params) = tagless_parameters(&ist)? else {
            continue;
        };
        let mut ost = octx.add_stream(encoder::find(codec::Id::None))?;
        ost.set_parameters(params);
        mapping[ist.index()] = Some((ost.index(), ist.time_base()));
        if let Some(start) = start_us_of(&ist) {
            start_us = Some(start_us.map_or(start, |s: i64| s.min(start)));
        }
    }
    if mapping.iter().all(Option::is_none) {
        return Err(Mp4Error::NoMedia);
    }
    let mut options = Dictionary::new();
    options.set("movflags", "+faststart");
    octx.write_header_with(options)?;
    copy_packets(&mut ictx, &mut octx, &mapping, start_us.unwrap_or(0), job)
}

/// When `ist` starts, in microseconds; `None` if the container does not say.
pub(crate) fn start_us_of(ist: &ffmpeg::Stream) -> Option<i64> {
    (ist.start_time() != i64::MIN).then(|| {
        ist.start_time()
            .rescale(ist.time_base(), ffmpeg::rescale::TIME_BASE)
    })
}

/// Copies the packets of the input streams `mapping` names (input index -> output index and
/// input time base) into `octx`, whose header is written, timestamps shifted back by
/// `start_us`; then writes the trailer. Checks `job` between packets (an endless input keeps
/// delivering them).
pub(crate) fn copy_packets<E: From<ffmpeg::Error> + From<JobError>>(
    ictx: &mut format::context::Input,
    octx: &mut format::context::Output,
    mapping: &[Option<(usize, Rational)>],
    start_us: i64,
    job: &JobControl,
) -> Result<(), E> {
    let out_time_bases: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();
    let mut packet = Packet::empty();
    loop {
        job.check()?;
        match packet.read(ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            // A demuxer resyncs past a corrupt packet.
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(err) => return Err(err.into()),
        }
        let Some(Some((out_index, in_tb))) = mapping.get(packet.stream()).copied() else {
            continue;
        };
        let shift = start_us.rescale(ffmpeg::rescale::TIME_BASE, in_tb);
        packet.set_pts(packet.pts().map(|t| t - shift));
        packet.set_dts(packet.dts().map(|t| t - shift));
        packet.rescale_ts(in_tb, out_time_bases[out_index]);
        packet.set_position(-1);
        packet.set_stream(out_index);
        packet.write_interleaved(octx)?;
    }
    octx.write_trailer()?;
    Ok(())
}

/// Remuxes the MPEG-TS file `input` (holding `media` of media) into the MP4 file `output`, then
/// probes the MP4, each as an [`ffmpeg_job`] on a blocking thread under its deadline
/// ([`DeadlinePolicy::REMUX`] for the media's duration, then [`DeadlinePolicy::PROBE`]).
pub async fn remux_and_probe(
    input: PathBuf,
    output: PathBuf,
    media: Duration,
) -> Result<MediaInfo, Mp4Error> {
    let written = output.clone();
    ffmpeg_job::run(
        JobKind::Remux,
        DeadlinePolicy::REMUX.for_media(media),
        move |job| remux_ts_to_mp4(&input, &output, job),
    )
    .await?;
    ffmpeg_job::run(
        JobKind::Probe,
        DeadlinePolicy::PROBE.for_media(media),
        move |job| probe(&written, job),
    )
    .await
}

/// The output parameters of an audio or video input stream (`None` for other streams): codec,
/// picture size and pixel format, or sample rate, layout and format, and no codec tag.
///
/// MPEG-TS labels its streams with TS stream types as codec tags, which the MP4 muxer refuses;
/// the safe API cannot clear a tag, so the parameters are rebuilt from a fresh codec context.
/// They carry no decoder configuration either: the MP4 muxer takes H.264's SPS/PPS from the
/// first (key)frame, which MPEG-TS repeats in-band, and AAC's from the ADTS headers through
/// the `aac_adtstoasc` bitstream filter it inserts itself.
fn tagless_parameters(ist: &ffmpeg::Stream) -> Result<Option<codec::Parameters>, Mp4Error> {
    let params = ist.parameters();
    let medium = params.medium();
    if !matches!(medium, media::Type::Audio | media::Type::Video) || params.id() == codec::Id::None
    {
        return Ok(None);
    }
    let Some(codec) = ffmpeg::decoder::find(params.id()) else {
        return Ok(None);
    };
    let probed = codec::context::Context::from_parameters(params)?.decoder();
    let fresh = codec::context::Context::new_with_codec(codec).encoder();
    if medium == media::Type::Video {
        let probed = probed.video()?;
        let mut out = fresh.video()?;
        out.set_width(probed.width());
        out.set_height(probed.height());
        out.set_format(probed.format());
        Ok(Some(codec::Parameters::from(&out)))
    } else {
        let probed = probed.audio()?;
        let mut out = fresh.audio()?;
        out.set_rate(probed.rate() as i32);
        out.set_channel_layout(probed.channel_layout());
        out.set_format(probed.format());
        Ok(Some(codec::Parameters::from(&out)))
    }
}

/// Reads the container and track facts of the media file at `path`; its reads stop when `job`
/// says so.
pub fn probe(path: &Path, job: &JobControl) -> Result<MediaInfo, Mp4Error> {
    probe_facts(path, job).map_err(|err| job.explain(err))
}

fn probe_facts(path: &Path, job: &JobControl) -> Result<MediaInfo, Mp4Error> {
    init()?;
    let ictx = ffmpeg_job::open_input(path, job)?;
    let container = ictx
        .format()
        .name()
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let seconds = |value: i64, tb: Rational| -> Option<f64> {
        (value != i64::MIN && value >= 0 && tb.denominator() != 0)
            .then(|| value as f64 * f64::from(tb))
    };
    let mut tracks = Vec::new();
    for ist in ictx.streams() {
        let params = ist.parameters();
        let kind = match params.medium() {
            media::Type::Video => TrackKind::Video,
            media::Type::Audio => TrackKind::Audio,
            _ => continue,
        };
        let bitrate = (params.bit_rate() > 0).then(|| params.bit_rate());
        let mut track = TrackInfo {
            kind,
            codec: params.id().name().to_string(),
            start_time_s: seconds(ist.start_time(), ist.time_base()),
            duration_s: seconds(ist.duration(), ist.time_base()),
            bitrate,
            width: None,
            height: None,
            pixel_format: None,
            fps: None,
            channels: None,
            sample_rate: None,
        };
        let context = codec::context::Context::from_parameters(params)?;
        match kind {
            TrackKind::Video => {
                if let Ok(video) = context.decoder().video() {
                    track.width = Some(video.width());
                    track.height = Some(video.height());
                    track.pixel_format = video.format().descriptor().map(|d| d.name().to_string());
                }
                let rate = ist.avg_frame_rate();
                if rate.numerator() > 0 && rate.denominator() > 0 {
                    track.fps = Some(f64::from(rate));
                }
            }
            TrackKind::Audio => {
                if let Ok(audio) = context.decoder().audio() {
                    track.channels = Some(audio.channels());
                    track.sample_rate = Some(audio.rate());
                }
            }
        }
        tracks.push(track);
    }
    if tracks.is_empty() {
        return Err(Mp4Error::NoMedia);
    }
    let duration_s = seconds(ictx.duration(), ffmpeg::rescale::TIME_BASE).unwrap_or(0.0);
    let bitrate = (ictx.bit_rate() > 0).then(|| ictx.bit_rate());
    Ok(MediaInfo {
        container,
        duration_s,
        bitrate,
        tracks,
    })
}
