//! Playback info (`GET /playback/{id}`): what a player asks, without credentials, before it plays.

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::{Backend, Reply, TestApp, on_both_databases};

on_both_databases!(
    live_stream_playback_info,
    missing_deleted_and_suspended_streams_are_not_found,
    urls_use_the_public_url
);

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// `GET /api/playback/{id}` as a player calls it: no Authorization header.
async fn playback(app: &TestApp, id: &str) -> Reply {
    app.call(None, Method::GET, &format!("/playback/{id}"), None)
        .await
}

/// HLS, then WebRTC (WHEP), as Studio lists a live stream's sources.
fn live_sources(base: &str, pid: &str) -> Value {
    json!([
        {"hrn": "HLS (TS)", "type": "html5/application/vnd.apple.mpegurl", "url": format!("{base}/hls/{pid}/index.m3u8")},
        {"hrn": "WebRTC (H264)", "type": "html5/video/h264", "url": format!("{base}/webrtc/{pid}")},
    ])
}

async fn set_active(app: &TestApp, stream_id: &str, active: bool) {
    let reply = app
        .call(
            Some(&app.admin_key),
            Method::PUT,
            &format!("/stream/{stream_id}/setactive"),
            Some(json!({"active": active})),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
}

async fn live_stream_playback_info(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    let pid = stream["playbackId"].as_str().unwrap();

    let reply = playback(&app, pid).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json,
        json!({"type": "live", "meta": {"live": 0, "source": live_sources(&app.base, pid)}})
    );

    // Live while the ingest says so.
    set_active(&app, &id_of(&stream), true).await;
    let reply = playback(&app, pid).await;
    assert_eq!(reply.json["meta"]["live"], 1, "{}", reply.text);
    assert_eq!(reply.json["meta"]["source"], live_sources(&app.base, pid));
    set_active(&app, &id_of(&stream), false).await;
    assert_eq!(playback(&app, pid).await.json["meta"]["live"], 0);

    // The stream's playback policy is passed on, so the player knows to send a token.
    let gated = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt", "allowedOrigins": ["https://app.example.com"]}}))
        .await;
    let gated_pid = gated["playbackId"].as_str().unwrap();
    let reply = playback(&app, gated_pid).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["meta"]["playbackPolicy"],
        json!({"type": "jwt", "allowedOrigins": ["https://app.example.com"]})
    );
    assert_eq!(
        reply.json["meta"]["source"],
        live_sources(&app.base, gated_pid)
    );
    // Clearing the policy clears it here too.
    assert_eq!(
        app.patch(
            &format!("/stream/{}", id_of(&gated)),
            json!({"playbackPolicy": null})
        )
        .await
        .status,
        204
    );
    let reply = playback(&app, gated_pid).await;
    assert!(
        reply.json["meta"]
            .get("playbackPolicy")
            .is_none_or(Value::is_null),
        "{}",
        reply.text
    );

    // Another tenant's key changes nothing: playback ids are public.
    let other = app.other_tenant("viewer").await;
    let reply = app
        .call(
            Some(&other.key),
            Method::GET,
            &format!("/playback/{pid}"),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["meta"]["source"], live_sources(&app.base, pid));

    // The stream key is a secret, not a playback id.
    playback(&app, stream["streamKey"].as_str().unwrap())
        .await
        .assert_error(404, "No playback URL found");
}

async fn missing_deleted_and_suspended_streams_are_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unknown = playback(&app, "abcd1234efgh5678").await;
    unknown.assert_error(404, "No playback URL found for abcd1234efgh5678");
    assert!(
        unknown
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        unknown.headers
    );
    playback(&app, &"z".repeat(300))
        .await
        .assert_error(404, "No playback URL found");

    // Suspended: not playable until unsuspended.
    let stream = app.create_stream(json!({"name": "cam"})).await;
    let id = id_of(&stream);
    let pid = stream["playbackId"].as_str().unwrap();
    assert_eq!(
        app.patch(&format!("/stream/{id}"), json!({"suspended": true}))
            .await
            .status,
        204
    );
    playback(&app, pid)
        .await
        .assert_error(404, "No playback URL found");
    assert_eq!(
        app.patch(&format!("/stream/{id}"), json!({"suspended": false}))
            .await
            .status,
        204
    );
    assert_eq!(playback(&app, pid).await.status, 200);

    // Deleted: gone for good.
    assert_eq!(app.delete(&format!("/stream/{id}")).await.status, 204);
    playback(&app, pid)
        .await
        .assert_error(404, "No playback URL found");
}

async fn urls_use_the_public_url(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.public_url = Some("https://video.example.com".into())
    })
    .await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    let pid = stream["playbackId"].as_str().unwrap();
    let reply = playback(&app, pid).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["meta"]["source"],
        live_sources("https://video.example.com", pid)
    );
    assert!(
        !reply.text.contains(&app.base),
        "the bind address does not leak: {}",
        reply.text
    );
}
