//! Live streams transcoded on the Livepeer network: ffmpeg publishes over RTMP, the server's embedded gateway
//! sends each segment to test orchestrators (TLS, HTTP/2, gRPC, PM tickets checked by the orchestrator) and
//! packages the renditions they return. When orchestrators die, the stream moves on, to another orchestrator or
//! to the bundled transcoder, without a missing segment.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use studio_api::config::{NetworkMode, TranscoderSetting};
use studio_media_core::transcode::Transcoder;
use studio_media_core::transcode::local::{EncoderPreference, LocalTranscoder, probe_encoder};
use studio_network_client::pm::PriceInfo;
use studio_test_orchestrator::{OrchestratorConfig, TestOrchestrator};
use studio_tests::{Backend, TestApp, assert_decodes_cleanly, eventually, on_both_databases};
use tokio::process::Command;

use crate::live::publish;

on_both_databases!(
    live_segments_are_transcoded_and_paid_on_orchestrators,
    dead_orchestrators_leave_no_gap_in_the_renditions,
);

/// Hardhat's test account #1: the gateway's key in these tests.
const GATEWAY_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn price(wei: i64) -> PriceInfo {
    PriceInfo {
        price_per_unit: wei,
        pixels_per_unit: 1,
    }
}

/// What the orchestrators transcode with.
fn bundled() -> Arc<dyn Transcoder> {
    let choice = probe_encoder(EncoderPreference::X264).expect("libx264");
    Arc::new(LocalTranscoder::new(choice.encoder, 1).expect("a local transcoder"))
}

async fn orchestrator(wei_per_pixel: i64) -> TestOrchestrator {
    TestOrchestrator::start(OrchestratorConfig::on_chain(
        price(wei_per_pixel),
        bundled(),
    ))
    .await
    .expect("a test orchestrator")
}

/// A server that transcodes on `orchestrators`, on chain, paying at most `max_price` wei per pixel.
async fn app(
    backend: Backend,
    setting: TranscoderSetting,
    orchestrators: &[&TestOrchestrator],
    max_price: u64,
) -> TestApp {
    let uris: Vec<String> = orchestrators.iter().map(|o| o.uri()).collect();
    TestApp::spawn_with(backend, move |c| {
        c.transcode.transcoder = setting;
        c.network.mode = NetworkMode::Onchain;
        c.network.orchestrators = uris;
        c.network.eth_private_key = Some(GATEWAY_KEY.into());
        c.network.max_price_per_unit = max_price;
    })
    .await
}

/// The media sequence numbers listed in a playlist (segment n is named `*_n.ts`).
fn numbers(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".ts"))
        .map(|l| {
            l.trim_end_matches(".ts")
                .rsplit('_')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

async fn playlist(app: &TestApp, pid: &str, rendition: &str) -> String {
    let url = format!("{}/hls/{pid}/{rendition}/index.m3u8", app.base);
    let reply = app.http.get(url).send().await.unwrap();
    if reply.status().is_success() {
        reply.text().await.unwrap()
    } else {
        String::new()
    }
}

async fn closed_playlist(app: &TestApp, pid: &str, rendition: &str) -> String {
    eventually(Duration::from_secs(20), || async {
        let text = playlist(app, pid, rendition).await;
        text.contains("#EXT-X-ENDLIST").then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("the {rendition} playlist is closed after the session"))
}

/// The session's statistics once every segment is counted.
async fn session(app: &TestApp, stream_id: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        let s = app.get(&format!("/stream/{stream_id}/sessions")).await.json[0].clone();
        (s["sourceSegments"].as_i64().is_some_and(|n| n > 0)
            && s["transcodedSegments"] == s["sourceSegments"])
            .then_some(s)
    })
    .await
    .expect("every segment of the session is transcoded")
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A metric line's value, for the series whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .reduce(|a, b| a + b)
}

async fn live_segments_are_transcoded_and_paid_on_orchestrators(backend: Backend) {
    let o = orchestrator(1).await;
    let app = app(backend, TranscoderSetting::Network, &[&o], 0).await;
    let profiles = json!([
        {"name": "240p", "width": 426, "height": 240, "bitrate": 300_000, "fps": 0},
        {"name": "180p15", "width": 320, "height": 180, "bitrate": 150_000, "fps": 15},
    ]);
    let stream = app
        .create_stream(json!({"name": "paid", "profiles": profiles}))
        .await;
    let (id, pid) = (
        stream["id"].as_str().unwrap(),
        stream["playbackId"].as_str().unwrap(),
    );
    assert!(
        publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 8)
            .wait()
            .await
            .unwrap()
            .success()
    );

    // Statistics are complete once the source playlist is closed.
    let source = numbers(&closed_playlist(&app, pid, "source").await);
    let session = session(&app, id).await;
    let segments = session["sourceSegments"].as_u64().unwrap();
    assert_eq!(source.last(), Some(&(segments - 1)));
    for rendition in ["240p", "180p15"] {
        let playlist = closed_playlist(&app, pid, rendition).await;
        assert_eq!(
            numbers(&playlist),
            source,
            "{rendition}: the source's segments, in order:\n{playlist}"
        );
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    }
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("{}/hls/{pid}/240p/index.m3u8", app.base))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).lines().next(),
        Some("426,240")
    );

    // The orchestrator took every segment and every ticket; the tickets' value covers what it billed.
    let stats = o.stats();
    assert!(stats.refusals.is_empty(), "{:?}", stats.refusals);
    assert_eq!(stats.segments, segments);
    assert!(stats.tickets >= 1);
    assert!(
        stats.ev_credited >= stats.debited,
        "EV {} for {} billed",
        stats.ev_credited,
        stats.debited
    );

    let text = metrics(&app).await;
    let stream_label = format!("stream=\"{id}\"");
    let ok = metric(
        &text,
        "studio_network_segments_total",
        &[&stream_label, "result=\"ok\""],
    );
    assert_eq!(ok, Some(segments as f64), "{text}");
    assert_eq!(
        metric(&text, "studio_network_tickets_total", &[&stream_label]),
        Some(stats.tickets as f64)
    );
    let ev = metric(&text, "studio_network_ev_paid_wei_total", &[&stream_label]).unwrap();
    // The counter adds whole wei per payment, the orchestrator exact rationals.
    let credited: f64 = stats
        .ev_credited
        .floor()
        .to_integer()
        .to_string()
        .parse()
        .unwrap();
    assert!(
        (ev - credited).abs() <= segments as f64,
        "EV paid {ev} vs credited {credited}"
    );
}

async fn dead_orchestrators_leave_no_gap_in_the_renditions(backend: Backend) {
    let (a, b, expensive) = (
        orchestrator(1).await,
        orchestrator(1).await,
        orchestrator(100).await,
    );
    let app = app(backend, TranscoderSetting::Auto, &[&expensive, &a, &b], 10).await;
    let profiles =
        json!([{"name": "240p", "width": 426, "height": 240, "bitrate": 300_000, "fps": 0}]);
    let stream = app
        .create_stream(json!({"name": "resilient", "profiles": profiles}))
        .await;
    let (id, pid) = (
        stream["id"].as_str().unwrap(),
        stream["playbackId"].as_str().unwrap(),
    );
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 14);

    // Kill the orchestrator in use once it has transcoded a segment, then the other one once it has too: the
    // rest of the stream is transcoded by the bundled transcoder.
    let first = eventually(Duration::from_secs(20), || async {
        [&a, &b].into_iter().find(|o| o.stats().segments > 0)
    })
    .await
    .expect("an orchestrator transcodes");
    first.kill();
    let second = if std::ptr::eq(first, &a) { &b } else { &a };
    eventually(Duration::from_secs(20), || async {
        (second.stats().segments > 0).then_some(())
    })
    .await
    .expect("the other orchestrator takes over");
    second.kill();
    assert!(ffmpeg.wait().await.unwrap().success());

    // Statistics are complete once the source playlist is closed.
    let source = numbers(&closed_playlist(&app, pid, "source").await);
    let session = session(&app, id).await;
    let segments = session["sourceSegments"].as_u64().unwrap();
    assert_eq!(source.last(), Some(&(segments - 1)));
    let playlist = closed_playlist(&app, pid, "240p").await;
    assert_eq!(
        numbers(&playlist),
        source,
        "the source's segments, in order:\n{playlist}"
    );
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    assert_decodes_cleanly(&format!("{}/hls/{pid}/240p/index.m3u8", app.base)).await;

    assert_eq!(
        expensive.stats().segments,
        0,
        "the orchestrator above the maximum price is never used"
    );
    let text = metrics(&app).await;
    let stream_label = format!("stream=\"{id}\"");
    let on_network = metric(
        &text,
        "studio_network_segments_total",
        &[&stream_label, "result=\"ok\""],
    )
    .unwrap_or(0.0) as u64;
    let fallbacks =
        metric(&text, "studio_network_fallbacks_total", &[&stream_label]).unwrap_or(0.0) as u64;
    assert!(
        a.stats().segments > 0 && b.stats().segments > 0,
        "the stream moved to the second orchestrator"
    );
    assert!(on_network >= 1, "{text}");
    assert!(
        fallbacks >= 1,
        "the last segments were transcoded locally: {text}"
    );
    assert_eq!(
        on_network + fallbacks,
        segments,
        "each segment once, on the network or locally"
    );
}
