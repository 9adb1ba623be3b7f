//! The bundled transcoder against the `ffmpeg` command line, on the same files.
//!
//! A 720p30 H.264 + AAC source (1 s GOPs) is cut into 2 s segments by our segmenter and written
//! as MPEG-TS files. Each round transcodes every segment to the default 240p/360p/480p ladder
//! twice, once in process ([`transcode_segment`] plus our MPEG-TS muxer, writing the three
//! rendition files) and once with one `ffmpeg` process per segment (decode once, `split`,
//! `scale`, three libx264 encodes with the same settings, writing the three files). Rounds
//! alternate which runs first; the ratio of the two wall times is printed per round, then
//! the median. Goal: at most 1.0.
//!
//! Run: `cargo bench -p studio-media-core --bench transcode [-- SECONDS ROUNDS]` (default 20 s of
//! source, 5 rounds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use studio_media_core::ffmpeg_job::{DeadlinePolicy, JobControl, JobKind};
use studio_media_core::flv::demux_file;
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use studio_media_core::transcode::local::{H264Encoder, transcode_segment};
use studio_media_core::transcode::{
    Gop, H264Profile, Rendition, RenditionProfile, plan_renditions,
};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let seconds: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("studio-transcode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let flv = dir.join("source.flv");
    run(Command::new("ffmpeg")
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
            "veryfast",
            "-b:v",
            "3M",
            "-g",
            "30",
        ])
        .args(["-c:a", "aac"])
        .arg(&flv));
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let packets = demux_file(&Bytes::from(std::fs::read(&flv).unwrap())).unwrap();
    let mut segments: Vec<Segment> = packets
        .into_iter()
        .filter_map(|p| segmenter.push(p).unwrap())
        .collect();
    segments.extend(segmenter.finish());
    let mut muxer = TsMuxer::new();
    let files: Vec<PathBuf> = segments
        .iter()
        .map(|segment| {
            let path = dir.join(format!("source_{}.ts", segment.sequence));
            std::fs::write(&path, muxer.mux(segment).unwrap()).unwrap();
            path
        })
        .collect();

    let ladder = [
        ("240p0", 426, 240, 250_000),
        ("360p0", 640, 360, 800_000),
        ("480p0", 854, 480, 1_600_000),
    ]
    .map(|(name, width, height, bitrate)| RenditionProfile {
        name: name.into(),
        width,
        height,
        bitrate,
        fps: None,
        gop: Gop::Segment,
        profile: H264Profile::High,
        quality: None,
    });
    let renditions = plan_renditions(1280, 720, 30.0, &ladder);
    println!(
        "{} segments of 720p30 ({seconds} s) to {:?}, libx264 preset veryfast, {rounds} rounds",
        segments.len(),
        renditions.iter().map(Rendition::name).collect::<Vec<_>>()
    );

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (ours, cli) = if round % 2 == 0 {
            let ours = in_process(&segments, &renditions, &dir);
            (ours, command_line(&files, &renditions, &dir))
        } else {
            let cli = command_line(&files, &renditions, &dir);
            (in_process(&segments, &renditions, &dir), cli)
        };
        let ratio = ours.as_secs_f64() / cli.as_secs_f64();
        println!(
            "round {}: in process {:.2} s, ffmpeg CLI {:.2} s, ratio {ratio:.3}",
            round + 1,
            ours.as_secs_f64(),
            cli.as_secs_f64()
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio (in process / CLI): {:.3}",
        ratios[ratios.len() / 2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn in_process(segments: &[Segment], renditions: &[Rendition], dir: &Path) -> Duration {
    let started = Instant::now();
    let mut muxers: Vec<TsMuxer> = renditions.iter().map(|_| TsMuxer::new()).collect();
    for segment in segments {
        let media = Duration::from_millis(segment.duration_ms as u64);
        let job = JobControl::new(
            JobKind::Transcode,
            DeadlinePolicy::SEGMENT_TRANSCODE.for_media(media),
        );
        let outputs = transcode_segment(H264Encoder::X264, segment, renditions, &job).unwrap();
        for ((rendition, muxer), output) in renditions.iter().zip(&mut muxers).zip(&outputs) {
            std::fs::write(
                dir.join(format!("ours_{}_{}.ts", rendition.name(), segment.sequence)),
                muxer.mux(output).unwrap(),
            )
            .unwrap();
        }
    }
    started.elapsed()
}

/// One ffmpeg per segment with the settings [`transcode_segment`] uses: bitrate, preset,
/// profile, level, forced IDR, one GOP per segment, bicubic scaling, audio copied.
fn command_line(files: &[PathBuf], renditions: &[Rendition], dir: &Path) -> Duration {
    let started = Instant::now();
    for (i, file) in files.iter().enumerate() {
        let splits: String = (0..renditions.len()).map(|n| format!("[v{n}]")).collect();
        let mut graph = format!("[0:v]split={}{splits}", renditions.len());
        for (n, r) in renditions.iter().enumerate() {
            graph.push_str(&format!(
                ";[v{n}]scale={}:{}:flags=bicubic[o{n}]",
                r.width, r.height
            ));
        }
        let mut command = Command::new("ffmpeg");
        command
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(file)
            .args(["-filter_complex", &graph]);
        for (n, r) in renditions.iter().enumerate() {
            command
                .args([
                    "-map",
                    &format!("[o{n}]"),
                    "-map",
                    "0:a",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                ])
                .args([
                    "-b:v",
                    &r.profile.bitrate.to_string(),
                    "-profile:v",
                    "high",
                    "-level",
                    &format!("{}.{}", r.level / 10, r.level % 10),
                ])
                .args([
                    "-forced-idr",
                    "1",
                    "-g",
                    "100000",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "copy",
                    "-f",
                    "mpegts",
                ])
                .arg(dir.join(format!("cli_{}_{i}.ts", r.name())));
        }
        run(&mut command);
    }
    started.elapsed()
}

fn run(command: &mut Command) {
    let status = command.status().expect("ffmpeg must be installed");
    assert!(status.success(), "{command:?} failed");
}
