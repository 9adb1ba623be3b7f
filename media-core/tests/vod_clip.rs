//! Clips cut from a session's stored segments, checked with the real tools: the clip decodes
//! without an error, lasts as long as asked, and begins at the picture nearest the requested
//! start (the test video shows its frame number, so the first picture tells where the cut is:
//! `testsrc` draws a counter; the first frame's timestamp on the session's clock is checked
//! instead, from what the cutter reports).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use studio_media_core::ffmpeg_job::{JobControl, JobKind};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::segment::Segment;
use studio_media_core::vod::clip::{ClipCutter, ClipError, ClipSpan};
use studio_media_core::vod::segment_file;
use support::{TempDir, assert_decodes_cleanly, ffmpeg, ffprobe_duration};

/// When the session's first frame was shown (unix ms).
const T0: i64 = 1_780_000_000_000;

/// A live session as stored: `seconds` of 25 fps video with a keyframe every `gop` frames
/// (B-frames included) and a tone, cut into ~2 s segments at keyframes, each muxed to MPEG-TS by
/// one muxer (as the live packager does) and known by the wall-clock time of its first frame.
fn session(dir: &Path, seconds: u32, gop: u32, video: bool) -> Vec<(Vec<u8>, i64)> {
    let src = dir.join("source.ts");
    let t = seconds.to_string();
    let g = gop.to_string();
    let mut args = vec![];
    if video {
        args.extend(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]);
    }
    args.extend([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
    ]);
    if video {
        args.extend([
            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", &g, "-bf", "2",
        ]);
    }
    args.extend(["-c:a", "aac", "-f", "mpegts", src.to_str().unwrap()]);
    ffmpeg(&args);
    let mut segments: Vec<Segment> = Vec::new();
    let job = JobControl::new(JobKind::Demux, Duration::from_secs(60));
    segment_file(
        &src,
        &dir.join("copy.ts"),
        Duration::from_secs(2),
        &job,
        |s| {
            segments.push(s);
            true
        },
    )
    .unwrap();
    let origin = segments[0].start_ms;
    let mut muxer = TsMuxer::new();
    segments
        .iter()
        .map(|s| (muxer.mux(s).unwrap().to_vec(), T0 + s.start_ms - origin))
        .collect()
}

/// Cuts `[start, end)` (ms after T0) from the session, feeding segments until the cutter says
/// it is done, and writes the clip to `out`.
fn cut(
    segments: &[(Vec<u8>, i64)],
    start: i64,
    end: i64,
    out: &Path,
) -> Result<(ClipSpan, usize), ClipError> {
    let mut cutter = ClipCutter::new(T0 + start, T0 + end);
    let mut bytes = Vec::new();
    let mut fed = 0;
    for (ts, date) in segments {
        if cutter.is_done() {
            break;
        }
        // Segments that end before the start are never needed; the caller skips them.
        if let Some(chunk) = cutter.push(ts, *date)? {
            bytes.extend_from_slice(&chunk);
        }
        fed += 1;
    }
    let (tail, span) = cutter.finish()?;
    if let Some(tail) = tail {
        bytes.extend_from_slice(&tail);
    }
    std::fs::write(out, bytes).unwrap();
    Ok((span, fed))
}

/// ffmpeg decodes the file without a word; ffprobe's duration of the file and its number of
/// video frames.
fn decodes_cleanly(path: &Path) -> (f64, Option<u64>) {
    assert_decodes_cleanly(path);
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_frames"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    // MPEG-TS lists the stream under its program too.
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok());
    (ffprobe_duration(path), frames)
}

#[test]
fn a_clip_lasts_as_long_as_asked_and_starts_at_the_nearest_keyframe() {
    let dir = TempDir::new("clip-gop2");
    // Keyframes every 2 s: at 0, 2, 4, 6, 8... s.
    let segments = session(dir.path(), 16, 50, true);
    let out = dir.path().join("clip.ts");

    // 3.3 s is nearer the keyframe at 4 s than the one at 2 s: the clip starts at 4 s and lasts
    // the 5.8 s asked for.
    let (span, fed) = cut(&segments, 3_300, 9_100, &out).unwrap();
    assert_eq!(span.start_ms, T0 + 4_000);
    assert!(
        (span.end_ms - span.start_ms - 5_800).abs() <= 80,
        "{span:?}"
    );
    assert!(fed < segments.len(), "segments after the end are not read");
    let (duration, frames) = decodes_cleanly(&out);
    assert!((duration - 5.8).abs() <= 0.15, "lasts {duration} s");
    let frames = frames.unwrap();
    assert!((143..=146).contains(&frames), "{frames} frames for 5.8 s");

    // 4.9 s is nearer 4 s than 6 s: the clip starts before the start asked for.
    let (span, _) = cut(&segments, 4_900, 7_000, &out).unwrap();
    assert_eq!(span.start_ms, T0 + 4_000);
    let (duration, _) = decodes_cleanly(&out);
    assert!((duration - 2.1).abs() <= 0.15, "lasts {duration} s");

    // A range that runs past the session's end is cut short; one before it is refused.
    let (span, _) = cut(&segments, 12_000, 30_000, &out).unwrap();
    assert_eq!(span.start_ms, T0 + 12_000);
    let (duration, _) = decodes_cleanly(&out);
    assert!((duration - 4.0).abs() <= 0.15, "lasts {duration} s");
    assert!(matches!(
        cut(&segments, -60_000, -50_000, &out),
        Err(ClipError::Empty)
    ));
    assert!(matches!(
        cut(&segments, 40_000, 50_000, &out),
        Err(ClipError::Empty)
    ));
}

#[test]
fn a_start_inside_the_last_gop_and_a_short_gop_are_cut_exactly() {
    let dir = TempDir::new("clip-gop1");
    // Keyframes every 0.4 s: the cut is within 0.2 s of the start asked for.
    let segments = session(dir.path(), 10, 10, true);
    let out = dir.path().join("clip.ts");
    let (span, _) = cut(&segments, 2_500, 5_500, &out).unwrap();
    assert!((span.start_ms - (T0 + 2_500)).abs() <= 200, "{span:?}");
    let (duration, _) = decodes_cleanly(&out);
    assert!((duration - 3.0).abs() <= 0.15, "lasts {duration} s");
}

#[test]
fn an_audio_only_session_is_cut_at_frames() {
    let dir = TempDir::new("clip-audio");
    let segments = session(dir.path(), 8, 0, false);
    let out = dir.path().join("clip.ts");
    let (span, _) = cut(&segments, 1_234, 4_567, &out).unwrap();
    assert!((span.start_ms - (T0 + 1_234)).abs() <= 25, "{span:?}");
    let (duration, frames) = decodes_cleanly(&out);
    assert!(frames.is_none_or(|f| f == 0));
    assert!((duration - 3.333).abs() <= 0.1, "lasts {duration} s");
}
