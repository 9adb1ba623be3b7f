//! The gateway against test orchestrators on loopback (TLS, HTTP/2, gRPC), with real segments made by ffmpeg and
//! real renditions: payments, failover, price rules, refreshes and the fallback to the bundled transcoder.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::mpegts;
use studio_media_core::packet::{PacketKind, Track};
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use studio_media_core::transcode::local::{EncoderPreference, LocalTranscoder, probe_encoder};
use studio_media_core::transcode::{
    FrameRate, Gop, H264Profile, Rendition, RenditionProfile, TranscodeJob, Transcoder,
    plan_renditions,
};
use studio_network_client::discovery::{Discovery, WebhookDiscovery, parse_address};
use studio_network_client::gateway::{Gateway, GatewayConfig, StreamStats, WithFallback};
use studio_network_client::orchestrator::Identity;
use studio_network_client::pm::{EthSigner, PriceInfo, PricePerPixel};
use studio_test_orchestrator::{Faults, OrchestratorConfig, TestOrchestrator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 1000 wei per 1000 pixels.
const PRICE: PriceInfo = PriceInfo {
    price_per_unit: 1,
    pixels_per_unit: 1,
};

fn local() -> Arc<dyn Transcoder> {
    let choice = probe_encoder(EncoderPreference::X264).expect("libx264");
    Arc::new(LocalTranscoder::new(choice.encoder, 2).expect("a local transcoder"))
}

/// `seconds` of 640x360 at 30 fps with a keyframe every 2 s and AAC audio, cut into 2 s segments.
async fn source(seconds: u32) -> Vec<Arc<Segment>> {
    encode(seconds, true).await
}

/// Like [`source`], without audio: every segment then lasts exactly 2 s, the last one too.
async fn video_only(seconds: u32) -> Vec<Arc<Segment>> {
    encode(seconds, false).await
}

async fn encode(seconds: u32, audio: bool) -> Vec<Arc<Segment>> {
    let mut ffmpeg = tokio::process::Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=640x360:rate=30:duration={seconds}"));
    if audio {
        ffmpeg
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=duration={seconds}"))
            .args(["-c:a", "aac"]);
    }
    let out = ffmpeg
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
        ])
        .args(["-f", "mpegts", "pipe:1"])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets = mpegts::demux_file(&out.stdout).unwrap();
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut segments: Vec<Arc<Segment>> = packets
        .into_iter()
        .filter_map(|p| segmenter.push(p).unwrap())
        .map(Arc::new)
        .collect();
    segments.extend(segmenter.finish().map(Arc::new));
    segments
}

/// 240p at 30 fps and 180p at 15 fps, both with the High profile.
fn ladder() -> Arc<[Rendition]> {
    let profile = |name: &str, w, h, fps| RenditionProfile {
        name: name.into(),
        width: w,
        height: h,
        bitrate: 400_000,
        fps: Some(FrameRate { num: fps, den: 1 }),
        gop: Gop::Segment,
        profile: H264Profile::High,
        quality: None,
    };
    plan_renditions(
        640,
        360,
        30.0,
        &[
            profile("240p0", 426, 240, 30),
            profile("180p0", 320, 180, 15),
        ],
    )
    .into()
}

fn job(stream: &str, segment: &Arc<Segment>) -> TranscodeJob {
    TranscodeJob {
        stream: stream.into(),
        segment: segment.clone(),
        renditions: ladder(),
    }
}

fn gateway(orchestrators: &[&TestOrchestrator], identity: Identity) -> Gateway {
    let uris = orchestrators
        .iter()
        .map(|o| parse_address(&o.uri()).unwrap())
        .collect();
    Gateway::new(GatewayConfig::new(Discovery::Static(uris), identity))
}

fn on_chain() -> Identity {
    Identity::on_chain(EthSigner::random()).unwrap()
}

/// Width, height and video frames of a rendition, as ffprobe reads them.
async fn probe(segment: &Segment) -> (u32, u32, u64) {
    let ts = TsMuxer::new().mux(segment).unwrap();
    let mut child = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
        ])
        .args([
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
            "-i",
            "pipe:0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ffprobe runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&ts).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<u64> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0] as u32, fields[1] as u32, fields[2])
}

fn first_picture(segment: &Segment) -> i64 {
    segment
        .packets
        .iter()
        .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
        .map(|p| p.pts_ms)
        .min()
        .unwrap()
}

async fn transcode_all(
    transcoder: &dyn Transcoder,
    stream: &str,
    segments: &[Arc<Segment>],
) -> Vec<Vec<Segment>> {
    let mut out = Vec::new();
    for s in segments {
        out.push(
            transcoder
                .transcode(job(stream, s))
                .await
                .unwrap_or_else(|e| panic!("segment {}: {e}", s.sequence)),
        );
    }
    out
}

async fn stats(gateway: &Gateway, stream: &str) -> StreamStats {
    gateway
        .stream_stats(stream)
        .await
        .expect("the gateway has state for the stream")
}

#[tokio::test]
async fn off_chain_renditions_come_back_in_place() {
    let orchestrator = TestOrchestrator::start(OrchestratorConfig::off_chain(local()))
        .await
        .unwrap();
    let gateway = gateway(&[&orchestrator], Identity::OffChain);
    let segments = source(4).await;
    assert_eq!(segments.len(), 2);
    for (source, outputs) in segments
        .iter()
        .zip(transcode_all(&gateway, "s", &segments).await)
    {
        assert_eq!(outputs.len(), 2);
        for (output, planned) in outputs.iter().zip(ladder().iter()) {
            assert_eq!(output.sequence, source.sequence);
            assert_eq!(output.duration_ms, source.duration_ms);
            assert_eq!(
                first_picture(output),
                first_picture(source),
                "renditions line up with the source"
            );
            let (w, h, frames) = probe(output).await;
            assert_eq!((w, h), (planned.width, planned.height));
            let fps = planned.profile.fps.unwrap().as_f64();
            let expected = fps * source.duration_ms as f64 / 1000.0;
            assert!(
                (frames as f64 - expected).abs() <= 1.0,
                "{}: {frames} frames for {expected}",
                planned.name()
            );
            assert!(
                output.packets.iter().any(|p| p.track == Track::Audio),
                "the audio comes back too"
            );
        }
    }
    let o = orchestrator.stats();
    assert_eq!((o.segments, o.tickets), (2, 0));
    assert!(o.refusals.is_empty(), "{:?}", o.refusals);
    let s = stats(&gateway, "s").await;
    assert_eq!(s.segments_transcoded, 2);
    assert_eq!(
        s.orchestrator.unwrap().as_str(),
        format!("{}/", orchestrator.uri())
    );
}

#[tokio::test]
async fn on_chain_tickets_pay_for_the_pixels() {
    // A ticket worth about a hundredth of a segment, so that the tickets can match the price closely.
    let mut config = OrchestratorConfig::on_chain(PRICE, local());
    config.ticket_ev = U256::from(100_000u64);
    let orchestrator = TestOrchestrator::start(config).await.unwrap();
    let gateway = gateway(&[&orchestrator], on_chain());
    let segments = video_only(10).await;
    assert_eq!(segments.len(), 5);
    assert!(
        segments
            .iter()
            .all(|s| (1999..=2000).contains(&s.duration_ms))
    );
    let outputs = transcode_all(&gateway, "paid", &segments).await;
    let o = orchestrator.stats();
    let s = stats(&gateway, "paid").await;
    assert!(o.refusals.is_empty(), "{:?}", o.refusals);
    assert_eq!(o.segments, 5);
    assert_eq!(
        s.tickets, o.tickets,
        "every ticket sent was valid and credited"
    );
    assert!(s.tickets > 100, "many tickets per segment: {}", s.tickets);
    assert_eq!(s.ev_paid, o.ev_credited);
    assert_eq!(s.pixels_billed, o.pixels);
    // The orchestrator billed exactly the pixels it delivered, at its price.
    let mut delivered = 0;
    for rendition in outputs.iter().flatten() {
        let (w, h, frames) = probe(rendition).await;
        delivered += u64::from(w * h) * frames;
    }
    assert_eq!(o.pixels, delivered);
    let cost = PricePerPixel::from_price_info(&PRICE)
        .unwrap()
        .cost_of(o.pixels);
    assert_eq!(s.cost, cost);
    assert_eq!(o.debited, cost);
    // The tickets' expected value is the cost within 1%; the rest is credit the orchestrator holds for us.
    let over = (&s.ev_paid - &cost) / &cost;
    assert!(!over.is_negative(), "underpaid: {over}");
    assert!(
        over < BigRational::new(1.into(), 100.into()),
        "overpaid by {:.4}",
        over.to_f64().unwrap()
    );
}

#[tokio::test]
async fn two_orchestrators_each_take_a_stream() {
    // Room for one stream each: the first stream takes one, the second must go to the other.
    let mut config = OrchestratorConfig::on_chain(PRICE, local());
    config.max_sessions = 1;
    let a = TestOrchestrator::start(config.clone()).await.unwrap();
    let b = TestOrchestrator::start(config).await.unwrap();
    let gateway = gateway(&[&a, &b], on_chain());
    let segments = source(6).await;
    transcode_all(&gateway, "one", &segments[..1]).await;
    transcode_all(&gateway, "two", &segments[..1]).await;
    let (one, two) = tokio::join!(
        transcode_all(&gateway, "one", &segments[1..]),
        transcode_all(&gateway, "two", &segments[1..])
    );
    assert_eq!((one.len(), two.len()), (2, 2));
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.segments, sb.segments),
        (3, 3),
        "each orchestrator took one stream"
    );
    let (s1, s2) = (stats(&gateway, "one").await, stats(&gateway, "two").await);
    assert_ne!(s1.orchestrator, s2.orchestrator);
    assert_eq!((s1.attempts_failed, s2.attempts_failed), (0, 0));
    assert_eq!(
        s1.tickets + s2.tickets,
        sa.tickets + sb.tickets,
        "every ticket was credited"
    );
    assert_eq!(&s1.ev_paid + &s2.ev_paid, &sa.ev_credited + &sb.ev_credited);
}

#[tokio::test]
async fn a_dead_orchestrator_is_replaced_without_a_gap() {
    let a = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let b = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let gateway = gateway(&[&a, &b], on_chain());
    let segments = source(8).await;
    let mut done = transcode_all(&gateway, "s", &segments[..2]).await;
    let first = stats(&gateway, "s").await.orchestrator.unwrap();
    let (dying, other) = if first.as_str().starts_with(&a.uri()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    dying.kill();
    done.extend(transcode_all(&gateway, "s", &segments[2..]).await);
    let sequences: Vec<u64> = done.iter().map(|o| o[0].sequence).collect();
    assert_eq!(sequences, [0, 1, 2, 3]);
    assert_eq!(dying.stats().segments, 2);
    assert_eq!(other.stats().segments, 2);
    let s = stats(&gateway, "s").await;
    assert_eq!(s.segments_transcoded, 4);
    assert_eq!(s.attempts_failed, 1, "one attempt on the dead orchestrator");
    assert!(s.orchestrator.unwrap().as_str().starts_with(&other.uri()));
}

#[tokio::test]
async fn with_every_orchestrator_gone_segments_are_transcoded_locally() {
    let o = TestOrchestrator::start(OrchestratorConfig::off_chain(local()))
        .await
        .unwrap();
    let network = gateway(&[&o], Identity::OffChain);
    let transcoder = WithFallback::new(Arc::new(network.clone()), local());
    let segments = source(6).await;
    let mut done = transcode_all(&transcoder, "s", &segments[..1]).await;
    o.kill();
    done.extend(transcode_all(&transcoder, "s", &segments[1..]).await);
    assert_eq!(
        done.iter().map(|o| o[0].sequence).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for outputs in &done[1..] {
        let (w, h, _) = probe(&outputs[0]).await;
        assert_eq!((w, h), (426, 240));
    }
    assert_eq!(o.stats().segments, 1);
    assert_eq!(stats(&network, "s").await.segments_transcoded, 1);
}

#[tokio::test]
async fn an_orchestrator_above_the_maximum_price_is_never_used() {
    let expensive = TestOrchestrator::start(OrchestratorConfig::on_chain(
        PriceInfo {
            price_per_unit: 3,
            pixels_per_unit: 1,
        },
        local(),
    ))
    .await
    .unwrap();
    let cheap = TestOrchestrator::start(OrchestratorConfig::on_chain(
        PriceInfo {
            price_per_unit: 2,
            pixels_per_unit: 1,
        },
        local(),
    ))
    .await
    .unwrap();
    let uris = [&expensive, &cheap]
        .iter()
        .map(|o| parse_address(&o.uri()).unwrap())
        .collect();
    let mut config = GatewayConfig::new(Discovery::Static(uris), on_chain());
    config.max_price = Some(
        PricePerPixel::from_price_info(&PriceInfo {
            price_per_unit: 5,
            pixels_per_unit: 2,
        })
        .unwrap(),
    );
    let gateway = Gateway::new(config);
    let segments = source(4).await;
    transcode_all(&gateway, "s", &segments).await;
    assert_eq!(expensive.stats().segments, 0);
    assert_eq!(expensive.stats().tickets, 0);
    assert_eq!(cheap.stats().segments, 2);

    // Alone, the expensive one still is not used: the segment fails rather than overpay.
    let uris = vec![parse_address(&expensive.uri()).unwrap()];
    let mut config = GatewayConfig::new(Discovery::Static(uris), on_chain());
    config.max_price = Some(PricePerPixel::from_price_info(&PRICE).unwrap());
    let err = Gateway::new(config)
        .transcode(job("t", &segments[0]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no orchestrator"), "{err}");
    assert_eq!(expensive.stats().segments, 0);
}

#[tokio::test]
async fn a_price_that_more_than_doubles_moves_the_stream() {
    let a = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let b = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let gateway = gateway(&[&a, &b], on_chain());
    let segments = source(8).await;
    transcode_all(&gateway, "s", &segments[..1]).await;
    let first = stats(&gateway, "s").await.orchestrator.unwrap();
    let (greedy, other) = if first.as_str().starts_with(&a.uri()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // Doubling is tolerated...
    greedy.set_price(PriceInfo {
        price_per_unit: 2,
        pixels_per_unit: 1,
    });
    transcode_all(&gateway, "s", &segments[1..2]).await;
    transcode_all(&gateway, "s", &segments[2..3]).await;
    assert_eq!(greedy.stats().segments, 3);
    // ...more is not: the stream moves on as soon as the new price is quoted.
    greedy.set_price(PriceInfo {
        price_per_unit: 5,
        pixels_per_unit: 2,
    });
    transcode_all(&gateway, "s", &segments[3..]).await;
    assert_eq!(
        greedy.stats().segments,
        4,
        "the segment that brought the new quote was already paid"
    );
    assert_eq!(
        other.stats().segments,
        1,
        "the segment went to the other orchestrator"
    );
    let s = stats(&gateway, "s").await;
    assert!(s.orchestrator.unwrap().as_str().starts_with(&other.uri()));
}

#[tokio::test]
async fn refused_payments_and_stalls_move_the_segment_elsewhere() {
    let a = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let b = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let gateway = gateway(&[&a, &b], on_chain());
    let segments = source(6).await;
    transcode_all(&gateway, "s", &segments[..1]).await;
    let first = stats(&gateway, "s").await.orchestrator.unwrap();
    let (bad, good) = if first.as_str().starts_with(&a.uri()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    bad.set_faults(Faults {
        reject_payments: true,
        ..Faults::default()
    });
    transcode_all(&gateway, "s", &segments[1..2]).await;
    assert_eq!(bad.stats().refusals, ["payment rejected"]);
    assert_eq!(good.stats().segments, 1);
    // Now the good one stalls past the upload deadline; the bad one is suspended but is all there is left.
    good.set_faults(Faults {
        stall: Some(Duration::from_secs(5)),
        ..Faults::default()
    });
    bad.set_faults(Faults::default());
    transcode_all(&gateway, "s", &segments[2..]).await;
    assert_eq!(bad.stats().segments, 2);
    assert_eq!(stats(&gateway, "s").await.attempts_failed, 2);
}

#[tokio::test]
async fn expired_ticket_params_are_refreshed() {
    let o = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, local()))
        .await
        .unwrap();
    let gateway = gateway(&[&o], on_chain());
    let segments = source(6).await;
    transcode_all(&gateway, "s", &segments[..1]).await;
    o.expire_ticket_params();
    transcode_all(&gateway, "s", &segments[1..]).await;
    let stats = o.stats();
    assert_eq!(stats.segments, 3);
    assert_eq!(stats.refusals, ["TicketParams expired"]);
}

#[tokio::test]
async fn a_failed_transcode_is_retried_elsewhere() {
    let a = TestOrchestrator::start(OrchestratorConfig::off_chain(local()))
        .await
        .unwrap();
    let b = TestOrchestrator::start(OrchestratorConfig::off_chain(local()))
        .await
        .unwrap();
    a.set_faults(Faults {
        fail_transcoding: true,
        ..Faults::default()
    });
    b.set_faults(Faults {
        fail_transcoding: true,
        ..Faults::default()
    });
    let gateway = gateway(&[&a, &b], Identity::OffChain);
    let segments = source(2).await;
    let err = gateway.transcode(job("s", &segments[0])).await.unwrap_err();
    assert!(err.to_string().contains("MediaStats Failure"), "{err}");
    // Both were tried, then (no other left) the first one again: three attempts.
    assert_eq!(stats(&gateway, "s").await.attempts_failed, 3);
    assert_eq!(
        a.stats().refusals.len() + b.stats().refusals.len(),
        0,
        "failures come as results, not refusals"
    );
    b.set_faults(Faults::default());
    // Both are suspended; asked again since no other one answers, b transcodes.
    let outputs = gateway.transcode(job("s", &segments[0])).await.unwrap();
    assert_eq!(outputs.len(), 2);
}

/// Serves one JSON body over HTTP/1.1 to every request.
async fn json_server(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}/orchestrators")
}

#[tokio::test]
async fn a_discovery_webhook_lists_the_orchestrators() {
    let o = TestOrchestrator::start(OrchestratorConfig::off_chain(local()))
        .await
        .unwrap();
    let webhook = json_server(format!(r#"[{{"address":"{}","score":1.0}}]"#, o.uri())).await;
    let discovery = Discovery::Webhook(WebhookDiscovery::new(webhook.parse().unwrap()));
    let candidates = discovery.candidates().await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].score, 1.0);
    let gateway = Gateway::new(GatewayConfig::new(discovery, Identity::OffChain));
    let segments = source(2).await;
    transcode_all(&gateway, "s", &segments).await;
    assert_eq!(o.stats().segments, 1);

    let broken = json_server(r#"{"not":"a list"}"#.into()).await;
    let err = Discovery::Webhook(WebhookDiscovery::new(broken.parse().unwrap()))
        .candidates()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected [{\"address\", \"score\"}]"),
        "{err}"
    );
}
