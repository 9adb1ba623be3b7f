//! The MPEG-TS demuxer against files the real encoder wrote: ffmpeg makes a .ts, ffprobe lists
//! its packets, and the demuxer must find the same frames with the same timestamps and
//! keyframes.

mod support;

use std::path::Path;
use std::process::Command;

use studio_media_core::flv::{AacConfig, AvcConfig};
use studio_media_core::mpegts::TsDemuxer;
use studio_media_core::{Packet, PacketKind, Track};
use support::TempDir;

/// Encodes `seconds` of test video (30 fps, 1 s GOP, B-frames) and/or 48 kHz AAC to MPEG-TS.
fn encode(path: &Path, video: bool, audio: bool, seconds: u32) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if video {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"]);
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args(["-t", &seconds.to_string()]);
    if video {
        cmd.args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-bf",
            "2",
            "-sc_threshold",
            "0",
        ]);
    }
    if audio {
        cmd.args(["-c:a", "aac", "-b:a", "64k"]);
    }
    let status =
        cmd.args(["-f", "mpegts"]).arg(path).status().expect(
            "ffmpeg must be installed (scripts/test-deps installs it: apt-get install ffmpeg)",
        );
    assert!(status.success());
}

/// One packet as ffprobe reports it: track, pts and dts in 90 kHz ticks, keyframe flag.
#[derive(Debug, PartialEq)]
struct Probed {
    track: Track,
    pts: i64,
    dts: i64,
    keyframe: bool,
}

fn probe(path: &Path) -> Vec<Probed> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Probed {
                track: if fields[0] == "video" {
                    Track::Video
                } else {
                    Track::Audio
                },
                pts: fields[1].parse().unwrap(),
                dts: fields[2].parse().unwrap(),
                keyframe: fields[3].starts_with('K'),
            }
        })
        .collect()
}

/// Demuxes the file in SRT-sized chunks (7 TS packets, as encoders send over SRT).
fn demux(path: &Path) -> Vec<Packet> {
    let bytes = std::fs::read(path).unwrap();
    let mut demuxer = TsDemuxer::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(1316) {
        demuxer.push(chunk, &mut out).expect("demuxable");
    }
    demuxer.finish(&mut out).unwrap();
    let stats = demuxer.stats();
    assert_eq!(
        stats.continuity_errors + stats.dropped_units + stats.skipped_bytes,
        0,
        "{stats:?}"
    );
    out
}

fn frames(packets: &[Packet], track: Track) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| p.track == track && p.kind == PacketKind::Frame)
        .collect()
}

/// Checks the demuxed frames of `track` against ffprobe's packets, one for one.
fn assert_same_frames(packets: &[Packet], probed: &[Probed], track: Track) {
    let got = frames(packets, track);
    let want: Vec<&Probed> = probed.iter().filter(|p| p.track == track).collect();
    assert_eq!(got.len(), want.len(), "{track:?} frame count");
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            got.dts_ms,
            want.dts.div_euclid(90),
            "{track:?} frame {i} dts"
        );
        assert_eq!(
            got.pts_ms,
            want.pts.div_euclid(90),
            "{track:?} frame {i} pts"
        );
        if track == Track::Video {
            assert_eq!(got.keyframe, want.keyframe, "video frame {i} keyframe");
        }
        assert!(!got.data.is_empty());
    }
}

#[test]
fn ffmpeg_h264_and_aac_demux_like_ffprobe_reads_them() {
    let dir = TempDir::new("av");
    let path = dir.path().join("av.ts");
    encode(&path, true, true, 3);
    let probed = probe(&path);
    let packets = demux(&path);

    assert_same_frames(&packets, &probed, Track::Video);
    assert_same_frames(&packets, &probed, Track::Audio);
    let video = frames(&packets, Track::Video);
    assert_eq!(video.len(), 90);
    assert_eq!(
        video.iter().filter(|p| p.keyframe).count(),
        3,
        "a keyframe a second"
    );
    assert!(video[0].keyframe);
    assert!(
        video.iter().any(|p| p.pts_ms > p.dts_ms),
        "B-frames reorder"
    );
    assert!(video.windows(2).all(|w| w[1].dts_ms > w[0].dts_ms));
    let audio = frames(&packets, Track::Audio);
    assert!(
        audio
            .windows(2)
            .all(|w| matches!(w[1].dts_ms - w[0].dts_ms, 21 | 22))
    );

    // One configuration per track, before the track's first frame, and one that parses.
    let configs: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.kind == PacketKind::Config)
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    let position = |pred: &dyn Fn(&Packet) -> bool| packets.iter().position(pred).unwrap();
    assert!(
        position(&|p| p.track == Track::Video && p.kind == PacketKind::Config)
            < position(&|p| p.track == Track::Video && p.kind == PacketKind::Frame)
    );
    let avc = AvcConfig::parse(
        &configs
            .iter()
            .find(|p| p.track == Track::Video)
            .unwrap()
            .data,
    )
    .unwrap();
    assert_eq!(avc.nal_length_size, 4);
    assert_eq!(avc.profile, 100, "libx264 defaults to High");
    let aac = AacConfig::parse(
        &configs
            .iter()
            .find(|p| p.track == Track::Audio)
            .unwrap()
            .data,
    )
    .unwrap();
    assert_eq!(
        (aac.object_type, aac.sample_rate, aac.channels),
        (2, 48_000, 1)
    );

    // Frames are AVCC: 4-byte lengths that add up, without delimiters or parameter sets.
    for frame in &video {
        let mut rest = frame.data.as_ref();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let nal_type = rest[4] & 0x1f;
            assert!(
                !matches!(nal_type, 7..=9),
                "NAL type {nal_type} left in a frame"
            );
            rest = &rest[4 + len..];
        }
    }
}

#[test]
fn audio_only_and_video_only_files() {
    let dir = TempDir::new("single");
    for (name, video, audio) in [("audio.ts", false, true), ("video.ts", true, false)] {
        let path = dir.path().join(name);
        encode(&path, video, audio, 2);
        let probed = probe(&path);
        let packets = demux(&path);
        let track = if video { Track::Video } else { Track::Audio };
        assert!(
            packets.iter().all(|p| p.track == track),
            "{name}: only {track:?}"
        );
        assert_same_frames(&packets, &probed, track);
        assert!(!frames(&packets, track).is_empty());
    }
}
