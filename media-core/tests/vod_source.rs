//! VOD sources against the real tools: ffmpeg writes the files users upload (MP4 with AVCC and
//! raw AAC, MPEG-TS with Annex B and ADTS, audio only, other codecs), and the segments read from
//! them must mux into MPEG-TS that ffmpeg decodes without an error, lasting as long as the file.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use studio_media_core::ffmpeg_job::{JobControl, JobKind};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::mp4::probe;
use studio_media_core::segment::Segment;
use studio_media_core::vod::{SourceLimits, VodError, check_source, segment_file};
use support::{TempDir, assert_decodes_cleanly, ffmpeg, ffprobe_duration};

fn job() -> JobControl {
    JobControl::new(JobKind::Demux, Duration::from_secs(60))
}

/// `seconds` of 320x240 test video (keyframe every second) and a tone, as `path`'s container.
fn source(dir: &Path, name: &str, seconds: u32, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let t = seconds.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

/// The segments of `path`, muxed to one MPEG-TS file beside it (as HLS would serve them in
/// order).
fn segments_of(path: &Path) -> (Vec<Segment>, PathBuf) {
    let mut segments = Vec::new();
    let scratch = path.with_extension("copy.ts");
    let count = segment_file(path, &scratch, Duration::from_secs(2), &job(), |s| {
        segments.push(s);
        true
    })
    .unwrap();
    assert_eq!(count as usize, segments.len());
    assert!(!scratch.exists(), "the copy is removed");
    let ts = path.with_extension("out.ts");
    let mut muxer = TsMuxer::new();
    let mut bytes = Vec::new();
    for segment in &segments {
        bytes.extend_from_slice(&muxer.mux(segment).unwrap());
    }
    std::fs::write(&ts, bytes).unwrap();
    (segments, ts)
}

/// ffmpeg decodes the file without a word, and ffprobe says how long it lasts.
fn decodes_cleanly(path: &Path) -> f64 {
    assert_decodes_cleanly(path);
    ffprobe_duration(path)
}

#[test]
fn an_mp4_upload_becomes_keyframe_aligned_segments_that_play() {
    let dir = TempDir::new("vod-mp4");
    let mp4 = source(
        dir.path(),
        "upload.mp4",
        7,
        &["-c:v", "libx264", "-g", "25", "-c:a", "aac"],
    );
    let info = probe(&mp4, &job()).unwrap();
    check_source(&info, &SourceLimits::default()).unwrap();
    let (segments, ts) = segments_of(&mp4);
    assert_eq!(
        segments.len(),
        4,
        "7 s in ~2 s segments cut at 1 s keyframes"
    );
    for segment in &segments {
        assert!(segment.video_config.is_some() && segment.audio_config.is_some());
        assert!(segment.packets[0].is_video_keyframe());
    }
    let total: i64 = segments.iter().map(|s| s.duration_ms).sum();
    assert!((total - 7000).abs() <= 100, "segments last {total} ms");
    let duration = decodes_cleanly(&ts);
    assert!((duration - 7.0).abs() <= 0.2, "{duration}");
}

#[test]
fn mpeg_ts_with_annex_b_and_adts_is_read_too() {
    let dir = TempDir::new("vod-ts");
    let src = source(
        dir.path(),
        "upload.ts",
        5,
        &[
            "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", "-f", "mpegts",
        ],
    );
    let (segments, ts) = segments_of(&src);
    assert_eq!(segments.len(), 3);
    let duration = decodes_cleanly(&ts);
    assert!((duration - 5.0).abs() <= 0.2, "{duration}");
}

#[test]
fn audio_only_files_work() {
    let dir = TempDir::new("vod-audio");
    let path = dir.path().join("voice.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "5",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]);
    check_source(&probe(&path, &job()).unwrap(), &SourceLimits::default()).unwrap();
    let (segments, ts) = segments_of(&path);
    assert!(segments.iter().all(|s| s.video_config.is_none()));
    let duration = decodes_cleanly(&ts);
    assert!((duration - 5.0).abs() <= 0.2, "{duration}");
}

#[test]
fn other_codecs_and_oversized_sources_are_refused_with_the_reason() {
    let dir = TempDir::new("vod-refused");
    let webm = source(
        dir.path(),
        "upload.webm",
        1,
        &["-c:v", "libvpx", "-c:a", "libopus"],
    );
    let err = check_source(&probe(&webm, &job()).unwrap(), &SourceLimits::default()).unwrap_err();
    assert!(
        matches!(&err, VodError::Unsupported(m) if m.contains("vp8") && m.contains("H.264")),
        "{err}"
    );
    let mp4 = source(
        dir.path(),
        "long.mp4",
        3,
        &["-c:v", "libx264", "-c:a", "aac"],
    );
    let short = SourceLimits {
        max_duration: Duration::from_secs(2),
        ..SourceLimits::default()
    };
    let err = check_source(&probe(&mp4, &job()).unwrap(), &short).unwrap_err();
    assert!(
        err.to_string().contains("longer than the 2 s allowed"),
        "{err}"
    );
    let small = SourceLimits {
        max_width: 160,
        max_height: 120,
        ..SourceLimits::default()
    };
    let err = check_source(&probe(&mp4, &job()).unwrap(), &small).unwrap_err();
    assert!(err.to_string().contains("320x240"), "{err}");
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    assert!(probe(&text, &job()).is_err());
    let scratch = dir.path().join("notes.ts");
    assert!(segment_file(&text, &scratch, Duration::from_secs(2), &job(), |_| true).is_err());
    assert!(!scratch.exists(), "the copy is removed whatever happens");
}
