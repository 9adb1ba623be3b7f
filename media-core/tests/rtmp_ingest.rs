//! The RTMP ingest server against the real encoder: ffmpeg pushing over loopback.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use studio_media_core::flv::FlvError;
use studio_media_core::ingest::rtmp::{RtmpConfig, RtmpError, RtmpServer};
use studio_media_core::ingest::{
    EndReason, IngestError, IngestEvent, IngestProtocol, PublishGrant, PublishRequest, Refusal,
};
use studio_media_core::{PacketKind, Track};
use support::{collect, segment, wait_exit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const GOOD_KEY: &str = "abcd-efgh-ijkl-mnop";

/// Starts a server on an ephemeral loopback port that grants `GOOD_KEY` only, counting calls.
async fn start_server() -> (RtmpServer, mpsc::Receiver<IngestEvent>, Arc<AtomicUsize>) {
    start_server_with(RtmpConfig::default()).await
}

async fn start_server_with(
    config: RtmpConfig,
) -> (RtmpServer, mpsc::Receiver<IngestEvent>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let config = RtmpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let (server, events) = RtmpServer::bind(config, move |req: PublishRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if req.stream_key == GOOD_KEY {
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

/// Spawns ffmpeg with `inputs_and_codecs`, pushing FLV to `url`. Killed if the test drops it.
fn ffmpeg(inputs_and_codecs: &str, url: &str) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(inputs_and_codecs.split_whitespace())
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd.spawn()
        .expect("ffmpeg must be installed (scripts/test-deps installs it: apt-get install ffmpeg)")
}

const AV_INPUT: &str = "-re -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_push_is_demuxed_and_segmented() {
    let (server, mut events, _) = start_server().await;
    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 6"), &url);

    let published = collect(&mut events, Duration::from_secs(30), IngestProtocol::Rtmp).await;
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(published.key.as_deref(), Some(GOOD_KEY));
    assert!(
        matches!(published.ended, Some(EndReason::Unpublished)),
        "{:?}",
        published.ended
    );

    let configs: Vec<Track> = published
        .packets
        .iter()
        .filter(|p| p.kind == PacketKind::Config)
        .map(|p| p.track)
        .collect();
    assert!(
        configs.contains(&Track::Video) && configs.contains(&Track::Audio),
        "{configs:?}"
    );
    let video_config = published
        .packets
        .iter()
        .find(|p| p.track == Track::Video && p.kind == PacketKind::Config)
        .unwrap();
    let avc = studio_media_core::flv::AvcConfig::parse(&video_config.data).unwrap();
    assert_eq!(avc.nal_length_size, 4);

    let frames = |track| {
        published
            .packets
            .iter()
            .filter(|p| p.track == track && p.kind == PacketKind::Frame)
            .count()
    };
    // 6 s at 30 fps; AAC at 44.1 kHz is 43 frames a second.
    assert!(
        (170..=185).contains(&frames(Track::Video)),
        "{} video frames",
        frames(Track::Video)
    );
    assert!(
        (240..=275).contains(&frames(Track::Audio)),
        "{} audio frames",
        frames(Track::Audio)
    );
    // x264's veryfast preset uses B-frames: their composition offsets must come through.
    let video_frames = || {
        published
            .packets
            .iter()
            .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
    };
    assert!(video_frames().all(|p| p.pts_ms >= p.dts_ms));
    assert!(video_frames().any(|p| p.pts_ms > p.dts_ms));
    let audio_config = published
        .packets
        .iter()
        .find(|p| p.track == Track::Audio && p.kind == PacketKind::Config)
        .unwrap();
    let aac = studio_media_core::flv::AacConfig::parse(&audio_config.data).unwrap();
    assert_eq!((aac.object_type, aac.sample_rate), (2, 44100));

    let segments = segment(&published.packets);
    let durations: Vec<i64> = segments.iter().map(|s| s.duration_ms).collect();
    assert_eq!(segments.len(), 3, "{durations:?}");
    for s in &segments {
        assert!(
            s.packets[0].is_video_keyframe(),
            "segment {} starts with a keyframe",
            s.sequence
        );
        assert!(s.video_config.is_some() && s.audio_config.is_some());
        // -g 30 at 30 fps: two 1 s GOPs per segment.
        assert_eq!(
            s.packets.iter().filter(|p| p.is_video_keyframe()).count(),
            2,
            "{durations:?}"
        );
        assert!(s.size_bytes > 0);
    }
    for d in &durations {
        assert!((1900..=2100).contains(d), "{durations:?}");
    }
    let total: i64 = durations.iter().sum();
    assert!((5800..=6200).contains(&total), "{durations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_push_is_cut_on_time() {
    let (server, mut events, _) = start_server().await;
    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(
        "-re -f lavfi -i sine=frequency=440:sample_rate=44100 -t 5 -c:a aac -b:a 64k",
        &url,
    );

    let published = collect(&mut events, Duration::from_secs(30), IngestProtocol::Rtmp).await;
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(published.key.as_deref(), Some(GOOD_KEY));
    assert!(matches!(published.ended, Some(EndReason::Unpublished)));
    assert!(published.packets.iter().all(|p| p.track == Track::Audio));
    assert!(
        published
            .packets
            .iter()
            .any(|p| p.kind == PacketKind::Config)
    );

    let segments = segment(&published.packets);
    let durations: Vec<i64> = segments.iter().map(|s| s.duration_ms).collect();
    assert_eq!(segments.len(), 3, "{durations:?}");
    for d in &durations[..2] {
        // The first frame at or past 2 s, less the segmenter's 20 ms early-cut slack.
        assert!((1975..2030).contains(d), "{durations:?}");
    }
    let total: i64 = durations.iter().sum();
    assert!((4900..=5100).contains(&total), "{durations:?}");
    assert!(
        segments
            .iter()
            .all(|s| s.audio_config.is_some() && s.video_config.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_fails_the_encoder_and_reports_nothing() {
    let (server, mut events, calls) = start_server().await;
    let url = format!("rtmp://{}/live/not-a-key", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 2"), &url);

    assert!(
        !wait_exit(&mut child, Duration::from_secs(15))
            .await
            .success()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the authorizer was asked");
    let next = timeout(Duration::from_millis(200), events.recv()).await;
    assert!(next.is_err(), "no event for a refused publish: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_is_refused_before_authorization() {
    let (server, mut events, calls) = start_server().await;
    let url = format!("rtmp://{}/other/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 2"), &url);

    assert!(
        !wait_exit(&mut child, Duration::from_secs(15))
            .await
            .success()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let next = timeout(Duration::from_millis(200), events.recv()).await;
    assert!(next.is_err(), "no event for a wrong app: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_drops_the_publisher_within_a_second() {
    let (server, mut events, _) = start_server().await;
    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 30"), &url);

    let (handle, mut packets) = match timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Some(IngestEvent::Started {
            handle, packets, ..
        })) => (handle, packets),
        other => panic!("expected Started, got {other:?}"),
    };
    // Let media flow first, so the disconnect interrupts a live stream.
    for _ in 0..10 {
        let packet = timeout(Duration::from_secs(10), packets.recv()).await;
        assert!(matches!(packet, Ok(Some(_))), "expected packets");
    }

    let asked = Instant::now();
    handle.disconnect();
    match timeout(Duration::from_secs(1), events.recv()).await {
        Ok(Some(IngestEvent::Ended { session_id, reason })) => {
            assert_eq!(session_id, handle.id());
            assert!(matches!(reason, EndReason::Disconnected), "{reason:?}");
        }
        other => panic!("expected Ended within 1 s, got {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The encoder notices the closed connection and gives up.
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_codecs_disconnect_the_encoder_with_a_clear_error() {
    let (server, mut events, _) = start_server().await;
    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    // ffmpeg's "flv" encoder is Sorenson H.263, FLV codec id 2.
    let mut child = ffmpeg(
        "-re -f lavfi -i testsrc=size=320x240:rate=30 -t 5 -c:v flv -an",
        &url,
    );

    let published = collect(&mut events, Duration::from_secs(15), IngestProtocol::Rtmp).await;
    assert_eq!(published.key.as_deref(), Some(GOOD_KEY));
    match published.ended {
        Some(EndReason::Error(IngestError::Rtmp(RtmpError::Media(e)))) => {
            assert_eq!(
                e,
                FlvError::UnsupportedVideoCodec {
                    codec_id: 2,
                    name: "Sorenson H.263"
                }
            );
            assert!(e.to_string().contains("only H.264"));
        }
        other => panic!("expected a media error, got {other:?}"),
    }
    assert!(
        !wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_excess_connections_are_closed() {
    let config = RtmpConfig {
        handshake_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..RtmpConfig::default()
    };
    let (server, _events, _) = start_server_with(config).await;
    let mut first = TcpStream::connect(server.local_addr()).await.unwrap();
    // Give the server a moment to take the first connection's permit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_millis(250), second.read(&mut buf))
        .await
        .expect("the connection over the limit is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // The first never starts the handshake and is dropped after handshake_timeout.
    let started = Instant::now();
    let n = timeout(Duration::from_secs(2), first.read(&mut buf))
        .await
        .expect("closed after the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Its permit is back: a new connection is served (it gets the handshake timeout too,
    // rather than the immediate close).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(server.local_addr()).await.unwrap();
    let early = timeout(Duration::from_millis(150), third.read(&mut buf)).await;
    assert!(early.is_err(), "served, not closed at once: {early:?}");
}

/// A client that speaks raw RTMP: completes the handshake, then sends whatever a test chunks.
async fn raw_client(addr: std::net::SocketAddr, from: std::net::IpAddr) -> TcpStream {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut handshake = Handshake::new(PeerType::Client);
    stream
        .write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                stream.write_all(&response_bytes).await.unwrap();
                return stream;
            }
        }
    }
}

/// An AMF0 `connect` command whose object nests `depth` objects deep.
fn nested_connect(depth: usize, marker: &[u8]) -> Vec<u8> {
    let mut data = vec![0x02, 0, 7];
    data.extend_from_slice(b"connect");
    data.push(0x00);
    data.extend_from_slice(&1f64.to_be_bytes());
    for _ in 0..depth {
        data.extend_from_slice(marker);
    }
    data
}

/// Chunks one message the way an encoder would (128-byte chunks unless told otherwise).
fn chunk(type_id: u8, data: Vec<u8>, chunk_size: Option<u32>) -> Vec<u8> {
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;
    let mut serializer = ChunkSerializer::new();
    let mut out = Vec::new();
    if let Some(size) = chunk_size {
        out.extend(
            serializer
                .set_max_chunk_size(size, RtmpTimestamp::new(0))
                .unwrap()
                .bytes,
        );
    }
    let message = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        message_stream_id: 0,
        type_id,
        data: data.into(),
    };
    out.extend(serializer.serialize(&message, false, false).unwrap().bytes);
    out
}

/// Reads until the server closes the connection; panics if it is still open after `within`.
async fn expect_closed(stream: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

/// One unauthenticated `connect` nesting thousands of objects (or strict arrays) used to
/// overflow the stack of rml_rtmp's recursive AMF0 decoder and abort the process: this test
/// binary, the server with it. Now the connection alone is closed and publishing still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_commands_close_only_their_connection() {
    let (server, mut events, calls) = start_server().await;
    let loopback = "127.0.0.1".parse().unwrap();
    for (depth, marker) in [
        (3_200, &[0x03u8, 0, 1, b'x'][..]),
        (20_000, &[0x0au8, 0, 0, 0, 1][..]),
    ] {
        let mut client = raw_client(server.local_addr(), loopback).await;
        let message = chunk(20, nested_connect(depth, marker), None);
        // The server may close before reading it all.
        let _ = client.write_all(&message).await;
        expect_closed(&mut client, Duration::from_secs(2)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no publish got that far");

    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 2"), &url);
    let published = collect(&mut events, Duration::from_secs(20), IngestProtocol::Rtmp).await;
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert!(!published.packets.is_empty(), "the server still ingests");
}

/// Before its publish is authorized a client may not make the server hold more than a few KiB:
/// a 2^31-1 chunk size and a 15 MiB message used to be buffered whole, per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_clients_cannot_make_the_server_buffer() {
    let (server, _events, _) = start_server().await;
    let mut client = raw_client(server.local_addr(), "127.0.0.1".parse().unwrap()).await;
    let mut bytes = chunk(9, vec![0u8; 15 * 1024 * 1024], Some(0x7fff_ffff));
    bytes.truncate(64 * 1024);
    let _ = client.write_all(&bytes).await;
    expect_closed(&mut client, Duration::from_secs(2)).await;
}

/// 1,030 idle connections from one address used to take every connection slot and lock out
/// real publishers. Now one address gets a few unauthorized slots, and a publisher from another
/// address gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_lock_out_publishers() {
    let (server, mut events, _) = start_server().await;
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..1_030 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((attacker, 0).into()).unwrap();
        idle.push(socket.connect(server.local_addr()).await.unwrap());
    }
    // All but a handful are closed at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = 0;
    for stream in &mut idle {
        let mut buf = [0u8; 1];
        // Still open: nothing to read yet, no end of stream.
        if timeout(Duration::from_millis(1), stream.read(&mut buf))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert!(
        open <= RtmpConfig::default().max_unauthorized_per_address,
        "{open} still open"
    );

    let url = format!("rtmp://{}/live/{GOOD_KEY}", server.local_addr());
    let mut child = ffmpeg(&format!("{AV_INPUT} -t 2"), &url);
    let published = collect(&mut events, Duration::from_secs(20), IngestProtocol::Rtmp).await;
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(published.key.as_deref(), Some(GOOD_KEY));
    assert!(!published.packets.is_empty());
    drop(idle);
}
