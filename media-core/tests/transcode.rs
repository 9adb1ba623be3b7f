//! The bundled transcoder against the real tools: ffmpeg writes a 720p30 H.264 + AAC source,
//! it is segmented like live ingest, every segment is transcoded to a ladder, and ffprobe and
//! ffmpeg must read each rendition back with the planned size, frame rate, profile and
//! duration, and decode it without an error.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use studio_media_core::ffmpeg_job::{DeadlinePolicy, JobControl, JobError, JobKind};
use studio_media_core::flv::{AvcConfig, demux_file};
use studio_media_core::hls::avc_codec_string;
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use studio_media_core::transcode::local::{
    EncoderPreference, H264Encoder, LocalTranscoder, probe_encoder, transcode_segment,
};
use studio_media_core::transcode::{
    FrameRate, Gop, H264Profile, Rendition, RenditionProfile, TranscodeError, TranscodeJob,
    Transcoder, plan_renditions,
};
use studio_media_core::{PacketKind, Track};
use support::TempDir;

/// Writes `seconds` of 1280x720 test video at 30 fps with 1 s GOPs (and a sine tone) as FLV.
fn source_flv(dir: &Path, seconds: u32) -> Bytes {
    let path = dir.join("source.flv");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-t",
            &seconds.to_string(),
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
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed (scripts/test-deps installs it)");
    assert!(status.success());
    Bytes::from(std::fs::read(&path).unwrap())
}

fn segments(flv: &Bytes) -> Vec<Segment> {
    support::segment(&demux_file(flv).unwrap())
}

fn profile(name: &str, width: u32, height: u32, bitrate: u64) -> RenditionProfile {
    RenditionProfile {
        name: name.into(),
        width,
        height,
        bitrate,
        fps: None,
        gop: Gop::Segment,
        profile: H264Profile::High,
        quality: None,
    }
}

fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            entries,
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // MPEG-TS lists the stream under its program too: the first line is the stream's.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_720p_source_becomes_the_planned_ladder() {
    let dir = TempDir::new("ladder");
    let source = segments(&source_flv(dir.path(), 6));
    assert_eq!(source.len(), 3, "three 2 s segments");

    let mut ladder = vec![
        profile("240p0", 426, 240, 250_000),
        profile("360p0", 640, 360, 800_000),
        profile("480p0", 854, 480, 1_600_000),
    ];
    ladder[0].fps = Some(FrameRate { num: 15, den: 1 });
    ladder[0].profile = H264Profile::Baseline;
    ladder[1].gop = Gop::Seconds(1.0);
    ladder[1].profile = H264Profile::Main;
    // Larger than the source: skipped, never upscaled.
    ladder.push(profile("1080p0", 1920, 1080, 6_000_000));
    let renditions = plan_renditions(1280, 720, 30.0, &ladder);
    assert_eq!(renditions.len(), 3);

    let mut muxers: Vec<TsMuxer> = renditions.iter().map(|_| TsMuxer::new()).collect();
    let mut files: Vec<Vec<u8>> = vec![Vec::new(); renditions.len()];
    for segment in &source {
        let job = JobControl::new(JobKind::Transcode, Duration::from_secs(60));
        let outputs =
            transcode_segment(H264Encoder::X264, segment, &renditions, &job).expect("transcodes");
        assert_eq!(outputs.len(), renditions.len());
        for (i, (rendition, output)) in renditions.iter().zip(&outputs).enumerate() {
            assert_eq!(
                (output.sequence, output.start_ms, output.duration_ms),
                (segment.sequence, segment.start_ms, segment.duration_ms)
            );
            let first = output
                .packets
                .iter()
                .find(|p| p.track == Track::Video)
                .unwrap();
            assert!(
                first.keyframe,
                "{} segment {} starts with a keyframe",
                rendition.name(),
                segment.sequence
            );
            let config = AvcConfig::parse(output.video_config.as_ref().unwrap()).unwrap();
            assert_eq!(
                avc_codec_string(&config),
                rendition.codec_string(),
                "the master playlist's CODECS match the stream"
            );
            let audio_in = segment
                .packets
                .iter()
                .filter(|p| p.track == Track::Audio && p.kind == PacketKind::Frame)
                .count();
            let audio_out = output
                .packets
                .iter()
                .filter(|p| p.track == Track::Audio)
                .count();
            assert_eq!(audio_in, audio_out, "the source audio is carried over");
            files[i].extend_from_slice(&muxers[i].mux(output).unwrap());
        }
    }

    let expect = [
        (426, 240, 15.0, "Constrained Baseline"),
        (640, 360, 30.0, "Main"),
        (854, 480, 30.0, "High"),
    ];
    for ((rendition, file), (width, height, fps, profile)) in
        renditions.iter().zip(&files).zip(expect)
    {
        let path = dir.path().join(format!("{}.ts", rendition.name()));
        std::fs::write(&path, file).unwrap();
        let probed = ffprobe(&path, "stream=width,height,profile,nb_read_frames");
        assert_eq!(
            probed,
            format!("{profile},{width},{height},{}", (6.0 * fps) as u32),
            "{}",
            rendition.name()
        );
        let duration: f64 = ffprobe(&path, "format=duration").parse().unwrap();
        assert!(
            (duration - 6.0).abs() < 0.1,
            "{}: {duration} s",
            rendition.name()
        );
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{}: {}",
            rendition.name(),
            String::from_utf8_lossy(&decode.stderr)
        );
    }
    // The 1 s GOP of 360p0: a keyframe every 30 frames.
    let keyframes = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
        ])
        .arg(dir.path().join("360p0.ts"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&keyframes.stdout)
            .lines()
            .filter(|l| l.starts_with('1'))
            .count(),
        6
    );
}

#[tokio::test]
async fn the_transcoder_interface_runs_jobs_off_the_async_threads() {
    let dir = TempDir::new("interface");
    let source = segments(&source_flv(dir.path(), 2));
    let transcoder = LocalTranscoder::new(H264Encoder::X264, 1).unwrap();
    assert_eq!(transcoder.name(), "local/libx264");
    let renditions = plan_renditions(1280, 720, 30.0, &[profile("240p0", 426, 240, 250_000)]);
    let job = TranscodeJob {
        stream: "s".into(),
        segment: source[0].clone().into(),
        renditions: renditions.into(),
    };
    let out = transcoder.transcode(job).await.unwrap();
    assert_eq!(out.len(), 1);
    assert!(
        out[0]
            .packets
            .iter()
            .filter(|p| p.track == Track::Video)
            .count()
            >= 59
    );

    // A segment without video is refused with a reason, not a panic.
    let mut audio_only = source[0].clone();
    audio_only.video_config = None;
    audio_only.packets.retain(|p| p.track == Track::Audio);
    let job = TranscodeJob {
        stream: "s".into(),
        segment: audio_only.into(),
        renditions: Vec::new().into(),
    };
    let err = transcoder.transcode(job).await.unwrap_err();
    assert!(err.to_string().contains("no video"), "{err}");
}

#[test]
fn the_probe_falls_back_to_libx264_without_a_usable_nvenc() {
    let choice = probe_encoder(EncoderPreference::Auto).unwrap();
    match choice.encoder {
        // A machine with a working NVIDIA encoder.
        H264Encoder::Nvenc => assert!(choice.nvenc_unusable.is_none()),
        // No driver, no GPU, or a GPU without NVENC (H100): the reason is kept for the log.
        H264Encoder::X264 => {
            assert!(
                choice
                    .nvenc_unusable
                    .as_deref()
                    .is_some_and(|why| !why.is_empty())
            );
            let forced = probe_encoder(EncoderPreference::Nvenc).unwrap_err();
            assert!(
                forced
                    .to_string()
                    .contains("NVENC is configured but cannot be used"),
                "{forced}"
            );
        }
    }
    assert_eq!(
        probe_encoder(EncoderPreference::X264).unwrap().encoder,
        H264Encoder::X264
    );
}

/// Three renditions as large as the 720p source: seconds of encoding for every second of media.
fn heavy_ladder() -> Vec<Rendition> {
    let ladder: Vec<RenditionProfile> = (0..3)
        .map(|i| profile(&format!("720p{i}"), 1280, 720, 3_000_000))
        .collect();
    plan_renditions(1280, 720, 30.0, &ladder)
}

fn is_deadline(result: &Result<Vec<Segment>, TranscodeError>) -> bool {
    matches!(
        result,
        Err(TranscodeError::Job(JobError::DeadlineExceeded {
            what: JobKind::Transcode,
            ..
        }))
    )
}

#[test]
fn a_segment_past_its_deadline_stops_between_frames() {
    let dir = TempDir::new("deadline");
    let source = segments(&source_flv(dir.path(), 2));
    let job = JobControl::new(JobKind::Transcode, Duration::from_millis(200));
    let started = Instant::now();
    let result = transcode_segment(H264Encoder::X264, &source[0], &heavy_ladder(), &job);
    // Called directly, on this thread: only the checks between frames can stop it.
    assert!(is_deadline(&result), "{:?}", result.map(|r| r.len()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped {:?} after starting",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_job_stopped_early_gives_its_worker_back() {
    let dir = TempDir::new("worker");
    let flv = source_flv(dir.path(), 6);
    // One 6 s segment, which takes the heavy ladder many seconds.
    let mut segmenter = Segmenter::new(SegmenterConfig {
        target: Duration::from_secs(6),
        ..SegmenterConfig::default()
    });
    for packet in demux_file(&flv).unwrap() {
        segmenter.push(packet).unwrap();
    }
    let long: Arc<Segment> = segmenter.finish().expect("one segment").into();
    assert!(long.duration_ms >= 5_900, "{}", long.duration_ms);
    let heavy = TranscodeJob {
        stream: "s".into(),
        segment: long.clone(),
        renditions: heavy_ladder().into(),
    };
    // A job refused at once, but only once it holds the worker: how long it waits is how long
    // the worker stays taken.
    let mut no_video = (*long).clone();
    no_video.video_config = None;
    let probe_worker = TranscodeJob {
        stream: "s".into(),
        segment: no_video.into(),
        renditions: Vec::new().into(),
    };
    let worker_wait = |transcoder: Arc<LocalTranscoder>, job: TranscodeJob| async move {
        let started = Instant::now();
        let refused = tokio::time::timeout(Duration::from_secs(30), transcoder.transcode(job))
            .await
            .expect("the worker comes back");
        assert!(
            matches!(refused, Err(TranscodeError::Source(_))),
            "{refused:?}"
        );
        started.elapsed()
    };

    // Past its deadline: 300 ms for any segment, on the only worker.
    let tight = Arc::new(
        LocalTranscoder::new(H264Encoder::X264, 1)
            .unwrap()
            .with_deadlines(DeadlinePolicy {
                floor: Duration::from_millis(300),
                per_media_second: Duration::ZERO,
            }),
    );
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), tight.transcode(heavy.clone()))
        .await
        .expect("the job answers by its deadline");
    assert!(is_deadline(&result), "{:?}", result.map(|r| r.len()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let waited = worker_wait(tight, probe_worker.clone()).await;
    assert!(
        waited < Duration::from_secs(3),
        "the worker was taken {waited:?} more"
    );

    // Cancelled: its caller stops waiting after 300 ms.
    let patient = Arc::new(LocalTranscoder::new(H264Encoder::X264, 1).unwrap());
    let gave_up = tokio::time::timeout(Duration::from_millis(300), patient.transcode(heavy)).await;
    assert!(gave_up.is_err());
    let waited = worker_wait(patient, probe_worker).await;
    assert!(
        waited < Duration::from_secs(3),
        "the worker was taken {waited:?} more"
    );
}
