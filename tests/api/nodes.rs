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
    let mut config = app.config.clone();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.rtmp_addr = "127.0.0.1:0".parse().unwrap();
    config.srt_addr = "127.0.0.1:0".parse().unwrap();
    let node_b = studio_api::app::start(config)
        .await
        .expect("a second node starts");
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
    let mut config = app.config.clone();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.rtmp_addr = "127.0.0.1:0".parse().unwrap();
    config.srt_addr = "127.0.0.1:0".parse().unwrap();
    let node_b = studio_api::app::start(config)
        .await
        .expect("a second node starts");
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
