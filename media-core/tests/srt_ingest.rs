//! The SRT ingest server against the real encoder: ffmpeg (libsrt) pushing MPEG-TS over loopback.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use studio_media_core::ingest::srt::{SrtConfig, SrtServer};
use studio_media_core::ingest::{
    EndReason, IngestEvent, IngestProtocol, PublishGrant, PublishRequest, Refusal,
};
use studio_media_core::{PacketKind, Track};
use support::{collect, segment, wait_exit};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const GOOD_KEY: &str = "abcd-efgh-ijkl-mnop";
/// Also granted (as the same stream): a second publisher for tests that need two.
const OTHER_KEY: &str = "qrst-uvwx-yzab-cdef";

/// Starts a server on an ephemeral loopback port that grants `GOOD_KEY` only, counting calls.
async fn start_server() -> (SrtServer, mpsc::Receiver<IngestEvent>, Arc<AtomicUsize>) {
    start_server_with(SrtConfig::default()).await
}

async fn start_server_with(
    config: SrtConfig,
) -> (SrtServer, mpsc::Receiver<IngestEvent>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let config = SrtConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let (server, events) = SrtServer::bind(config, move |req: PublishRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            assert_eq!(req.protocol, IngestProtocol::Srt);
            if req.stream_key == GOOD_KEY || req.stream_key == OTHER_KEY {
                Ok(PublishGrant {
                    stream_id: "stream-1".into(),
                })
            } else {
                Err(Refusal::new("unknown stream key"))
            }
        }
    })
    .await
    .expect("bind");
    (server, events, calls)
}

/// `srt://` URL of the server with `stream_id`, written as users write it (FFmpeg 5 sends the
/// `streamid` parameter as it stands in the URL). `linger=2`: in SRT's live mode a caller
/// discards what it has not sent yet when it closes (linger 0), which would cut the last
/// fraction of a second that these tests count frame by frame.
fn url(server: &SrtServer, stream_id: &str) -> String {
    format!(
        "srt://{}?mode=caller&linger=2&streamid={stream_id}",
        server.local_addr()
    )
}

/// ffmpeg publishing `seconds` of H.264 (1 s GOP) + AAC as MPEG-TS over SRT in real time.
/// Killed if the test drops it.
fn publish(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed (scripts/test-deps installs it: apt-get install ffmpeg)")
}

/// A publish of `seconds` with `stream_id`: demuxed into H.264 and AAC, segmented into ~2 s
/// segments that add up to what was sent.
async fn publish_and_check(stream_id: &str, seconds: u32) {
    let (server, mut events, calls) = start_server().await;
    let mut child = publish(&url(&server, stream_id), seconds);
    let published = collect(&mut events, Duration::from_secs(30), IngestProtocol::Srt).await;
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(published.key.as_deref(), Some(GOOD_KEY));
    assert!(
        matches!(published.ended, Some(EndReason::ConnectionClosed)),
        "{:?}",
        published.ended
    );

    let packets = &published.packets;
    let count = |track, kind| {
        packets
            .iter()
            .filter(|p| p.track == track && p.kind == kind)
            .count()
    };
    assert_eq!(count(Track::Video, PacketKind::Config), 1);
    assert_eq!(count(Track::Audio, PacketKind::Config), 1);
    let frames = count(Track::Video, PacketKind::Frame);
    let expected = seconds as usize * 30;
    assert!(
        frames.abs_diff(expected) <= 2,
        "{frames} video frames of {expected}"
    );
    let keyframes = packets.iter().filter(|p| p.is_video_keyframe()).count();
    assert_eq!(keyframes, seconds as usize, "one keyframe a second");
    let audio = count(Track::Audio, PacketKind::Frame);
    let expected_audio = seconds as usize * 48_000 / 1024;
    assert!(
        audio.abs_diff(expected_audio) <= 3,
        "{audio} audio frames of {expected_audio}"
    );

    let segments = segment(packets);
    assert!(segments.len() >= 2);
    let total: i64 = segments.iter().map(|s| s.duration_ms).sum();
    let sent = i64::from(seconds) * 1000;
    assert!(
        (total - sent).abs() <= 100,
        "segments span {total} ms of {sent}"
    );
    for s in &segments[..segments.len() - 1] {
        assert!(
            (1_950..=2_100).contains(&s.duration_ms),
            "{}",
            s.duration_ms
        );
        assert!(s.packets[0].is_video_keyframe());
    }
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_the_key_as_stream_id() {
    publish_and_check(GOOD_KEY, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_an_access_control_stream_id() {
    publish_and_check(&format!("#!::u=encoder,r={GOOD_KEY},m=publish"), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callers_produce_no_events() {
    let (server, mut events, calls) = start_server().await;
    // An unknown key reaches the authorizer and is refused; a reader (m=request) is refused
    // before it.
    for (stream_id, asked) in [
        ("not-a-key", 1),
        (&*format!("#!::r={GOOD_KEY},m=request"), 1),
    ] {
        let mut child = publish(&url(&server, stream_id), 2);
        let status = wait_exit(&mut child, Duration::from_secs(15)).await;
        assert!(!status.success(), "{stream_id} must be refused");
        assert_eq!(calls.load(Ordering::SeqCst), asked, "{stream_id}");
    }
    assert!(
        timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err(),
        "a refused caller produces no event"
    );
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cuts_the_encoder() {
    let (server, mut events, _) = start_server().await;
    let mut child = publish(&url(&server, GOOD_KEY), 30);
    let (handle, mut packets) = match timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Some(IngestEvent::Started {
            handle, packets, ..
        })) => (handle, packets),
        other => panic!("expected Started, got {other:?}"),
    };
    // Wait for media, then cut.
    let first = timeout(Duration::from_secs(10), packets.recv()).await;
    assert!(matches!(first, Ok(Some(_))), "expected packets");
    let asked = Instant::now();
    handle.disconnect();
    match timeout(Duration::from_secs(2), events.recv()).await {
        Ok(Some(IngestEvent::Ended { session_id, reason })) => {
            assert_eq!(session_id, handle.id());
            assert!(matches!(reason, EndReason::Disconnected), "{reason:?}");
        }
        other => panic!("expected Ended, got {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The encoder is told (an SRT shutdown) and gives up.
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(!status.success());
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_server_frees_its_port() {
    let (server, _events, _) = start_server().await;
    let addr = server.local_addr();
    server.close().await;
    let config = SrtConfig {
        addr,
        ..SrtConfig::default()
    };
    let again = SrtServer::bind(config, |_req: PublishRequest| async {
        Err::<PublishGrant, _>(Refusal::new("closed"))
    })
    .await;
    assert!(again.is_ok(), "{:?}", again.err());
}

/// srt-tokio feeds every connection of a port from one task, which waits on a connection that is
/// not read. A publish whose consumer stopped taking packets used to stop reading its socket, and
/// with it every SRT publisher of the server stalled. Now only the stuck publish suffers: its
/// packets are dropped, then it is ended, while the other keeps flowing in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_publish_does_not_stall_the_others() {
    let config = SrtConfig {
        limits: studio_media_core::ingest::IngestLimits {
            queue_packets: 16,
            queue_stall_timeout: Duration::from_secs(7),
            ..Default::default()
        },
        ..SrtConfig::default()
    };
    let (server, mut events, _) = start_server_with(config).await;
    let mut stuck_encoder = publish(&url(&server, GOOD_KEY), 14);
    let (stuck, _stuck_packets) = match timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Some(IngestEvent::Started {
            handle, packets, ..
        })) => (handle, packets),
        other => panic!("expected Started, got {other:?}"),
    };
    // `_stuck_packets` is never read from.
    let _flowing_encoder = publish(&url(&server, OTHER_KEY), 14);
    let mut flowing = match timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Some(IngestEvent::Started { packets, .. })) => packets,
        other => panic!("expected Started, got {other:?}"),
    };
    let started = Instant::now();
    let (mut first, mut last) = (None, 0);
    let mut previous = Instant::now();
    let mut worst_gap = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(8) {
        match timeout(Duration::from_secs(5), flowing.recv()).await {
            Ok(Some(packet)) => {
                first.get_or_insert(packet.dts_ms);
                last = packet.dts_ms;
                worst_gap = worst_gap.max(previous.elapsed());
                previous = Instant::now();
            }
            other => panic!(
                "the other publish stalled: {other:?} after {:?}",
                started.elapsed()
            ),
        }
    }
    let media = last - first.unwrap_or(last);
    println!("worst gap between packets of the flowing publish: {worst_gap:?}");
    assert!(media >= 6_000, "{media} ms of media in 8 s");
    assert!(
        worst_gap < Duration::from_millis(1_500),
        "the flowing publish stalled for {worst_gap:?}"
    );
    match timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(IngestEvent::Ended { session_id, reason })) => {
            assert_eq!(session_id, stuck.id());
            assert_eq!(reason.kind(), "queue_stalled", "{reason:?}");
        }
        other => panic!("expected the stuck publish to end, got {other:?}"),
    }
    let _ = stuck_encoder.kill().await;
    server.close().await;
}
