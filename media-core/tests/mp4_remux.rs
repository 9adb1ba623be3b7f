//! MP4 remuxing against the real tools: ffmpeg writes MPEG-TS like HLS segments hold, the
//! remuxer turns it into an MP4, and ffprobe/ffmpeg must read all of it cleanly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use studio_media_core::ffmpeg_job::{self, JobControl, JobError, JobKind};
use studio_media_core::mp4::{Mp4Error, TrackKind, probe, remux_ts_to_mp4};

/// A deadline no healthy test input comes near.
fn job(kind: JobKind) -> JobControl {
    JobControl::new(kind, Duration::from_secs(60))
}

use support::{TempDir, assert_decodes_cleanly, ffmpeg};

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
    remux_ts_to_mp4(&ts, &mp4, &job(JobKind::Remux)).unwrap();

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
    remux_ts_to_mp4(&ts, &mp4, &job(JobKind::Remux)).unwrap();
    let info = probe(&mp4, &job(JobKind::Probe)).unwrap();
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
    remux_ts_to_mp4(&ts, &mp4, &job(JobKind::Remux)).unwrap();
    let info = probe(&mp4, &job(JobKind::Probe)).unwrap();
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
    let result = remux_ts_to_mp4(&input, &dir.path().join("out.mp4"), &job(JobKind::Remux));
    assert!(
        matches!(result, Err(Mp4Error::Ffmpeg(_) | Mp4Error::NoMedia)),
        "{result:?}"
    );
}

/// Runs `work` as an FFmpeg job with a deadline of `budget`, bounding the test itself so that a
/// job that never answers fails it instead of hanging it. Also reports whether the job's thread
/// ended (the worker is free again) within 2 s of the answer.
async fn run_bounded<T: Send + 'static>(
    kind: JobKind,
    budget: Duration,
    work: impl FnOnce(&JobControl) -> Result<T, Mp4Error> + Send + 'static,
) -> (Result<T, Mp4Error>, Duration, bool) {
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    let started = Instant::now();
    let job = ffmpeg_job::run(kind, budget, move |job| {
        let result = work(job);
        flag.store(true, Ordering::Release);
        result
    });
    let result = tokio::time::timeout(Duration::from_secs(20), job)
        .await
        .expect("the job answers by its deadline, not never");
    let answered_after = started.elapsed();
    let freed = Instant::now();
    while !ended.load(Ordering::Acquire) && freed.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (result, answered_after, ended.load(Ordering::Acquire))
}

/// A FIFO with a writer of our own that never writes: readers see "nothing yet", never an end
/// of file, until it is dropped.
struct Fifo {
    path: PathBuf,
    _held_open: std::fs::File,
}

impl Fifo {
    fn new(dir: &Path, name: &str) -> Fifo {
        let path = dir.join(name);
        let made = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        // Read-write, which does not wait for the other end to open.
        let held_open = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        Fifo {
            path,
            _held_open: held_open,
        }
    }
}

/// A child process killed when dropped (also when the test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_a_pipe_that_never_delivers_stops_at_the_deadline() {
    let dir = TempDir::new("fifo");
    let fifo = Fifo::new(dir.path(), "never.ts");
    let path = fifo.path.clone();

    let (result, answered_after, freed) =
        run_bounded(JobKind::Probe, Duration::from_millis(300), move |job| {
            probe(&path, job)
        })
        .await;
    assert!(
        matches!(
            result,
            Err(Mp4Error::Job(JobError::DeadlineExceeded {
                what: JobKind::Probe,
                ..
            }))
        ),
        "{result:?}"
    );
    assert!(
        answered_after < Duration::from_secs(3),
        "{answered_after:?}"
    );
    assert!(
        freed,
        "the probe's thread stops although the pipe stays open"
    );
    drop(fifo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remuxing_an_input_that_never_ends_stops_at_the_deadline() {
    let dir = TempDir::new("endless");
    let fifo = Fifo::new(dir.path(), "live.ts");
    // A live MPEG-TS stream without end, as fast as ffmpeg makes it.
    let _encoder = KillOnDrop(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=30"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
            .args(["-f", "mpegts"])
            .arg(&fifo.path)
            .spawn()
            .expect("ffmpeg must be installed (scripts/test-deps installs it)"),
    );
    let (input, mp4) = (fifo.path.clone(), dir.path().join("out.mp4"));

    let (result, answered_after, freed) =
        run_bounded(JobKind::Remux, Duration::from_millis(1500), move |job| {
            remux_ts_to_mp4(&input, &mp4, job)
        })
        .await;
    assert!(
        matches!(
            result,
            Err(Mp4Error::Job(JobError::DeadlineExceeded {
                what: JobKind::Remux,
                ..
            }))
        ),
        "{result:?}"
    );
    assert!(
        answered_after < Duration::from_secs(4),
        "{answered_after:?}"
    );
    assert!(freed, "the remux's thread stops between packets");
    drop(fifo);
}
