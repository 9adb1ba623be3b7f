//! Multistream targets: write-only URLs, defaults, validation, and what deleting one does to the
//! streams that reference it.

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    target_crud_never_returns_the_url,
    deleting_a_target_drops_stream_references
);

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// The multistream references of a stream, as GET shows them.
async fn targets_of(app: &TestApp, stream: &Value) -> Vec<Value> {
    let got = app.get(&format!("/stream/{}", id_of(stream))).await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.json["multistream"]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The secret part of the destination URL; it must never come back.
const SECRET: &str = "sk_live_DESTINATION_KEY_42";

async fn target_crud_never_returns_the_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .post(
            "/multistream/target",
            json!({"url": format!("rtmp://a.rtmp.example.com/live2/{SECRET}")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = id_of(&created.json);
    let uuid = uuid::Uuid::parse_str(&id).expect("the id is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert!(
        created.json.get("url").is_none(),
        "url is write-only: {}",
        created.text
    );
    assert!(!created.text.contains(SECRET), "{}", created.text);
    assert_eq!(
        created.json["name"], "a.rtmp.example.com",
        "the name defaults to the URL host"
    );
    assert_eq!(created.json["disabled"], false);
    assert_eq!(created.json["userId"], app.user_id.as_str());
    assert!(created.json["createdAt"].as_i64().unwrap() > 1_600_000_000_000);

    let got = app.get(&format!("/multistream/target/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json, created.json);
    assert!(!got.text.contains(SECRET));

    // The SDK lists without ?userId; that works here.
    let named = app.post("/multistream/target", json!({"name": "Twitch", "url": "rtmps://live.twitch.example:443/app/k2", "disabled": true})).await;
    assert_eq!(named.status, 201, "{}", named.text);
    assert_eq!(named.json["name"], "Twitch");
    assert_eq!(named.json["disabled"], true);
    let srt = app
        .post(
            "/multistream/target",
            json!({"url": "srt://srt.example:9000?streamid=abc"}),
        )
        .await;
    assert_eq!(srt.status, 201, "{}", srt.text);
    assert_eq!(srt.json["name"], "srt.example");
    let listed = app.get("/multistream/target").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.json.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|t| t.get("url").is_none()),
        "{}",
        listed.text
    );
    assert!(!listed.text.contains(SECRET));
    let mut ids: Vec<String> = items.iter().map(id_of).collect();
    ids.sort();
    let mut expected = vec![id.clone(), id_of(&named.json), id_of(&srt.json)];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        app.get(&format!("/multistream/target?userId={}", app.user_id))
            .await
            .status,
        200,
        "?userId is accepted too"
    );

    // Validation names the field.
    for bad in [
        "http://x",
        "https://a.example/live",
        "rtmp://",
        "not a url",
        "ftp://a.example/k",
    ] {
        app.post("/multistream/target", json!({"url": bad}))
            .await
            .assert_error(422, "url must be an rtmp://, rtmps:// or srt:// URL");
    }
    app.post("/multistream/target", json!({"name": "x"}))
        .await
        .assert_error(422, "missing field `url`");
    app.post(
        "/multistream/target",
        json!({"url": "rtmp://a.example/k", "name": ""}),
    )
    .await
    .assert_error(422, "name");
    app.post(
        "/multistream/target",
        json!({"url": "rtmp://a.example/k", "profile": "source"}),
    )
    .await
    .assert_error(422, "unknown field `profile`");
    assert_eq!(
        app.get("/multistream/target")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        3,
        "refusals create nothing"
    );

    // PATCH changes what it names.
    let path = format!("/multistream/target/{id}");
    let reply = app.patch(&path, json!({"name": "YouTube"})).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let got = app.get(&path).await.json;
    assert_eq!(got["name"], "YouTube");
    assert_eq!(got["disabled"], false);
    assert_eq!(
        app.patch(&path, json!({"disabled": true})).await.status,
        204
    );
    let got = app.get(&path).await.json;
    assert_eq!(got["disabled"], true);
    assert_eq!(got["name"], "YouTube");
    assert_eq!(
        app.patch(&path, json!({"url": "rtmps://b.example/live/NEWKEY"}))
            .await
            .status,
        204
    );
    let got = app.get(&path).await;
    assert_eq!(got.json["name"], "YouTube", "a new URL keeps the name");
    assert!(got.json.get("url").is_none() && !got.text.contains("NEWKEY"));
    app.patch(&path, json!({"url": "http://x"}))
        .await
        .assert_error(422, "url must be");
    app.patch(&path, json!({"name": ""}))
        .await
        .assert_error(422, "name");
    app.patch(&path, json!({"colour": "red"}))
        .await
        .assert_error(422, "unknown field `colour`");
    assert_eq!(app.patch(&path, json!({})).await.status, 204);
    assert_eq!(app.get(&path).await.json, got.json);
    app.patch(
        &format!("/multistream/target/{}", uuid::Uuid::new_v4()),
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not found");

    // Other tenants see nothing.
    let other = app.other_tenant("eve").await;
    app.call(Some(&other.key), Method::GET, &path, None)
        .await
        .assert_error(404, "not found");
    app.call(
        Some(&other.key),
        Method::PATCH,
        &path,
        Some(json!({"name": "mine"})),
    )
    .await
    .assert_error(404, "not found");
    app.call(Some(&other.key), Method::DELETE, &path, None)
        .await
        .assert_error(404, "not found");
    assert_eq!(
        app.call(Some(&other.key), Method::GET, "/multistream/target", None)
            .await
            .json,
        json!([])
    );

    // DELETE, then it is gone.
    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.get(&path).await.assert_error(404, "not found");
    app.delete(&path).await.assert_error(404, "not found");
    assert_eq!(
        app.get("/multistream/target")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn deleting_a_target_drops_stream_references(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let gone = id_of(
        &app.post(
            "/multistream/target",
            json!({"url": "rtmp://gone.example/k"}),
        )
        .await
        .json,
    );
    let kept = id_of(
        &app.post(
            "/multistream/target",
            json!({"url": "rtmp://kept.example/k"}),
        )
        .await
        .json,
    );
    let both = app
        .create_stream(json!({"name": "both", "multistream": {"targets": [
            {"id": gone, "profile": "source"}, {"id": kept, "profile": "720p0"}, {"id": gone, "profile": "240p0"},
        ]}}))
        .await;
    let only_gone = app.create_stream(json!({"name": "only", "multistream": {"targets": [{"id": gone, "profile": "source"}]}})).await;
    let untouched = app.create_stream(json!({"name": "none", "multistream": {"targets": [{"id": kept, "profile": "source"}]}})).await;

    let reply = app.delete(&format!("/multistream/target/{gone}")).await;
    assert_eq!(reply.status, 204, "{}", reply.text);

    assert_eq!(
        targets_of(&app, &both).await,
        [json!({"id": kept, "profile": "720p0", "videoOnly": false})]
    );
    assert_eq!(targets_of(&app, &only_gone).await, Vec::<Value>::new());
    assert_eq!(
        targets_of(&app, &untouched).await,
        [json!({"id": kept, "profile": "source", "videoOnly": false})]
    );
    // And the list shows the same.
    let listed = app.get("/stream").await.json;
    for s in listed.as_array().unwrap() {
        let refs = s["multistream"]["targets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(refs.iter().all(|t| t["id"] != gone.as_str()), "{s}");
    }
    // The deleted target can no longer be referenced.
    app.post(
        &format!("/stream/{}/create-multistream-target", id_of(&untouched)),
        json!({"id": gone, "profile": "source"}),
    )
    .await
    .assert_error(400, "not found");
}
