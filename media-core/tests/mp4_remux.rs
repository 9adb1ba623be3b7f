//! MP4 remuxing against the real tools: ffmpeg writes MPEG-TS like HLS segments hold, the
//! remuxer turns it into an MP4, and ffprobe/ffmpeg must read all of it cleanly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use studio_media_core::mp4::{Mp4Error, TrackKind, probe, remux_ts_to_mp4};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (scripts/test-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
use support::TempDir;

fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            entries,
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

fn assert_decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "decoding reports: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 5 s of 640x360 30 fps H.264 with 1 s GOPs and 48 kHz stereo AAC, as MPEG-TS (which starts
/// its clock at 1.4 s).
fn write_ts(dir: &Path) -> PathBuf {
    let ts = dir.join("in.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "5",
        "-ac",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        ts.to_str().unwrap(),
    ]);
    ts
}

#[test]
fn ts_becomes_a_faststart_mp4_starting_at_zero() {
    let dir = TempDir::new("av");
    let ts = write_ts(dir.path());
    let mp4 = dir.path().join("out.mp4");
    remux_ts_to_mp4(&ts, &mp4).unwrap();

    let format = ffprobe(&mp4, "format=format_name,duration,start_time");
    assert!(value(&format, "format_name").contains("mp4"), "{format}");
    let duration: f64 = value(&format, "duration").parse().unwrap();
    assert!((duration - 5.0).abs() < 0.1, "5 s in, {duration} s out");
    let start: f64 = value(&format, "start_time").parse().unwrap();
    assert!(start.abs() < 0.05, "starts at {start}");
    let streams = ffprobe(
        &mp4,
        "stream=codec_name,codec_tag_string,width,height,sample_rate,channels",
    );
    assert!(
        streams.contains("codec_name=h264") && streams.contains("codec_tag_string=avc1"),
        "{streams}"
    );
    assert!(
        streams.contains("codec_name=aac") && streams.contains("codec_tag_string=mp4a"),
        "{streams}"
    );
    assert!(
        streams.contains("width=640") && streams.contains("height=360"),
        "{streams}"
    );
    assert!(
        streams.contains("sample_rate=48000") && streams.contains("channels=2"),
        "{streams}"
    );
    assert_decodes_cleanly(&mp4);

    // faststart: the index (moov) precedes the media (mdat).
    let bytes = std::fs::read(&mp4).unwrap();
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(find(b"moov") < find(b"mdat"), "moov must come first");
}

#[test]
fn probe_reports_what_an_asset_advertises() {
    let dir = TempDir::new("probe");
    let ts = write_ts(dir.path());
    let mp4 = dir.path().join("out.mp4");
    remux_ts_to_mp4(&ts, &mp4).unwrap();
    let info = probe(&mp4).unwrap();
    assert!((info.duration_s - 5.0).abs() < 0.1, "{info:?}");
    assert!(info.bitrate.unwrap_or(0) > 0, "{info:?}");
    let video = info
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    assert_eq!(video.codec, "h264");
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    assert_eq!(video.pixel_format.as_deref(), Some("yuv420p"));
    assert!((video.fps.unwrap() - 30.0).abs() < 0.01, "{video:?}");
    let audio = info
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .unwrap();
    assert_eq!(audio.codec, "aac");
    assert_eq!((audio.sample_rate, audio.channels), (Some(48000), Some(2)));
}

#[test]
fn audio_only_ts_becomes_an_audio_mp4() {
    let dir = TempDir::new("audio");
    let ts = dir.path().join("in.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "3",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        ts.to_str().unwrap(),
    ]);
    let mp4 = dir.path().join("out.mp4");
    remux_ts_to_mp4(&ts, &mp4).unwrap();
    let info = probe(&mp4).unwrap();
    assert_eq!(info.tracks.len(), 1);
    assert_eq!(info.tracks[0].kind, TrackKind::Audio);
    assert!((info.duration_s - 3.0).abs() < 0.1, "{info:?}");
    assert_decodes_cleanly(&mp4);
}

#[test]
fn garbage_is_an_error_not_a_file() {
    let dir = TempDir::new("garbage");
    let input = dir.path().join("in.ts");
    std::fs::write(&input, vec![0u8; 4096]).unwrap();
    let result = remux_ts_to_mp4(&input, &dir.path().join("out.mp4"));
    assert!(
        matches!(result, Err(Mp4Error::Ffmpeg(_) | Mp4Error::NoMedia)),
        "{result:?}"
    );
}
