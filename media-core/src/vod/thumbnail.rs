//! Thumbnails: a JPEG of a segment's first picture (segments start at a keyframe, so one
//! picture is decoded, not the segment), scaled down to a preview size, and the WebVTT index
//! players use to show them along the timeline.

use bytes::Bytes;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::{Rational, codec, encoder};
use ffmpeg_next as ffmpeg;

use crate::ffmpeg_job::JobControl;
use crate::flv::AvcConfig;
use crate::packet::Track;
use crate::segment::Segment;
use crate::transcode::TranscodeError;

/// A JPEG of `segment`'s first picture, at most `max_width` pixels wide (never upscaled),
/// keeping the aspect ratio. `None` for a segment without video.
pub fn keyframe_jpeg(
    segment: &Segment,
    max_width: u32,
    job: &JobControl,
) -> Result<Option<Bytes>, TranscodeError> {
    ffmpeg::init().map_err(|e| TranscodeError::codec("initializing FFmpeg", e))?;
    let Some(config) = segment.video_config.as_ref() else {
        return Ok(None);
    };
    let config = AvcConfig::parse(config).map_err(|e| TranscodeError::Source(e.to_string()))?;
    let Some(first) = segment
        .packets
        .iter()
        .find(|p| p.track == Track::Video && p.keyframe)
    else {
        return Ok(None);
    };
    let mut picture = None;
    crate::transcode::local::decode(&config, &[first], job, |frame| {
        picture.get_or_insert(frame);
    })?;
    let Some(picture) = picture else {
        return Ok(None);
    };
    job.check()?;
    let (width, height) = preview_size(picture.width(), picture.height(), max_width);
    let mut scaler = scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        Pixel::YUVJ420P,
        width,
        height,
        scaling::Flags::BICUBIC,
    )
    .map_err(|e| TranscodeError::codec("setting up the scaler", e))?;
    let mut scaled = VideoFrame::empty();
    scaler
        .run(&picture, &mut scaled)
        .map_err(|e| TranscodeError::codec("scaling", e))?;
    scaled.set_pts(Some(0));

    let codec = encoder::find(codec::Id::MJPEG)
        .ok_or_else(|| TranscodeError::Unavailable("no JPEG encoder".into()))?;
    let mut context = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| TranscodeError::codec("opening the JPEG encoder", e))?;
    context.set_width(width);
    context.set_height(height);
    context.set_format(Pixel::YUVJ420P);
    context.set_time_base(Rational::new(1, 25));
    // Good quality for a preview (MJPEG's quantizer scale, 2 is best).
    context.set_qmin(2);
    context.set_qmax(4);
    let mut jpeg = context
        .open_as(codec)
        .map_err(|e| TranscodeError::codec("opening the JPEG encoder", e))?;
    jpeg.send_frame(&scaled)
        .map_err(|e| TranscodeError::codec("encoding the JPEG", e))?;
    jpeg.send_eof()
        .map_err(|e| TranscodeError::codec("encoding the JPEG", e))?;
    let mut packet = ffmpeg::Packet::empty();
    jpeg.receive_packet(&mut packet)
        .map_err(|e| TranscodeError::codec("encoding the JPEG", e))?;
    Ok(packet.data().map(Bytes::copy_from_slice))
}

/// The largest even size at most `max_width` wide with the picture's aspect ratio.
fn preview_size(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    if width <= max_width {
        return (even(f64::from(width)), even(f64::from(height)));
    }
    let scale = f64::from(max_width) / f64::from(width);
    (even(f64::from(max_width)), even(f64::from(height) * scale))
}

/// One thumbnail of a [`vtt`] index: the picture file's name (relative to the index) and the
/// span of media it stands for, in milliseconds from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_ms: i64,
    pub end_ms: i64,
    pub file: String,
}

/// The WebVTT index of `cues`, as players read thumbnail tracks.
pub fn vtt(cues: &[Cue]) -> String {
    let time = |ms: i64| {
        let ms = ms.max(0);
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let mut out = String::from("WEBVTT\n");
    for cue in cues {
        out.push_str(&format!(
            "\n{} --> {}\n{}\n",
            time(cue.start_ms),
            time(cue.end_ms),
            cue.file
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_keep_the_aspect_ratio_and_never_grow() {
        assert_eq!(preview_size(1920, 1080, 320), (320, 180));
        assert_eq!(preview_size(1080, 1920, 320), (320, 568));
        assert_eq!(preview_size(240, 136, 320), (240, 136));
    }

    #[test]
    fn the_index_is_webvtt_with_one_cue_per_picture() {
        let cues = [
            Cue {
                start_ms: 0,
                end_ms: 6000,
                file: "keyframes_0.jpg".into(),
            },
            Cue {
                start_ms: 6000,
                end_ms: 3_725_250,
                file: "keyframes_1.jpg".into(),
            },
        ];
        assert_eq!(
            vtt(&cues),
            "WEBVTT\n\n00:00:00.000 --> 00:00:06.000\nkeyframes_0.jpg\n\n00:00:06.000 --> 01:02:05.250\nkeyframes_1.jpg\n"
        );
    }
}
