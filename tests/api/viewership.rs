//! Viewership from real players: ffmpeg, hls.js in headless Chromium and an MP4 download watch an
//! asset, Livepeer's player beacon reports time to first frame, rebuffering and an error; every
//! viewership API, through HTTP and both official SDKs, tells what they did. And a viewer served
//! by two nodes is one view.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::{
    Backend, Reply, TempDir, TestApp, assert_decodes_cleanly, eventually, on_both_databases,
    workspace_root,
};
use tokio::process::Command;

use super::clients::{python, run_client_with};
use super::vod::finished;

on_both_databases!(real_players_are_counted_in_every_viewership_api);

const SECONDS: f64 = 6.0;

/// `seconds` of 640x360 H.264 + AAC (what play.mjs expects to see).
async fn source_file(dir: &Path, seconds: f64) -> PathBuf {
    super::vod::encoded_file(dir, "watch.mp4", "640x360", seconds).await
}

/// A ready asset of the file, with static MP4s.
async fn ready_asset(app: &TestApp, file: &Path) -> Value {
    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": "watched", "staticMp4": true}),
        )
        .await;
    assert_eq!(requested.status, 200, "{}", requested.text);
    let put = app
        .http
        .put(requested.json["url"].as_str().unwrap())
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let asset = finished(app, requested.json["asset"]["id"].as_str().unwrap()).await;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    asset
}

async fn views(app: &TestApp, query: &str) -> Reply {
    app.get(&format!("/data/views/query?{query}")).await
}

async fn real_players_are_counted_in_every_viewership_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = TempDir::new();
    let asset = ready_asset(&app, &source_file(&dir.0, SECONDS).await).await;
    let (pid, asset_id) = (
        asset["playbackId"].as_str().unwrap().to_string(),
        asset["id"].as_str().unwrap().to_string(),
    );
    let info = app.get(&format!("/playback/{pid}")).await.json;
    let mp4 = info["meta"]["source"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let hls = asset["playbackUrl"].as_str().unwrap().to_string();

    // Viewer 1: ffmpeg decodes the whole ladder.
    assert_decodes_cleanly(&hls).await;
    // Viewer 2: hls.js in headless Chromium plays it.
    let played = tokio::time::timeout(
        Duration::from_secs(45),
        Command::new("node")
            .args(["tests/player/play.mjs", &hls])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("play.mjs finishes")
    .expect("running node tests/player/play.mjs");
    assert!(
        played.status.success(),
        "hls.js did not play the asset: {}",
        String::from_utf8_lossy(&played.stdout)
    );
    // Viewer 3: a download of the MP4 in two ranges, from Germany (as the trusted proxy says).
    let size: u64 = info["meta"]["source"][0]["size"].as_u64().unwrap();
    for range in [
        format!("bytes=0-{}", size / 2 - 1),
        format!("bytes={}-", size / 2),
    ] {
        let part = app
            .http
            .get(&mp4)
            .header("range", range)
            .header("user-agent", "test-downloader/1.0")
            .header("x-viewer-country", "de")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        part.bytes().await.unwrap();
    }
    // Livepeer's player beacon: 500 ms to the first frame, 200 ms rebuffering over 4 s, an error.
    let beacon = json!({
        "session_id": "player-session-1", "playback_id": pid, "protocol": "hls", "source_url": hls,
        "player": "video-@livepeer/react", "version": "4.3.6",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        "events": [
            {"type": "heartbeat", "timestamp": 1, "ttff_ms": 500, "playtime_ms": 2000, "buffer_ms": 100, "errors": 0},
            {"type": "heartbeat", "timestamp": 2, "playtime_ms": 4000, "buffer_ms": 200, "errors": 1},
        ],
    });
    let sent = app
        .http
        .post(format!("{}/analytics/log", app.base))
        .header("origin", "https://player.example")
        .json(&beacon)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    assert_eq!(
        sent.headers()["access-control-allow-origin"],
        "https://player.example"
    );
    let garbled = app
        .http
        .post(format!("{}/analytics/log", app.base))
        .body("{\"session_id\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 422);
    let huge = app
        .http
        .post(format!("{}/analytics/log", app.base))
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    // Three viewers; the playtime is the media they were served (the ladder of two renditions
    // for ffmpeg, what hls.js buffered, the whole MP4).
    let totals = eventually(Duration::from_secs(10), || async {
        let reply = views(&app, &format!("playbackId={pid}")).await;
        let row = reply.json.as_array()?.first()?.clone();
        (row["viewCount"] == 3 && row["ttffMs"].is_number()).then_some(row)
    })
    .await;
    let Some(totals) = totals else {
        let now = views(&app, &format!("playbackId={pid}")).await;
        panic!("3 views with the beacon's numbers, got {}", now.text);
    };
    let playtime = totals["playtimeMins"].as_f64().unwrap();
    assert!(
        (3.0 * SECONDS * 0.9 / 60.0..=5.0 * SECONDS * 1.1 / 60.0).contains(&playtime),
        "playtime {playtime} min for three viewers of {SECONDS} s: {totals}"
    );
    assert_eq!(totals["ttffMs"], 500.0);
    assert_eq!(totals["errorRate"], 1.0);
    let ratio = totals["rebufferRatio"].as_f64().unwrap();
    assert!((ratio - 200.0 / 4200.0).abs() < 1e-6, "{totals}");
    assert!(
        totals.get("playbackId").is_none(),
        "not broken down: {totals}"
    );

    // Broken down by browser and country, in hourly buckets.
    let rows = views(
        &app,
        &format!("playbackId={pid}&breakdownBy[]=browser&breakdownBy[]=country&timeStep=hour"),
    )
    .await;
    assert_eq!(rows.status, 200, "{}", rows.text);
    let rows = rows.json.as_array().unwrap().clone();
    let count = |pred: &dyn Fn(&Value) -> bool| -> i64 {
        rows.iter()
            .filter(|r| pred(r))
            .map(|r| r["viewCount"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(count(&|r| r["browser"] == "ffmpeg"), 1, "{rows:?}");
    assert_eq!(count(&|r| r["browser"] == "Chrome"), 1, "{rows:?}");
    assert_eq!(
        count(&|r| r["country"] == "DE" && r.get("browser").is_none()),
        1,
        "{rows:?}"
    );
    let hour = rows[0]["timestamp"].as_i64().unwrap();
    assert_eq!(hour % 3_600_000, 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(now_ms - hour < 3_600_000 + 60_000, "bucket {hour}");

    // The creator query needs one asset or stream, of this project.
    let creator = app
        .get(&format!("/data/views/query/creator?assetId={asset_id}"))
        .await;
    assert_eq!(creator.json[0]["viewCount"], 3, "{}", creator.text);
    app.get("/data/views/query/creator")
        .await
        .assert_error(400, "assetId or streamId");
    let other = app.other_tenant("elsewhere").await;
    let theirs = app
        .call(
            Some(&other.key),
            Method::GET,
            &format!("/data/views/query/creator?assetId={asset_id}"),
            None,
        )
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.text);
    let theirs = app
        .call(
            Some(&other.key),
            Method::GET,
            &format!("/data/views/query?playbackId={pid}"),
            None,
        )
        .await;
    assert_eq!(theirs.json, json!([]), "another tenant sees none of it");

    // A browser key restricted to CORS use reads one asset's views and the totals, not the
    // project's whole viewership.
    let cors = app
        .call(
            Some(&app.admin_key),
            Method::POST,
            "/api-token",
            Some(json!({"name": "page", "access": {"cors": {"allowedOrigins": ["https://app.example"]}}})),
        )
        .await;
    assert_eq!(cors.status, 201, "{}", cors.text);
    let cors_key = cors.json["key"]
        .as_str()
        .or(cors.json["id"].as_str())
        .unwrap()
        .to_string();
    let from_page = |path: String| {
        let http = app.http.clone();
        let (url, key) = (app.url(&path), cors_key.clone());
        async move {
            Reply::from(
                http.get(url)
                    .bearer_auth(key)
                    .header("origin", "https://app.example")
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let mine = from_page(format!("/data/views/query/creator?assetId={asset_id}")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.json[0]["viewCount"], 3, "{}", mine.text);
    from_page(format!("/data/views/query?playbackId={pid}"))
        .await
        .assert_error(403, "CORS-enabled API key");

    // Public totals need no key; realtime counts who was seen in the last 30 s.
    let public = reqwest::get(app.url(&format!("/data/views/query/total/{pid}")))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(public["viewCount"], 3, "{public}");
    assert_eq!(public["playbackId"], pid.as_str());
    let now = app.get(&format!("/data/views/now?playbackId={pid}")).await;
    assert_eq!(now.json[0]["viewCount"], 3, "{}", now.text);
    assert_eq!(
        now.json[0]["errorRate"], 1.0,
        "the one beaconing player erred: {}",
        now.text
    );
    let by_browser = app.get("/data/views/now?breakdownBy[]=browser").await;
    let by_browser = by_browser.json.as_array().unwrap().clone();
    assert_eq!(by_browser.len(), 3, "{by_browser:?}");
    let rate = |browser: &str| {
        by_browser
            .iter()
            .find(|r| r["browser"] == browser)
            .map(|r| r["errorRate"].clone())
    };
    assert_eq!(rate("Chrome"), Some(json!(1.0)), "{by_browser:?}");
    assert_eq!(rate("ffmpeg"), Some(json!(0.0)), "{by_browser:?}");
    app.get("/data/views/now?timeStep=hour")
        .await
        .assert_error(400, "timeStep");

    // Usage: delivered minutes are the playtime, stored minutes the asset's length.
    let usage = app.get("/data/usage/query").await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    assert!(
        (usage.json["DeliveryUsageMins"].as_f64().unwrap() - playtime).abs() < 1e-9,
        "{}",
        usage.text
    );
    let stored = usage.json["StorageUsageMins"].as_f64().unwrap();
    assert!((stored - SECONDS / 60.0).abs() < 0.02, "{}", usage.text);
    assert!(
        usage.json["TotalUsageMins"].as_f64().unwrap() > 0.0,
        "the upload was transcoded"
    );

    // Bad parameters are 400s that say which.
    views(&app, "timeStep=minute")
        .await
        .assert_error(400, "timeStep");
    views(&app, "breakdownBy[]=shoeSize")
        .await
        .assert_error(400, "shoeSize");
    views(&app, "from=yesterday")
        .await
        .assert_error(400, "from");

    // Both SDKs read the same numbers.
    let env = [
        ("PLAYBACK_ID", pid.as_str()),
        ("ASSET_ID", asset_id.as_str()),
    ];
    for (program, script) in [
        (PathBuf::from("node"), "tests/sdk/js/metrics.mjs"),
        (python(), "tests/sdk/python/metrics.py"),
    ] {
        let out = run_client_with(&app, program, &[script], &app.key, &env).await;
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{script}: {out}"));
        let got: Value = serde_json::from_str(line).unwrap();
        let by_browser: i64 = got["viewership"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["viewCount"].as_i64().unwrap())
            .sum();
        assert_eq!(by_browser, 3, "{script}: {got}");
        assert!(
            got["viewership"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["browser"] == "Chrome"),
            "{script}: {got}"
        );
        let by_device: i64 = got["creator"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["viewCount"].as_i64().unwrap())
            .sum();
        assert_eq!(by_device, 3, "{script}: {got}");
        assert_eq!(got["total"]["viewCount"], 3, "{script}: {got}");
        assert_eq!(got["now"][0]["viewCount"], 3, "{script}: {got}");
        // The TypeScript SDK renames the PascalCase fields; the Python one keeps them as aliases.
        let delivered = got["usage"]["DeliveryUsageMins"]
            .as_f64()
            .or(got["usage"]["deliveryUsageMins"].as_f64());
        assert!(delivered.is_some_and(|d| d > 0.0), "{script}: {got}");
    }
}

/// Two nodes on one PostgreSQL database: one viewer whose segments are served by both is one
/// view, with the playtime of every segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_served_by_two_nodes_is_one_view() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let node_b = app.second_node(|_| {}).await;
    let dir = TempDir::new();
    // Three 6 s segments.
    const LONGER: f64 = 15.0;
    let asset = ready_asset(&app, &source_file(&dir.0, LONGER).await).await;
    let pid = asset["playbackId"].as_str().unwrap();
    let master = asset["playbackUrl"].as_str().unwrap().to_string();
    let fetch = |url: String| {
        let http = app.http.clone();
        async move {
            let reply = http
                .get(url)
                .header("user-agent", "two-node-viewer")
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            reply.text().await.unwrap()
        }
    };
    let media = |base: &str, text: &str| {
        let uri = text
            .lines()
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap();
        format!("{}{}", &base[..base.rfind('/').unwrap() + 1], uri)
    };
    let playlist_url = media(&master, &fetch(master.clone()).await);
    let playlist = fetch(playlist_url.clone()).await;
    let segments: Vec<String> = playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|uri| {
            format!(
                "{}{}",
                &playlist_url[..playlist_url.rfind('/').unwrap() + 1],
                uri
            )
        })
        .collect();
    assert!(segments.len() >= 2, "{playlist}");
    let b = format!("http://{}", node_b.addr);
    for (i, segment) in segments.iter().enumerate() {
        // Every other segment from node B.
        let url = if i % 2 == 1 {
            segment.replace(&app.base, &b)
        } else {
            segment.clone()
        };
        fetch(url).await;
    }
    let row = eventually(Duration::from_secs(10), || async {
        let reply = views(&app, &format!("playbackId={pid}")).await;
        let row = reply.json.as_array()?.first()?.clone();
        let minutes = row["playtimeMins"].as_f64()?;
        (minutes * 60.0 >= LONGER * 0.95).then_some(row)
    })
    .await
    .expect("both nodes' playtime is counted");
    assert_eq!(row["viewCount"], 1, "one viewer, two nodes: {row}");
    assert!(
        row["playtimeMins"].as_f64().unwrap() * 60.0 <= LONGER * 1.05,
        "{row}"
    );
    node_b.stop().await.unwrap();
}
