//! HLS output against the real tools: ffmpeg publishes over RTMP, the stream is segmented
//! and muxed to `.ts` files with a playlist, and ffprobe/ffmpeg must read all of it cleanly.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use studio_media_core::flv::{AacConfig, AvcConfig};
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::hls::{aac_codec_string, avc_codec_string, sps_resolution};
use studio_media_core::ingest::rtmp::{RtmpConfig, RtmpServer};
use studio_media_core::ingest::{IngestEvent, PublishGrant, PublishRequest};
use studio_media_core::segment::Segment;
use studio_media_core::{Packet, PacketKind};
use support::{TempDir, segment};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const KEY: &str = "hls-test-key";

async fn start_server() -> (RtmpServer, mpsc::Receiver<IngestEvent>) {
    let config = RtmpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..RtmpConfig::default()
    };
    RtmpServer::bind(config, |req: PublishRequest| async move {
        assert_eq!(req.stream_key, KEY);
        Ok(PublishGrant {
            stream_id: "stream-1".into(),
        })
    })
    .await
    .expect("bind")
}

/// Publishes `seconds` of ffmpeg test media and returns every packet received.
async fn publish(inputs_and_codecs: &str) -> Vec<Packet> {
    let (server, mut events) = start_server().await;
    let url = format!("rtmp://{}/live/{KEY}", server.local_addr());
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(inputs_and_codecs.split_whitespace())
        .args(["-f", "flv", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed (scripts/test-deps installs it: apt-get install ffmpeg)");

    let mut packets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(IngestEvent::Started {
                packets: mut queue, ..
            })) => {
                while let Some(packet) = queue.recv().await {
                    packets.push(packet);
                }
            }
            Ok(Some(IngestEvent::Ended { .. })) => break,
            Ok(None) | Err(_) => panic!("the publish did not end in time"),
        }
    }
    let status = timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("ffmpeg exits in time")
        .expect("wait");
    assert!(status.success());
    packets
}

/// Muxes every segment to `<sequence>.ts` and writes `index.m3u8`; returns the file names.
fn write_hls(dir: &Path, segments: &[Segment]) -> Vec<String> {
    let mut muxer = TsMuxer::new();
    let mut playlist = MediaPlaylist::new(0);
    let mut names = Vec::new();
    for s in segments {
        let name = format!("{}.ts", s.sequence);
        std::fs::write(dir.join(&name), muxer.mux(s).expect("muxable")).unwrap();
        playlist.push(name.clone(), s.duration_ms as f64 / 1000.0, s.discontinuity);
        names.push(name);
    }
    playlist.end();
    std::fs::write(dir.join("index.m3u8"), playlist.render()).unwrap();
    names
}

/// Runs a tool to completion (killed after 20 s); returns (success, stdout, stderr).
async fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String, String) {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("finishes in time")
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ffprobe's streams and format as flat `key=value` pairs (`streams.stream.0.codec_name`),
/// which need no JSON parser.
async fn probe(dir: &Path, file: &str) -> HashMap<String, String> {
    let args = [
        "-v",
        "error",
        "-show_streams",
        "-show_format",
        "-of",
        "flat",
        file,
    ];
    let (ok, stdout, stderr) = run("ffprobe", &args, dir).await;
    assert!(ok && stderr.is_empty(), "ffprobe {file}: {stderr}");
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The probed streams' codec names, with the index of each.
fn codecs(probe: &HashMap<String, String>) -> HashMap<String, usize> {
    (0..4)
        .filter_map(|i| {
            Some((
                probe
                    .get(&format!("streams.stream.{i}.codec_name"))?
                    .clone(),
                i,
            ))
        })
        .collect()
}

fn seconds(probe: &HashMap<String, String>, key: &str) -> f64 {
    probe
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing in {probe:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {probe:?}"))
}

/// Decodes the whole playlist; any complaint (corrupt data, timestamps) fails. The HLS
/// demuxer reopens each segment, so the segments are also checked as the one transport stream
/// a player sees: continuity counters never skip, and each track's timestamps increase across
/// segment boundaries.
async fn assert_decodes_cleanly(dir: &Path, names: &[String]) {
    let args = ["-v", "error", "-i", "index.m3u8", "-f", "null", "-"];
    let (ok, _, stderr) = run("ffmpeg", &args, dir).await;
    assert!(
        ok && stderr.is_empty(),
        "ffmpeg decoding the playlist: {stderr}"
    );

    let mut all = Vec::new();
    for name in names {
        all.extend(std::fs::read(dir.join(name)).unwrap());
    }
    assert_eq!(all.len() % 188, 0);
    let mut last_cc: HashMap<u16, u8> = HashMap::new();
    for (i, p) in all.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "sync byte of packet {i}");
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let has_payload = p[3] & 0x10 != 0;
        let cc = p[3] & 0x0f;
        if let Some(&prev) = last_cc.get(&pid) {
            let expected = if has_payload { (prev + 1) & 0x0f } else { prev };
            assert_eq!(
                cc, expected,
                "continuity counter of pid {pid:#x} at packet {i}"
            );
        }
        last_cc.insert(pid, cc);
    }
    std::fs::write(dir.join("all.ts"), &all).unwrap();

    let args = ["-v", "warning", "-i", "all.ts", "-f", "null", "-"];
    let (ok, _, stderr) = run("ffmpeg", &args, dir).await;
    assert!(
        ok && stderr.is_empty(),
        "ffmpeg decoding the joined segments: {stderr}"
    );
    let args = [
        "-v",
        "error",
        "-show_entries",
        "packet=stream_index,dts",
        "-of",
        "csv=p=0",
        "all.ts",
    ];
    let (ok, stdout, stderr) = run("ffprobe", &args, dir).await;
    assert!(ok && stderr.is_empty(), "{stderr}");
    let mut last_dts: HashMap<String, i64> = HashMap::new();
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        // Packets with side data get a trailing field.
        let mut fields = line.split(',');
        let stream = fields.next().unwrap_or_default();
        let dts: i64 = fields
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("every packet has a dts: {line:?}"));
        if let Some(prev) = last_dts.insert(stream.to_owned(), dts) {
            assert!(dts > prev, "stream {stream}: dts {dts} after {prev}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_video_becomes_playable_hls() {
    let packets = publish(
        "-re -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
         -t 5 -c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k",
    )
    .await;
    let segments = segment(&packets);
    assert!(segments.len() >= 2, "{} segments", segments.len());
    let dir = TempDir::new("av");
    let names = write_hls(dir.path(), &segments);

    for (s, name) in segments.iter().zip(&names) {
        let p = probe(dir.path(), name).await;
        let streams = codecs(&p);
        let video = streams["h264"];
        let audio = streams["aac"];
        assert_eq!(p[&format!("streams.stream.{video}.width")], "640");
        assert_eq!(p[&format!("streams.stream.{video}.height")], "360");
        assert_eq!(p[&format!("streams.stream.{audio}.sample_rate")], "44100");
        let expected = s.duration_ms as f64 / 1000.0;
        for key in [
            format!("streams.stream.{video}.duration"),
            format!("streams.stream.{audio}.duration"),
            "format.duration".to_owned(),
        ] {
            let got = seconds(&p, &key);
            assert!(
                (got - expected).abs() <= 0.1,
                "{name}: {key} {got} vs segment {expected}"
            );
        }
    }

    let p = probe(dir.path(), "index.m3u8").await;
    let total = seconds(&p, "format.duration");
    assert!((total - 5.0).abs() <= 0.3, "playlist lasts {total} s");
    assert_decodes_cleanly(dir.path(), &names).await;

    // What the master playlist would advertise for this rendition.
    let avc = AvcConfig::parse(segments[0].video_config.as_ref().unwrap()).unwrap();
    let aac = AacConfig::parse(segments[0].audio_config.as_ref().unwrap()).unwrap();
    assert_eq!(sps_resolution(&avc.sps[0]), Some((640, 360)));
    let video_codec = avc_codec_string(&avc);
    assert!(video_codec.starts_with("avc1.64"), "{video_codec}");
    assert_eq!(aac_codec_string(&aac), "mp4a.40.2");
    let master = master_playlist(&[Variant {
        uri: "index.m3u8".into(),
        bandwidth: 1_000_000,
        average_bandwidth: None,
        resolution: sps_resolution(&avc.sps[0]),
        codecs: vec![video_codec, aac_codec_string(&aac)],
        frame_rate: Some(30.0),
    }]);
    std::fs::write(dir.path().join("master.m3u8"), master).unwrap();
    let p = probe(dir.path(), "master.m3u8").await;
    assert!((seconds(&p, "format.duration") - 5.0).abs() <= 0.3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_publish_becomes_playable_hls() {
    let packets =
        publish("-re -f lavfi -i sine=frequency=440:sample_rate=44100 -t 5 -c:a aac -b:a 64k")
            .await;
    assert!(packets.iter().any(|p| p.kind == PacketKind::Frame));
    let segments = segment(&packets);
    assert!(segments.len() >= 2, "{} segments", segments.len());
    let dir = TempDir::new("audio");
    let names = write_hls(dir.path(), &segments);

    for (s, name) in segments.iter().zip(&names) {
        let p = probe(dir.path(), name).await;
        let streams = codecs(&p);
        assert_eq!(streams.len(), 1, "{p:?}");
        let audio = streams["aac"];
        let expected = s.duration_ms as f64 / 1000.0;
        let got = seconds(&p, &format!("streams.stream.{audio}.duration"));
        assert!((got - expected).abs() <= 0.1, "{name}: {got} vs {expected}");
    }
    let p = probe(dir.path(), "index.m3u8").await;
    let total = seconds(&p, "format.duration");
    assert!((total - 5.0).abs() <= 0.3, "playlist lasts {total} s");
    assert_decodes_cleanly(dir.path(), &names).await;
}
