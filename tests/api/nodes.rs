//! Several `studio` nodes sharing one PostgreSQL database.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use studio_api::app::RunningServer;
use studio_tests::{Backend, Reply, TestApp};

/// How long after `since` node B's key cache is cleared (its generation moves past `before`);
/// zero when it already was. `None` when it is not cleared within `limit`.
async fn cache_cleared_after(
    node: &RunningServer,
    before: u64,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    if node.state.key_cache().generation() != before {
        return Some(Duration::ZERO);
    }
    while since.elapsed() < limit {
        tokio::time::sleep(Duration::from_micros(100)).await;
        if node.state.key_cache().generation() != before {
            return Some(since.elapsed());
        }
    }
    None
}

/// Node B caches keys; a key revoked (or a project deleted) through node A stops working on B
/// as soon as B hears of it (PostgreSQL NOTIFY, asynchronous), without waiting for its cache to
/// expire. The README states the bound this measures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_node() {
    const ROUNDS: usize = 20;
    const BOUND: Duration = Duration::from_secs(1);
    let app = TestApp::spawn(Backend::Postgres).await;
    let node_b = app.second_node(|_| {}).await;
    let b = format!("http://{}/api", node_b.addr);
    let on_b = |key: String, path: &'static str| {
        let http = app.http.clone();
        let url = format!("{b}{path}");
        async move { Reply::from(http.get(url).bearer_auth(key).send().await.unwrap()).await }
    };

    let mut windows = Vec::new();
    for round in 0..ROUNDS {
        let created = app
            .call(
                Some(&app.admin_key),
                Method::POST,
                "/api-token",
                Some(json!({"name": format!("short-lived {round}")})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let (key, key_id) = (
            created.json["key"].as_str().unwrap().to_string(),
            created.json["id"].as_str().unwrap().to_string(),
        );
        // Used on B, so B holds it in its cache.
        for _ in 0..3 {
            assert_eq!(on_b(key.clone(), "/stream").await.status, 200);
        }
        let generation = node_b.state.key_cache().generation();
        let revoked = app
            .call(
                Some(&app.admin_key),
                Method::DELETE,
                &format!("/api-token/{key_id}"),
                None,
            )
            .await;
        let revoked_at = Instant::now();
        assert_eq!(revoked.status, 204);
        let window = cache_cleared_after(&node_b, generation, revoked_at, BOUND)
            .await
            .unwrap_or_else(|| panic!("node B still caches a revoked key after {BOUND:?}"));
        windows.push(window);
        // From then on, both nodes refuse it.
        assert_eq!(on_b(key.clone(), "/stream").await.status, 401);
        assert_eq!(
            app.call(Some(&key), Method::GET, "/stream", None)
                .await
                .status,
            401
        );
    }
    windows.sort();
    let stale = windows.iter().filter(|w| !w.is_zero()).count();
    println!(
        "node B's key cache was cleared {:?} at most (median {:?}) after node A answered a \
         revocation; in {stale} of {ROUNDS} rounds not yet when it answered",
        windows[ROUNDS - 1],
        windows[ROUNDS / 2]
    );

    // Deleting a project reaches node B the same way.
    let project = app
        .call(
            Some(&app.admin_key),
            Method::POST,
            "/project",
            Some(json!({"name": "temporary"})),
        )
        .await;
    let project_id = project.json["id"].as_str().unwrap().to_string();
    let in_project = app
        .call(
            Some(&app.admin_key),
            Method::POST,
            "/api-token",
            Some(json!({"name": "k", "projectId": project_id})),
        )
        .await;
    let project_key = in_project.json["key"].as_str().unwrap().to_string();
    assert_eq!(on_b(project_key.clone(), "/stream").await.status, 200);
    let generation = node_b.state.key_cache().generation();
    let deleted = app
        .call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/project/{project_id}"),
            None,
        )
        .await;
    let deleted_at = Instant::now();
    assert_eq!(deleted.status, 204);
    cache_cleared_after(&node_b, generation, deleted_at, BOUND)
        .await
        .unwrap_or_else(|| panic!("node B still caches a deleted project's key after {BOUND:?}"));
    assert_eq!(on_b(project_key.clone(), "/stream").await.status, 401);

    // Keys that were not revoked keep working on both nodes.
    assert_eq!(on_b(app.key.clone(), "/stream").await.status, 200);
    assert_eq!(app.get("/stream").await.status, 200);
    node_b.stop().await.unwrap();
}

/// A stream published to node B and terminated, suspended or deleted through node A: B's
/// publisher is cut within a pass of B's sweeper, as it would be on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_stream_on_one_node_cuts_its_publisher_on_another() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let node_b = app.second_node(|_| {}).await;
    for (what, end) in [
        ("terminate", (Method::DELETE, "/terminate", None)),
        (
            "suspend",
            (Method::PATCH, "", Some(json!({"suspended": true}))),
        ),
        ("delete", (Method::DELETE, "", None)),
    ] {
        let stream = app
            .create_stream(json!({"name": what, "profiles": []}))
            .await;
        let id = stream["id"].as_str().unwrap().to_string();
        let url = format!(
            "rtmp://{}/live/{}",
            node_b.rtmp_addr,
            stream["streamKey"].as_str().unwrap()
        );
        let mut encoder = crate::live::publish(&url, 60);
        let live = studio_tests::eventually(Duration::from_secs(15), || async {
            (app.get(&format!("/stream/{id}")).await.json["isActive"] == true).then_some(())
        })
        .await;
        assert!(live.is_some(), "{what}: the stream goes live on node B");

        let (method, suffix, body) = end;
        let ended = app
            .call(
                Some(&app.key),
                method,
                &format!("/stream/{id}{suffix}"),
                body,
            )
            .await;
        assert_eq!(ended.status, 204, "{what}: {}", ended.text);
        let exited = tokio::time::timeout(Duration::from_secs(5), encoder.wait()).await;
        let status = exited
            .unwrap_or_else(|_| panic!("{what} through node A did not cut node B's publisher"))
            .unwrap();
        assert!(!status.success(), "{what}");
    }
    node_b.stop().await.unwrap();
}

/// Two nodes on one PostgreSQL and one S3 bucket behave as one service: a stream published to
/// node A is live on B's API and plays from B (source and rendition), B refuses a second
/// publisher of it, both nodes report the same sessions, each webhook event is delivered once,
/// and the recording made by A plays from B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_and_s3_behave_as_one() {
    use studio_tests::receiver::Receiver;
    let app = TestApp::spawn_on(Backend::Postgres, studio_tests::Storage::S3, |_| {}).await;
    let node_b = app.second_node(|c| c.public_url = None).await;
    let base_b = format!("http://{}", node_b.addr);
    let on_b = |path: String| {
        let (http, key, url) = (
            app.http.clone(),
            app.key.clone(),
            format!("{base_b}/api{path}"),
        );
        async move { Reply::from(http.get(url).bearer_auth(key).send().await.unwrap()).await }
    };
    let fetch_b = |path: String| {
        let (http, url) = (app.http.clone(), format!("{base_b}{path}"));
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap_or_default())
        }
    };

    let receiver = Receiver::start().await;
    let events = ["stream.started", "stream.idle", "recording.ready"];
    let hook = app
        .post(
            "/webhook",
            json!({"name": "both", "url": receiver.url(), "events": events}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let stream = app
        .create_stream(json!({
            "name": "shared",
            "record": true,
            "profiles": [{"name": "240p", "width": 426, "height": 240, "bitrate": 250000, "fps": 0}],
        }))
        .await;
    let (id, pid, key) = (
        stream["id"].as_str().unwrap().to_string(),
        stream["playbackId"].as_str().unwrap().to_string(),
        stream["streamKey"].as_str().unwrap().to_string(),
    );
    let mut encoder = crate::live::publish(&app.rtmp_url(&key), 8);

    // Live on B's API, playing from B: the master playlist lists the rendition, which has
    // segments.
    let rendition = studio_tests::eventually(Duration::from_secs(20), || async {
        if on_b(format!("/stream/{id}")).await.json["isActive"] != true {
            return None;
        }
        let (status, master) = fetch_b(format!("/hls/{pid}/index.m3u8")).await;
        if status != 200 {
            return None;
        }
        let rendition = master
            .lines()
            .find(|l| l.ends_with("index.m3u8") && !l.starts_with("source"))?
            .to_string();
        let (status, media) = fetch_b(format!("/hls/{pid}/{rendition}")).await;
        (status == 200 && media.contains(".ts")).then_some(rendition)
    })
    .await
    .expect("node B serves the stream published to node A, with its rendition");

    // A second publisher of the same stream, on the other node, is refused.
    let url_b = format!("rtmp://{}/live/{key}", node_b.rtmp_addr);
    let mut second = crate::live::publish(&url_b, 8);
    let refused = tokio::time::timeout(Duration::from_secs(10), second.wait())
        .await
        .expect("the second publisher is turned away at once")
        .unwrap();
    assert!(!refused.success());

    assert!(encoder.wait().await.unwrap().success());
    let ended = studio_tests::eventually(Duration::from_secs(30), || async {
        let (_, media) = fetch_b(format!("/hls/{pid}/{rendition}")).await;
        let session = on_b(format!("/stream/{id}/sessions")).await.json[0].clone();
        (media.contains("#EXT-X-ENDLIST") && session["recordingStatus"] == "ready")
            .then_some(session)
    })
    .await
    .expect("the session ends and its recording is ready, as seen from B");
    let on_a = app.get(&format!("/stream/{id}/sessions")).await.json[0].clone();
    for field in [
        "id",
        "sourceSegments",
        "sourceSegmentsDuration",
        "transcodedSegments",
        "recordingStatus",
    ] {
        assert_eq!(ended[field], on_a[field], "{field}: B {ended} A {on_a}");
    }
    assert!(ended["sourceSegments"].as_u64().unwrap() >= 3, "{ended}");

    // The recording made by A plays from B.
    let session_id = ended["id"].as_str().unwrap();
    let asset = on_b(format!("/asset/{session_id}")).await;
    assert_eq!(asset.status, 200, "{}", asset.text);
    assert_eq!(asset.json["status"]["phase"], "ready", "{}", asset.text);
    let mp4 = ended["mp4Url"].as_str().expect("an MP4 URL");
    assert!(mp4.starts_with(&base_b), "B names itself in the URL: {mp4}");
    let response = app.http.get(mp4).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(
        bytes.len() > 10_000 && &bytes[4..8] == b"ftyp",
        "{} bytes",
        bytes.len()
    );

    // Each event once, though two nodes deliver webhooks.
    receiver.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut names: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["recording.ready", "stream.idle", "stream.started"],
        "{names:?}"
    );
    node_b.stop().await.unwrap();
}
