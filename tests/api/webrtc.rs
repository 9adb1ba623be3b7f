//! WebRTC with real peers: headless Chromium (tests/player/webrtc.mjs, a page on another origin,
//! so CORS is exercised) publishes over WHIP and plays over WHEP; ffprobe checks the HLS a WHIP
//! publish becomes. Refusals are checked with offers made by str0m, as a non-browser peer would
//! send them.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use studio_tests::{Backend, TestApp, eventually, on_both_databases, workspace_root};
use tokio::process::{Child, Command};

use super::clients::python;
use super::live::publish;
use super::playback_gate::sign_with_livepeer_react;

on_both_databases!(
    a_browser_plays_an_rtmp_stream_over_whep,
    a_browser_publishes_over_whip_and_another_watches_over_whep,
    aiortc_publishes_over_whip,
);

/// ffmpeg publishing `seconds` of 640x360 H.264 with B-frames (x264's `veryfast` defaults, as
/// OBS sends them with its "bframes" setting) + AAC in real time.
fn publish_with_b_frames(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
        ])
        .args(["-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}

/// The value of a Prometheus counter on `/metrics` (0 when absent).
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_b_frames_plays_over_whep_without_them() {
    let _browsers = BROWSERS.lock().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let stream = app
        .create_stream(json!({"name": "b-frames", "profiles": []}))
        .await;
    let pid = stream["playbackId"].as_str().unwrap();
    let mut encoder =
        publish_with_b_frames(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 40);
    assert!(
        until_active(
            &app,
            stream["id"].as_str().unwrap(),
            true,
            Duration::from_secs(10)
        )
        .await
    );
    let copies = "studio_webrtc_b_frame_free_copies_started_total";
    let before = counter(&app, copies).await;
    let played = result(
        browser(
            "whep",
            &format!("{}/webrtc/{pid}", app.base),
            &[("MIN_FRAMES", "90")],
        ),
        Duration::from_secs(60),
    )
    .await;
    encoder.kill().await.ok();
    // Three seconds of frames decoded, at the source's size, from a copy made without B-frames.
    assert_eq!(played["ok"], true, "{played}");
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(640), Some(360)),
        "{played}"
    );
    assert!(
        counter(&app, copies).await > before,
        "no B-frame-free copy was made"
    );
    eprintln!("B-frame source over WHEP: {played}");
}

/// Held by each test while its browsers run: several Chromium peers encoding and decoding at once
/// on a 2-core machine starve one another (and the server) of CPU until ICE consent lapses; the
/// tests check behaviour, not that contention.
static BROWSERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs tests/player/webrtc.mjs (`whip` or `whep`) with `env`.
fn browser(mode: &str, url: &str, env: &[(&str, &str)]) -> Child {
    Command::new("node")
        .args(["tests/player/webrtc.mjs", mode, url])
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running node tests/player/webrtc.mjs (scripts/test-deps installs chromium and its node_modules)")
}

/// What webrtc.mjs printed, once it has finished (within `within`).
async fn result(child: Child, within: Duration) -> Value {
    let output = tokio::time::timeout(within, child.wait_with_output())
        .await
        .expect("webrtc.mjs did not finish in time")
        .expect("webrtc.mjs ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from webrtc.mjs:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"))
}

/// Waits for the stream's `isActive` to become `active`.
async fn until_active(app: &TestApp, stream_id: &str, active: bool, within: Duration) -> bool {
    eventually(within, || async {
        (app.get(&format!("/stream/{stream_id}")).await.json["isActive"] == active).then_some(())
    })
    .await
    .is_some()
}

async fn a_browser_plays_an_rtmp_stream_over_whep(backend: Backend) {
    let _browsers = BROWSERS.lock().await;
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "whep"})).await;
    let id = stream["id"].as_str().unwrap();
    let pid = stream["playbackId"].as_str().unwrap();
    let mut encoder = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);
    assert!(
        until_active(&app, id, true, Duration::from_secs(10)).await,
        "the stream did not go live"
    );

    // Playback info lists WebRTC after HLS, on this server.
    let info = app.get(&format!("/playback/{pid}")).await;
    let sources = info.json["meta"]["source"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{}", info.text);
    assert_eq!(sources[0]["hrn"], "HLS (TS)");
    assert_eq!(sources[1]["hrn"], "WebRTC (H264)");
    assert_eq!(sources[1]["type"], "html5/video/h264");
    let whep = format!("{}/webrtc/{pid}", app.base);
    assert_eq!(sources[1]["url"], whep.as_str());

    let started = Instant::now();
    let played = result(browser("whep", &whep, &[]), Duration::from_secs(60)).await;
    encoder.kill().await.ok();
    assert_eq!(played["ok"], true, "{played}");
    assert_eq!(played["codec"], "video/H264", "{played}");
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(640), Some(360)),
        "{played}"
    );
    // AAC from the encoder reaches the browser as Opus.
    assert!(played["audioPackets"].as_u64().unwrap() > 10, "{played}");
    // The session is ended with DELETE on the Location the 201 gave.
    assert_eq!(played["deleteStatus"], 200, "{played}");
    assert!(
        played["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{whep}/")),
        "{played}"
    );
    eprintln!("WHEP played in {:?}: {played}", started.elapsed());
}

async fn a_browser_publishes_over_whip_and_another_watches_over_whep(backend: Backend) {
    let _browsers = BROWSERS.lock().await;
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "whip"})).await;
    let id = stream["id"].as_str().unwrap();
    let pid = stream["playbackId"].as_str().unwrap();
    let whip = format!(
        "{}/webrtc/{}",
        app.base,
        stream["streamKey"].as_str().unwrap()
    );
    let publisher = browser("whip", &whip, &[("PUBLISH_MS", "14000")]);
    assert!(
        until_active(&app, id, true, Duration::from_secs(15)).await,
        "the WHIP publish did not make the stream live"
    );

    // A second browser plays the WHIP publish live over WHEP.
    let played = result(
        browser("whep", &format!("{}/webrtc/{pid}", app.base), &[]),
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(played["ok"], true, "{played}");
    assert_eq!(played["codec"], "video/H264", "{played}");

    let published = result(publisher, Duration::from_secs(40)).await;
    assert_eq!(published["ok"], true, "{published}");
    assert_eq!(published["codec"], "video/H264", "{published}");
    assert_eq!(published["deleteStatus"], 200, "{published}");
    // DELETE ends the publish: the stream goes idle and its session ends.
    assert!(
        until_active(&app, id, false, Duration::from_secs(10)).await,
        "DELETE did not end the WHIP publish"
    );
    let sessions = app.get(&format!("/stream/{id}/sessions")).await;
    let sessions = sessions.json.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0]["sourceSegments"].as_i64().unwrap() >= 4,
        "{sessions:?}"
    );

    // The HLS of the publish: H.264 at the camera's size and AAC (from Opus), ~14 s of it.
    assert_published_hls(&format!("{}/hls/{pid}/index.m3u8", app.base), 8.0..=16.0).await;
}

/// ffprobe's streams and duration of an HLS URL.
async fn probe(url: &str) -> Value {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height:format=duration",
        ])
        .args(["-of", "json", url])
        .output()
        .await
        .expect("ffprobe runs");
    serde_json::from_slice(&probe.stdout).unwrap()
}

/// The HLS a WebRTC publish became, as ffprobe reads it: H.264 at 640x360, AAC (from Opus), and
/// a duration within `seconds`.
async fn assert_published_hls(url: &str, seconds: std::ops::RangeInclusive<f64>) {
    let probe = probe(url).await;
    let streams = probe["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_name"] == "h264")
        .expect("video");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360)),
        "{probe}"
    );
    assert!(streams.iter().any(|s| s["codec_name"] == "aac"), "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds.contains(&duration), "{probe}");
}

/// aiortc (tests/player/aiortc_whip.py), a WebRTC stack of its own, publishes: the server is
/// bound to every interface, as deployed, and advertises the default route's address.
async fn aiortc_publishes_over_whip(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.webrtc_addr = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    let stream = app.create_stream(json!({"name": "aiortc"})).await;
    let id = stream["id"].as_str().unwrap();
    let pid = stream["playbackId"].as_str().unwrap();
    let whip = format!(
        "{}/webrtc/{}",
        app.base,
        stream["streamKey"].as_str().unwrap()
    );
    let publisher = Command::new(python())
        .args(["tests/player/aiortc_whip.py", &whip, "10"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running the test venv's python (scripts/test-deps installs aiortc)");
    assert!(
        until_active(&app, id, true, Duration::from_secs(15)).await,
        "aiortc's publish did not make the stream live"
    );
    let published = result(publisher, Duration::from_secs(40)).await;
    assert_eq!(published["ok"], true, "{published}");
    assert!(until_active(&app, id, false, Duration::from_secs(10)).await);
    assert_published_hls(&format!("{}/hls/{pid}/index.m3u8", app.base), 5.0..=12.0).await;
}

/// An SDP offer as a non-browser peer sends it: one `kind` section in `direction`, H.264 (or
/// VP8 only, with `vp8_only`) and Opus.
fn offer(kind: MediaKind, direction: Direction, vp8_only: bool) -> String {
    let config = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false);
    let config = if vp8_only {
        config.enable_vp8(true)
    } else {
        config.enable_h264(true)
    };
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(kind, direction, None, None, None);
    let (offer, _) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

async fn post_offer(
    app: &TestApp,
    id: &str,
    sdp: &str,
    headers: &[(&str, &str)],
) -> studio_tests::Reply {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webrtc/{id}", app.base))
        .header("content-type", "application/sdp")
        .body(sdp.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    studio_tests::Reply::from(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_refused_with_a_reason() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let publish_offer = offer(MediaKind::Video, Direction::SendOnly, false);
    let play_offer = offer(MediaKind::Video, Direction::RecvOnly, false);
    let stream = app.create_stream(json!({"name": "refusals"})).await;
    let (id, key, pid) = (
        stream["id"].as_str().unwrap(),
        stream["streamKey"].as_str().unwrap(),
        stream["playbackId"].as_str().unwrap(),
    );

    // Neither a stream key nor a playback ID.
    let reply = post_offer(&app, "nothing-here", &publish_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.json["errors"][0].as_str().is_some(), "{}", reply.text);
    // Not SDP.
    let reply = reqwest::Client::new()
        .post(format!("{}/webrtc/{key}", app.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = post_offer(&app, key, "v=0\r\nthis is not sdp", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    // Larger than an offer has any reason to be.
    let huge = format!("{publish_offer}{}", "a=x-padding\r\n".repeat(4000));
    let reply = post_offer(&app, key, &huge, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    // VP8 only: nothing this server takes.
    let vp8 = offer(MediaKind::Video, Direction::SendOnly, true);
    let reply = post_offer(&app, key, &vp8, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("H.264"), "{}", reply.text);
    // A viewer of a stream that is not live.
    let reply = post_offer(&app, pid, &play_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.text.contains("not live"), "{}", reply.text);
    // An unknown session cannot be ended.
    let reply = reqwest::Client::new()
        .delete(format!("{}/webrtc/{key}/no-such-session", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);

    // A second publisher while an encoder publishes over RTMP.
    let mut encoder = publish(&app.rtmp_url(key), 20);
    assert!(until_active(&app, id, true, Duration::from_secs(10)).await);
    let reply = post_offer(&app, key, &publish_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(
        reply.text.contains("already has a publisher"),
        "{}",
        reply.text
    );
    // The live stream takes a viewer: 201 with an SDP answer and a Location.
    let reply = post_offer(&app, pid, &play_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/sdp");
    assert!(reply.text.starts_with("v=0"), "{}", reply.text);
    assert!(reply.text.contains("a=ice-lite"), "{}", reply.text);
    let location = reply.headers["location"].to_str().unwrap().to_string();
    let reply = reqwest::Client::new()
        .delete(format!("{}{location}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    encoder.kill().await.ok();

    // A suspended stream's key is refused.
    let reply = app
        .patch(&format!("/stream/{id}"), json!({"suspended": true}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let reply = post_offer(&app, key, &publish_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("suspended"), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_goes_through_the_playback_gate() {
    let _browsers = BROWSERS.lock().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.post("/access-control/signing-key", json!({})).await;
    assert_eq!(key.status, StatusCode::OK, "{}", key.text);
    let stream = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let pid = stream["playbackId"].as_str().unwrap();
    let mut encoder = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);
    assert!(
        until_active(
            &app,
            stream["id"].as_str().unwrap(),
            true,
            Duration::from_secs(10)
        )
        .await
    );

    let play_offer = offer(MediaKind::Video, Direction::RecvOnly, false);
    let reply = post_offer(&app, pid, &play_offer, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let reply = post_offer(&app, pid, &play_offer, &[("Livepeer-Jwt", "not.a.jwt")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);

    // A browser with a token from signAccessJwt plays (the header, as Livepeer's player sends it).
    let token = sign_with_livepeer_react(&key.json, pid).await;
    let headers = json!({"Livepeer-Jwt": token}).to_string();
    let played = result(
        browser(
            "whep",
            &format!("{}/webrtc/{pid}", app.base),
            &[("WHEP_HEADERS", &headers)],
        ),
        Duration::from_secs(60),
    )
    .await;
    encoder.kill().await.ok();
    assert_eq!(played["ok"], true, "{played}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_bounded_and_peers_that_never_connect_are_let_go() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.webrtc.max_viewers_per_stream = 1;
        config.webrtc.connect_timeout_secs = 2;
    })
    .await;
    let stream = app.create_stream(json!({"name": "bounded"})).await;
    let pid = stream["playbackId"].as_str().unwrap();
    let mut encoder = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);
    assert!(
        until_active(
            &app,
            stream["id"].as_str().unwrap(),
            true,
            Duration::from_secs(10)
        )
        .await
    );

    // str0m's offer is answered but its peer never connects (nothing runs it).
    let play_offer = offer(MediaKind::Video, Direction::RecvOnly, false);
    let first = post_offer(&app, pid, &play_offer, &[]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let second = post_offer(&app, pid, &play_offer, &[]).await;
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.text
    );
    assert!(second.text.contains("HLS"), "{}", second.text);
    // The first peer's place is given back once it has had its time to connect.
    let admitted = eventually(Duration::from_secs(6), || async {
        (post_offer(&app, pid, &play_offer, &[]).await.status == StatusCode::CREATED).then_some(())
    })
    .await;
    encoder.kill().await.ok();
    assert!(
        admitted.is_some(),
        "a peer that never connected kept its place"
    );
}
