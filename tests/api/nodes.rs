//! Several `studio` nodes sharing one PostgreSQL database.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use studio_tests::{Backend, Reply, TestApp, eventually};

/// Node B caches keys; a key revoked (or a project deleted) through node A stops working on B
/// as soon as B hears of it, without waiting for its cache to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_node() {
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

    let created = app
        .call(
            Some(&app.admin_key),
            Method::POST,
            "/api-token",
            Some(json!({"name": "short-lived"})),
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
    let revoked = app
        .call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/api-token/{key_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204);
    let refused = eventually(Duration::from_secs(1), || async {
        (on_b(key.clone(), "/stream").await.status == 401).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "node B still accepts a revoked key a second later"
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
    assert_eq!(
        app.call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/project/{project_id}"),
            None
        )
        .await
        .status,
        204
    );
    let refused = eventually(Duration::from_secs(1), || async {
        (on_b(project_key.clone(), "/stream").await.status == 401).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "node B still accepts a key of a deleted project"
    );

    // Keys that were not revoked keep working on both nodes.
    assert_eq!(on_b(app.key.clone(), "/stream").await.status, 200);
    assert_eq!(app.get("/stream").await.status, 200);
    node_b.stop().await.unwrap();
}
