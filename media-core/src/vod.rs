//! Video on demand: a media file (an upload, an import) read into the segments the live
//! pipeline is made of, so that VOD is packaged and transcoded by the same pieces as live
//! (the segmenter, the transcoders, the MPEG-TS muxer).
//!
//! [`check_source`] validates what [`crate::mp4::probe`] found against [`SourceLimits`];
//! [`segment_file`] reads the file with FFmpeg's demuxers (MP4/MOV, Matroska, MPEG-TS, FLV and
//! the rest) and cuts it into segments at keyframes, without re-encoding. H.264 video and AAC
//! audio are taken as they are; other codecs are refused with a message that says which codecs
//! work.

pub mod clip;
pub mod thumbnail;

use std::path::Path;
use std::time::Duration;

use std::io::Read;

use ffmpeg::{Rational, codec, encoder, format, media};
use ffmpeg_next as ffmpeg;

use crate::ffmpeg_job::{self, JobControl, JobError};
use crate::mp4::{MediaInfo, TrackKind};
use crate::mpegts::TsDemuxer;
use crate::segment::{Segment, SegmentError, Segmenter, SegmenterConfig};

/// What a source file may be.
#[derive(Debug, Clone)]
pub struct SourceLimits {
    /// Longest media accepted.
    pub max_duration: Duration,
    /// Largest picture accepted (either orientation).
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for SourceLimits {
    fn default() -> SourceLimits {
        SourceLimits {
            max_duration: Duration::from_secs(6 * 3600),
            max_width: 4096,
            max_height: 4096,
        }
    }
}

/// Why a source cannot be made into an asset.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    /// The file is media, but not media this server can package.
    #[error("{0}")]
    Unsupported(String),
    /// FFmpeg could not read the file (not media, truncated, corrupt).
    #[error("the file could not be read as media: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
    /// The video's keyframes are too far apart, or a segment would be too large.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The job ran out of time or was cancelled.
    #[error(transparent)]
    Job(#[from] JobError),
}

/// Checks a probed source against `limits`: it has audio or video, its video is H.264 and its
/// audio AAC, and its length and picture size are within bounds.
pub fn check_source(info: &MediaInfo, limits: &SourceLimits) -> Result<(), VodError> {
    let video = info.tracks.iter().find(|t| t.kind == TrackKind::Video);
    let audio = info.tracks.iter().find(|t| t.kind == TrackKind::Audio);
    if video.is_none() && audio.is_none() {
        return Err(VodError::Unsupported(
            "the file has no audio or video track".into(),
        ));
    }
    if let Some(video) = video
        && video.codec != "h264"
    {
        return Err(VodError::Unsupported(format!(
            "video codec {} is not supported: upload H.264 video (with AAC audio)",
            video.codec
        )));
    }
    if let Some(audio) = audio
        && audio.codec != "aac"
    {
        return Err(VodError::Unsupported(format!(
            "audio codec {} is not supported: upload AAC audio",
            audio.codec
        )));
    }
    if info.duration_s > limits.max_duration.as_secs_f64() {
        return Err(VodError::Unsupported(format!(
            "the media lasts {:.0} s, longer than the {} s allowed",
            info.duration_s,
            limits.max_duration.as_secs()
        )));
    }
    if let Some(video) = video {
        let (w, h) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
        let (long, short) = (w.max(h), w.min(h));
        if w == 0 || h == 0 {
            return Err(VodError::Unsupported(
                "the video's picture size is unknown".into(),
            ));
        }
        if long > limits.max_width.max(limits.max_height)
            || short > limits.max_width.min(limits.max_height)
        {
            return Err(VodError::Unsupported(format!(
                "the video is {w}x{h}, larger than the {}x{} allowed",
                limits.max_width, limits.max_height
            )));
        }
    }
    Ok(())
}

/// Reads the media file at `path` and hands each segment (about `target` long, cut at video
/// keyframes) to `sink`, in order; `sink` returns false to stop early. Runs on the calling
/// (blocking) thread, checking `job` between packets. Returns the number of segments.
///
/// The file's H.264 and AAC tracks are first copied into an MPEG-TS file beside `scratch`
/// (FFmpeg's MPEG-TS muxer puts every container's H.264 and AAC into the one form, Annex B
/// with parameter sets in band and ADTS), which the crate's own demuxer then reads, as it
/// reads SRT ingest.
pub fn segment_file(
    path: &Path,
    scratch: &Path,
    target: Duration,
    job: &JobControl,
    mut sink: impl FnMut(Segment) -> bool,
) -> Result<u64, VodError> {
    let result = segment(path, scratch, target, job, &mut sink);
    let _ = std::fs::remove_file(scratch);
    result.map_err(|err| job.explain(err))
}

fn segment(
    path: &Path,
    scratch: &Path,
    target: Duration,
    job: &JobControl,
    sink: &mut impl FnMut(Segment) -> bool,
) -> Result<u64, VodError> {
    copy_to_mpegts(path, scratch, job)?;
    let mut file = std::fs::File::open(scratch).map_err(io_error)?;
    let mut demuxer = TsDemuxer::new();
    let mut segmenter = Segmenter::new(SegmenterConfig {
        target,
        ..SegmenterConfig::default()
    });
    let mut buffer = vec![0u8; 188 * 512];
    let mut packets = Vec::new();
    let mut count = 0u64;
    let mut more = true;
    while more {
        job.check()?;
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            demuxer.finish(&mut packets).map_err(demux_error)?;
            more = false;
        } else {
            demuxer
                .push(&buffer[..read], &mut packets)
                .map_err(demux_error)?;
        }
        for packet in packets.drain(..) {
            if let Some(segment) = segmenter.push(packet)? {
                count += 1;
                if !sink(segment) {
                    return Ok(count);
                }
            }
        }
    }
    if let Some(segment) = segmenter.finish() {
        count += 1;
        sink(segment);
    }
    if count == 0 {
        return Err(VodError::Unsupported(
            "the file holds no frames that can be played".into(),
        ));
    }
    Ok(count)
}

/// Copies the best H.264 video and AAC audio tracks of `input` into the MPEG-TS file `output`,
/// timestamps shifted to start at 0.
fn copy_to_mpegts(input: &Path, output: &Path, job: &JobControl) -> Result<(), VodError> {
    ffmpeg::init()?;
    let mut ictx = ffmpeg_job::open_input(input, job)?;
    let video = ictx.streams().best(media::Type::Video).map(|s| s.index());
    let audio = ictx.streams().best(media::Type::Audio).map(|s| s.index());
    let mut octx = format::output_as(&output, "mpegts")?;
    let mut mapping: Vec<Option<(usize, Rational)>> = vec![None; ictx.nb_streams() as usize];
    let mut start_us: Option<i64> = None;
    for ist in ictx.streams() {
        let wanted = match ist.parameters().id() {
            codec::Id::H264 => Some(ist.index()) == video,
            codec::Id::AAC => Some(ist.index()) == audio,
            _ => false,
        };
        if !wanted {
            continue;
        }
        let mut ost = octx.add_stream(encoder::find(codec::Id::None))?;
        ost.set_parameters(ist.parameters());
        mapping[ist.index()] = Some((ost.index(), ist.time_base()));
        if let Some(start) = crate::mp4::start_us_of(&ist) {
            start_us = Some(start_us.map_or(start, |s: i64| s.min(start)));
        }
    }
    if mapping.iter().all(Option::is_none) {
        return Err(VodError::Unsupported(
            "the file has no H.264 video or AAC audio track".into(),
        ));
    }
    octx.write_header()?;
    crate::mp4::copy_packets(&mut ictx, &mut octx, &mapping, start_us.unwrap_or(0), job)
}

fn io_error(err: std::io::Error) -> VodError {
    VodError::Unsupported(format!("reading the source failed: {err}"))
}

fn demux_error(err: crate::mpegts::TsDemuxError) -> VodError {
    VodError::Unsupported(format!("the source could not be read: {err}"))
}
