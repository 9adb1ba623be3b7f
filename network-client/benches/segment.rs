//! One live segment end to end through the embedded gateway and a local test orchestrator, against the bundled
//! transcoder alone on the same segment.
//!
//! A 720p30 H.264 + AAC source (2 s GOPs) is cut by our segmenter into 2 s segments. The orchestrator
//! (`studio-test-orchestrator`, on loopback) runs on chain at 1000 wei/pixel (the §4.5 example price) with the
//! default ticket EV of 8e9 wei, and transcodes with a [`LocalTranscoder`]; the baseline is another
//! [`LocalTranscoder`] with the same settings, called in process. Both make the 240p/360p/480p ladder of
//! media-core's transcode bench. Before timing, one segment goes through the gateway untimed: that is where the
//! gateway does `GetOrchestrator` (gRPC) and opens its TLS connection, as at the start of a running stream.
//!
//! Each round then sends the next segment both ways, alternating which goes first. The network side is
//! everything `Gateway::transcode` does: mux the segment to MPEG-TS, make and sign the tickets, `POST /segment`
//! over TLS + HTTP/2, the orchestrator checking the credentials and tickets, demuxing and transcoding, the
//! `TranscodeResult`, the rendition downloads and their demux. The orchestrator's own transcode call is timed
//! too, so the overhead can be read both against the separate local call and against the transcode inside the
//! network path. Per round: both times, the ratio network/local and the overhead in ms; then the medians.
//!
//! After each round, the payment step alone: a second `PaymentSession` on the orchestrator's real ticket params
//! and price (from its own `GetOrchestrator`, before timing) pays for 15 segments of this ladder, timing
//! `estimate_fee` + `pay_for_segment` + `settle` as the gateway calls them. The breakdown of that step (hash,
//! signature, params update) is `benches/pm.rs`.
//!
//! Run: `cargo bench -p studio-network-client --bench segment [-- ROUNDS]` (default 21 rounds).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use studio_media_core::mpegts;
use studio_media_core::packet::{PacketKind, Track};
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use studio_media_core::transcode::local::{EncoderPreference, LocalTranscoder, probe_encoder};
use studio_media_core::transcode::{
    Gop, H264Profile, Rendition, RenditionProfile, TranscodeFuture, TranscodeJob, Transcoder,
    plan_renditions,
};
use studio_network_client::capabilities::job_capabilities;
use studio_network_client::discovery::{Discovery, parse_address};
use studio_network_client::gateway::{Gateway, GatewayConfig, StreamStats};
use studio_network_client::orchestrator::{Identity, Offer};
use studio_network_client::pm::{
    EthSigner, OrchestratorTerms, OutputProfile, PaymentSession, PriceInfo, SegmentOutcome,
    SenderConfig, estimate_fee,
};
use studio_network_client::segment::{billed_profile, video_profile};
use studio_network_client::transport::Transport;
use studio_test_orchestrator::{OrchestratorConfig, TestOrchestrator};

/// 1000 wei per pixel, the price of the §4.5 worked example (and of `benches/pm.rs`).
const PRICE: PriceInfo = PriceInfo {
    price_per_unit: 1000,
    pixels_per_unit: 1,
};
/// Segments the bundled transcoder may work on at once, on both sides (the gateway tests use 2).
const CONCURRENCY: usize = 2;
/// Segments paid for in the payment-only measurement, after each round.
const PAYMENTS_PER_ROUND: usize = 15;
const STREAM: &str = "bench";

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(21);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run(rounds.max(1)));
}

/// A transcoder that remembers how long its last job took: the orchestrator's own transcode.
struct Timed {
    inner: Arc<dyn Transcoder>,
    last: Arc<Mutex<Duration>>,
}

impl Transcoder for Timed {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn transcode(&self, job: TranscodeJob) -> TranscodeFuture {
        let inner = self.inner.clone();
        let last = self.last.clone();
        Box::pin(async move {
            let started = Instant::now();
            let outputs = inner.transcode(job).await;
            *last.lock().expect("not poisoned") = started.elapsed();
            outputs
        })
    }
}

fn local() -> Arc<dyn Transcoder> {
    let choice = probe_encoder(EncoderPreference::X264).expect("libx264");
    Arc::new(LocalTranscoder::new(choice.encoder, CONCURRENCY).expect("a local transcoder"))
}

/// `seconds` of 1280x720 at 30 fps (testsrc2, x264 veryfast at 3 Mb/s, a keyframe every 2 s) with AAC audio,
/// cut into segments by our segmenter.
fn source(seconds: usize) -> Vec<Arc<Segment>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M"])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-f", "mpegts", "pipe:1"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets = mpegts::demux_file(&out.stdout).expect("MPEG-TS");
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut segments: Vec<Arc<Segment>> = packets
        .into_iter()
        .filter_map(|p| segmenter.push(p).expect("segmenting"))
        .map(Arc::new)
        .collect();
    segments.extend(segmenter.finish().map(Arc::new));
    segments
}

/// The default ladder of media-core's transcode bench: 240p/360p/480p at the source frame rate, x264 High.
fn ladder() -> Arc<[Rendition]> {
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
    plan_renditions(1280, 720, 30.0, &ladder).into()
}

fn video_frames(outputs: &[Segment]) -> Vec<usize> {
    outputs
        .iter()
        .map(|s| {
            s.packets
                .iter()
                .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
                .count()
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

async fn stats(gateway: &Gateway) -> StreamStats {
    gateway
        .stream_stats(STREAM)
        .await
        .expect("the gateway has state for the stream")
}

async fn run(rounds: usize) {
    let renditions = ladder();
    // One segment for the warm-up, one per round, and one spare: the last segment may be short.
    let segments = source(2 * (rounds + 2));
    assert!(
        segments.len() > rounds,
        "{} segments for {rounds} rounds",
        segments.len()
    );
    let segments = &segments[..=rounds];

    let spent = Arc::new(Mutex::new(Duration::ZERO));
    let timed: Arc<dyn Transcoder> = Arc::new(Timed {
        inner: local(),
        last: spent.clone(),
    });
    let orchestrator = TestOrchestrator::start(OrchestratorConfig::on_chain(PRICE, timed))
        .await
        .expect("the test orchestrator starts");
    let gateway = Gateway::new(GatewayConfig::new(
        Discovery::Static(vec![parse_address(&orchestrator.uri()).expect("its URI")]),
        Identity::on_chain(EthSigner::random()).expect("an on-chain identity"),
    ));
    let baseline = local();
    let job = |segment: &Arc<Segment>| TranscodeJob {
        stream: STREAM.into(),
        segment: segment.clone(),
        renditions: renditions.clone(),
    };

    println!(
        "{} segments of 720p30 ({:?} ms) to {:?}, libx264 veryfast, {CONCURRENCY} at once; on chain at {} wei/pixel, ticket EV 8e9 wei; {rounds} rounds",
        segments.len() - 1,
        segments[1..]
            .iter()
            .map(|s| s.duration_ms)
            .collect::<Vec<_>>(),
        renditions.iter().map(Rendition::name).collect::<Vec<_>>(),
        PRICE.price_per_unit,
    );

    // The start of a stream: GetOrchestrator, the TLS connection, the first payment; and the local encoders' first
    // use.
    let started = Instant::now();
    gateway
        .transcode(job(&segments[0]))
        .await
        .expect("the warm-up segment");
    let first = started.elapsed();
    baseline
        .transcode(job(&segments[0]))
        .await
        .expect("the warm-up segment");
    println!(
        "warm-up segment through the gateway (GetOrchestrator, TLS, first payment): {:.0} ms, {} tickets",
        ms(first),
        stats(&gateway).await.tickets
    );
    let mut payments = Payments::new(
        &orchestrator,
        &renditions,
        segments[1].duration_ms,
        orchestrator.stats().pixels,
    )
    .await;

    let (mut network, mut local_times, mut ratios, mut overheads, mut beyond) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!(
        "{:>5} {:>11} {:>9} {:>7} {:>10} {:>16} {:>17} {:>8} {:>7}",
        "round",
        "network ms",
        "local ms",
        "ratio",
        "overhead",
        "orch. transcode",
        "beyond orch. tc",
        "tickets",
        "pay µs"
    );
    for (round, segment) in segments[1..].iter().enumerate() {
        let tickets_before = stats(&gateway).await.tickets;
        let through_network = async {
            let started = Instant::now();
            let outputs = gateway
                .transcode(job(segment))
                .await
                .expect("the network transcodes the segment");
            (started.elapsed(), outputs)
        };
        let alone = async {
            let started = Instant::now();
            let outputs = baseline
                .transcode(job(segment))
                .await
                .expect("the bundled transcoder transcodes the segment");
            (started.elapsed(), outputs)
        };
        let ((net, net_out), (loc, loc_out)) = if round % 2 == 0 {
            let n = through_network.await;
            (n, alone.await)
        } else {
            let l = alone.await;
            (through_network.await, l)
        };
        assert_eq!(
            video_frames(&net_out),
            video_frames(&loc_out),
            "the same renditions both ways"
        );
        let orchestrator_transcode = *spent.lock().expect("not poisoned");
        let tickets = stats(&gateway).await.tickets - tickets_before;
        let pay = payments.round();
        println!(
            "{:>5} {:>11.1} {:>9.1} {:>7.3} {:>10.1} {:>16.1} {:>17.1} {:>8} {:>7.0}",
            round + 1,
            ms(net),
            ms(loc),
            net.as_secs_f64() / loc.as_secs_f64(),
            ms(net) - ms(loc),
            ms(orchestrator_transcode),
            ms(net) - ms(orchestrator_transcode),
            tickets,
            pay
        );
        network.push(ms(net));
        local_times.push(ms(loc));
        ratios.push(net.as_secs_f64() / loc.as_secs_f64());
        overheads.push(ms(net) - ms(loc));
        beyond.push(ms(net) - ms(orchestrator_transcode));
    }
    println!(
        "median: network {:.1} ms, local {:.1} ms; ratio network/local {:.3}; overhead {:.1} ms (network - local), {:.1} ms beyond the orchestrator's own transcode",
        median(&network),
        median(&local_times),
        median(&ratios),
        median(&overheads),
        median(&beyond),
    );

    let s = stats(&gateway).await;
    let o = orchestrator.stats();
    assert_eq!(s.attempts_failed, 0, "no attempt failed");
    assert!(o.refusals.is_empty(), "{:?}", o.refusals);
    assert_eq!(
        o.offers, 2,
        "one GetOrchestrator for the gateway and one for the payment measurement, both before timing"
    );
    assert_eq!(s.tickets, o.tickets, "every ticket was credited");
    println!(
        "gateway: {} segments, {} tickets ({:.2} per segment, the first one included); {:.0} output pixels billed per segment",
        s.segments_transcoded,
        s.tickets,
        s.tickets as f64 / s.segments_transcoded as f64,
        o.pixels as f64 / s.segments_transcoded as f64,
    );
    payments.report();
}

/// Payments to the orchestrator's real ticket params and price, outside the gateway, to time that step alone.
struct Payments {
    session: PaymentSession,
    terms: OrchestratorTerms,
    billed: Vec<OutputProfile>,
    duration: Duration,
    /// What the orchestrator bills per segment.
    pixels: u64,
    times: Vec<f64>,
    update_times: Vec<f64>,
    tickets: usize,
}

impl Payments {
    async fn new(
        orchestrator: &TestOrchestrator,
        renditions: &[Rendition],
        duration_ms: i64,
        pixels: u64,
    ) -> Self {
        let signer = EthSigner::random();
        let identity = Identity::on_chain(signer.clone()).expect("an on-chain identity");
        let profiles: Vec<_> = renditions.iter().map(video_profile).collect();
        let uri = parse_address(&orchestrator.uri()).expect("its URI");
        let info = Transport::new()
            .get_orchestrator(
                &uri,
                identity.request(job_capabilities(&profiles)),
                Duration::from_secs(5),
            )
            .await
            .expect("GetOrchestrator");
        let terms = Offer::from_info(&info, true)
            .expect("an offer")
            .terms
            .expect("ticket params");
        let session = PaymentSession::new(
            signer,
            SenderConfig::default(),
            terms.clone(),
            Instant::now(),
        )
        .expect("acceptable terms");
        Self {
            session,
            terms,
            billed: renditions.iter().map(billed_profile).collect(),
            duration: Duration::from_millis(duration_ms.max(0) as u64),
            pixels,
            times: Vec::new(),
            update_times: Vec::new(),
            tickets: 0,
        }
    }

    /// Pays for [`PAYMENTS_PER_ROUND`] segments as the gateway does (fee estimate, tickets, settling what the
    /// orchestrator billed) and returns the median time per segment, in µs.
    fn round(&mut self) -> f64 {
        let mut round = Vec::with_capacity(PAYMENTS_PER_ROUND);
        for _ in 0..PAYMENTS_PER_ROUND {
            let started = Instant::now();
            let fee = estimate_fee(&self.billed, self.duration, self.session.price());
            let paid = self
                .session
                .pay_for_segment(&fee, Instant::now(), None)
                .expect("a payment");
            self.tickets += paid.payment.tickets.len();
            self.session.settle(
                std::hint::black_box(paid).reservation,
                SegmentOutcome::Delivered {
                    pixels: self.pixels,
                },
            );
            round.push(started.elapsed().as_secs_f64() * 1e6);
            // Every orchestrator response brings new params, as the test orchestrator's do.
            let mut next = self.terms.clone();
            next.params.recipient_rand_hash =
                B256::from(U256::from(self.times.len() + round.len()));
            let started = Instant::now();
            self.session
                .update(next, Instant::now())
                .expect("new params");
            self.update_times
                .push(started.elapsed().as_secs_f64() * 1e6);
        }
        self.times.extend(&round);
        median(&round)
    }

    fn report(&self) {
        let n = self.times.len();
        println!(
            "payment per segment ({n} segments of {} ms, {:.2} tickets each, {} pixels billed each): estimate_fee + pay_for_segment + settle median {:.0} µs, mean {:.0} µs; taking new params median {:.0} µs",
            self.duration.as_millis(),
            self.tickets as f64 / n as f64,
            self.pixels,
            median(&self.times),
            self.times.iter().sum::<f64>() / n as f64,
            median(&self.update_times),
        );
    }
}
