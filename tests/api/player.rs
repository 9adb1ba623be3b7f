//! A real browser plays the live stream: hls.js 1.7.4 in headless Chromium (tests/player/play.mjs)
//! loads our master playlist from another origin, so CORS, MIME types and playlist timing are
//! exercised as a viewer's browser exercises them, through Media Source Extensions.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use studio_tests::{Backend, TestApp, eventually, on_both_databases, workspace_root};
use tokio::process::Command;

use super::live::publish;

on_both_databases!(hls_js_in_headless_chromium_plays_the_live_stream);

/// ffmpeg publishing `seconds` of 640x360 H.264 (1 s GOP) + AAC in real time, as tests/api/live.rs
/// does, but in 4:2:0 like OBS: testsrc is RGB, so libx264 would otherwise pick High 4:4:4
/// (avc1.f4...), which hls.js mis-sizes (640x352) and browsers do not promise to decode.
async fn hls_js_in_headless_chromium_plays_the_live_stream(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "browser"})).await;
    let id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap();

    // Longer than the player needs (it is done ~10 s in); killed once it has played.
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 20);
    let live = eventually(Duration::from_secs(8), || async {
        (app.get(&format!("/stream/{id}")).await.json["isActive"] == true).then_some(())
    })
    .await;
    assert!(live.is_some(), "the stream did not go live");

    let url = format!("{}/hls/{pid}/index.m3u8", app.base);
    let started = Instant::now();
    let player = Command::new("node")
        .args(["tests/player/play.mjs", &url])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // play.mjs gives up by itself after 20 s; this bounds a hung browser launch too.
    let output = tokio::time::timeout(Duration::from_secs(45), player)
        .await
        .expect("play.mjs did not finish within 45 s")
        .expect("running node tests/player/play.mjs (scripts/test-deps installs chromium and its node_modules)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ffmpeg.kill().await.ok();

    assert!(
        output.status.success(),
        "the browser did not play the stream ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from play.mjs:\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(result["played"], true, "{result}");
    assert_eq!(
        (result["width"].as_u64(), result["height"].as_u64()),
        (Some(640), Some(360)),
        "{result}"
    );
    assert!(result["currentTime"].as_f64().unwrap() >= 2.0, "{result}");
    assert!(result["frames"].as_u64().unwrap() > 0, "{result}");
    eprintln!("played in {:?}: {result}", started.elapsed());
}
