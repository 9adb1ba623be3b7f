//! Streams: the object Studio clients expect, validation, updates, the live-state rules,
//! terminate and delete, and the stream's multistream references.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::receiver::Receiver;
use studio_tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    create_returns_studio_shape_and_defaults,
    keys_and_playback_ids_are_unique,
    profiles_are_validated_by_field,
    tags_policies_and_recording_are_validated,
    multistream_targets_on_create,
    patch_changes_only_what_is_sent,
    live_streams_keep_record_and_profiles,
    terminate_and_delete,
    ending_a_live_stream_reports_it_idle,
    stream_multistream_endpoints,
    creator_id_and_tenant_isolation,
);

/// The default ladder, exactly as Studio returns it.
fn default_profiles() -> Value {
    json!([
        {"name": "240p0", "width": 426, "height": 240, "bitrate": 250000, "fps": 0, "profile": "H264ConstrainedHigh"},
        {"name": "360p0", "width": 640, "height": 360, "bitrate": 800000, "fps": 0, "profile": "H264ConstrainedHigh"},
        {"name": "480p0", "width": 854, "height": 480, "bitrate": 1600000, "fps": 0, "profile": "H264ConstrainedHigh"},
        {"name": "720p0", "width": 1280, "height": 720, "bitrate": 3000000, "fps": 0, "profile": "H264ConstrainedHigh"},
    ])
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Marks a stream live or idle the way an ingest node does (admin key).
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

async fn get_stream(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/stream/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

/// PATCHes `patch`, expects 204, and checks that the stream is `expected` with exactly the sent
/// fields changed (a `null` clears a field: absent or null afterwards).
async fn patch_and_check(app: &TestApp, id: &str, patch: Value, expected: &mut Value) {
    let reply = app.patch(&format!("/stream/{id}"), patch.clone()).await;
    assert_eq!(reply.status, 204, "{patch}: {}", reply.text);
    assert!(reply.text.is_empty(), "204 has no body: {}", reply.text);
    let mut got = get_stream(app, id).await;
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            assert!(
                got.get(k).is_none_or(Value::is_null),
                "{k} is cleared: {got}"
            );
            got.as_object_mut().unwrap().remove(k);
            expected.as_object_mut().unwrap().remove(k);
        } else {
            expected[k] = v.clone();
        }
    }
    assert_eq!(&got, expected, "after {patch}");
}

fn is_base36(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

async fn create_returns_studio_shape_and_defaults(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app.post("/stream", json!({"name": "cam"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let s = reply.json;

    let id = id_of(&s);
    let uuid = uuid::Uuid::parse_str(&id).expect("the id is a UUID");
    assert_eq!(uuid.get_version_num(), 4, "UUIDv4: {id}");
    assert_eq!(
        id,
        uuid.hyphenated().to_string(),
        "lowercase, hyphenated: {id}"
    );

    let key = s["streamKey"]
        .as_str()
        .expect("streamKey is returned to the owner");
    let groups: Vec<&str> = key.split('-').collect();
    assert_eq!(groups.len(), 4, "xxxx-xxxx-xxxx-xxxx: {key}");
    assert!(
        groups.iter().all(|g| g.len() == 4 && is_base36(g)),
        "base36 groups of 4: {key}"
    );
    assert_eq!(
        &key[..4],
        &id[..4],
        "the key starts with the id's shard prefix"
    );

    let pid = s["playbackId"].as_str().unwrap();
    assert_eq!(pid.len(), 16, "{pid}");
    assert!(is_base36(pid), "[0-9a-z]: {pid}");
    assert_eq!(&pid[..4], &id[..4]);
    assert_ne!(
        pid,
        key.replace('-', ""),
        "the playback id does not reveal the stream key"
    );

    assert_eq!(s["name"], "cam");
    assert_eq!(s["kind"], "stream");
    assert_eq!(s["isActive"], false);
    assert_eq!(s["lastSeen"], 0);
    assert_eq!(s["record"], false);
    assert_eq!(s["suspended"], false);
    assert_eq!(s["lastTerminatedAt"], Value::Null);
    assert!(
        s.as_object().unwrap().contains_key("lastTerminatedAt"),
        "lastTerminatedAt is present, as null"
    );
    assert_eq!(s["renditions"], json!({}));
    assert_eq!(s["sourceSegments"], 0);
    assert_eq!(s["transcodedSegments"], 0);
    assert_eq!(s["projectId"], app.project_id.as_str());
    assert_eq!(s["userId"], app.user_id.as_str());
    assert!(
        s["createdAt"].as_i64().unwrap() > 1_600_000_000_000,
        "createdAt is in ms: {}",
        s["createdAt"]
    );
    assert_eq!(s["profiles"], default_profiles());

    // GET answers the same stream.
    assert_eq!(get_stream(&app, &id).await, s);

    // `profiles: null` is the default ladder; `profiles: []` is source only, and stays empty.
    let null_profiles = app
        .create_stream(json!({"name": "n", "profiles": null}))
        .await;
    assert_eq!(null_profiles["profiles"], default_profiles());
    let source_only = app
        .create_stream(json!({"name": "s", "profiles": []}))
        .await;
    assert_eq!(source_only["profiles"], json!([]));
    assert_eq!(
        get_stream(&app, &id_of(&source_only)).await["profiles"],
        json!([])
    );

    // Given profiles are kept as sent (optional fields included), and the smallest legal values pass.
    let custom = json!([
        {"name": "low", "width": 128, "height": 128, "bitrate": 400, "fps": 0},
        {"name": "hd", "width": 1920, "height": 1080, "bitrate": 6000000, "fps": 30, "fpsDen": 1, "gop": "2.0", "profile": "H264High", "encoder": "H.264"},
    ]);
    let created = app
        .create_stream(json!({"name": "c", "profiles": custom}))
        .await;
    assert_eq!(created["profiles"], custom);
    assert_eq!(get_stream(&app, &id_of(&created)).await["profiles"], custom);
}

async fn keys_and_playback_ids_are_unique(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut pids = HashSet::new();
    for i in 0..30 {
        let s = app.create_stream(json!({"name": format!("cam-{i}")})).await;
        let id = id_of(&s);
        let key = s["streamKey"].as_str().unwrap().to_string();
        let pid = s["playbackId"].as_str().unwrap().to_string();
        assert!(
            key.starts_with(&id[..4]) && pid.starts_with(&id[..4]),
            "{id} {key} {pid}"
        );
        ids.insert(id);
        keys.insert(key);
        pids.insert(pid);
    }
    assert_eq!(ids.len(), 30);
    assert_eq!(keys.len(), 30, "stream keys are unique");
    assert_eq!(pids.len(), 30, "playback ids are unique");
    let listed = app.get("/stream?limit=100").await;
    assert_eq!(listed.status, 200);
    let listed: HashSet<String> = listed.json.as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(listed, ids, "every stream is listed once");
}

async fn profiles_are_validated_by_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ok = json!({"name": "p", "width": 640, "height": 360, "bitrate": 800000, "fps": 30});
    let with = |changes: Value| {
        let mut p = ok.clone();
        for (k, v) in changes.as_object().unwrap() {
            p[k] = v.clone();
        }
        json!({"name": "cam", "profiles": [p]})
    };
    app.post("/stream", with(json!({"width": 127})))
        .await
        .assert_error(422, "profiles[0].width must be >= 128");
    app.post("/stream", with(json!({"height": 100})))
        .await
        .assert_error(422, "profiles[0].height must be >= 128");
    app.post("/stream", with(json!({"bitrate": 399})))
        .await
        .assert_error(422, "profiles[0].bitrate must be >= 400");
    app.post("/stream", with(json!({"name": "source"})))
        .await
        .assert_error(422, "profiles[0].name must not be \"source\"");
    app.post("/stream", with(json!({"gop": "often"})))
        .await
        .assert_error(422, "profiles[0].gop");
    app.post("/stream", with(json!({"gop": 2})))
        .await
        .assert_error(422, "profiles[0].gop: invalid type");
    // A fractional frame rate is a type error: fps is an integer (fpsDen carries 30000/1001).
    app.post("/stream", with(json!({"fps": 29.97})))
        .await
        .assert_error(422, "profiles[0].fps:");
    app.post("/stream", with(json!({"profile": "H265Main"})))
        .await
        .assert_error(422, "profiles[0].profile: unknown variant");
    app.post("/stream", with(json!({"encoder": "VP9"})))
        .await
        .assert_error(422, "profiles[0].encoder: unknown variant");
    app.post("/stream", with(json!({"sharpness": 3})))
        .await
        .assert_error(422, "unknown field `sharpness`");

    let duplicate = app
        .post(
            "/stream",
            json!({"name": "cam", "profiles": [ok.clone(), ok.clone()]}),
        )
        .await;
    duplicate.assert_error(422, "profiles[1].name");
    assert!(
        duplicate.errors().iter().any(|e| e.contains("unique")),
        "{:?}",
        duplicate.errors()
    );

    // Every problem is reported at once, each naming its own field.
    let several = app
        .post(
            "/stream",
            json!({"name": "cam", "profiles": [
                {"name": "a", "width": 100, "height": 720, "bitrate": 1000, "fps": 30},
                {"name": "b", "width": 1280, "height": 720, "bitrate": 10, "fps": 30},
            ]}),
        )
        .await;
    several.assert_error(422, "profiles[0].width");
    several.assert_error(422, "profiles[1].bitrate");

    // Nothing was created by the refused requests.
    assert_eq!(app.get("/stream").await.json, json!([]));
}

async fn tags_policies_and_recording_are_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // userTags: at most 2048 characters of JSON, values are strings, numbers or arrays of those.
    // `{"k":"<n x>"}` is n + 8 characters.
    let fits = app
        .create_stream(json!({"name": "t", "userTags": {"k": "x".repeat(2040)}}))
        .await;
    assert_eq!(fits["userTags"]["k"].as_str().unwrap().len(), 2040);
    app.post(
        "/stream",
        json!({"name": "t", "userTags": {"k": "x".repeat(2041)}}),
    )
    .await
    .assert_error(422, "userTags");
    app.post(
        "/stream",
        json!({"name": "t", "userTags": {"nested": {"a": 1}}}),
    )
    .await
    .assert_error(422, "userTags.nested");
    app.post(
        "/stream",
        json!({"name": "t", "userTags": {"list": ["a", {"b": 1}]}}),
    )
    .await
    .assert_error(422, "userTags.list");
    let tags = json!({"team": "red", "floor": 3, "labels": ["a", 1]});
    let tagged = app
        .create_stream(json!({"name": "t", "userTags": tags}))
        .await;
    assert_eq!(tagged["userTags"], tags);

    // playbackPolicy.allowedOrigins: origins only.
    for bad in [
        "https://a.com/path",
        "not a url",
        "ftp://a.com",
        "https://a.com/",
    ] {
        let reply = app.post("/stream", json!({"name": "o", "playbackPolicy": {"type": "jwt", "allowedOrigins": ["*", bad]}})).await;
        reply.assert_error(422, "playbackPolicy.allowedOrigins[1]");
    }
    let origins = json!(["https://a.com", "http://localhost:3000", "*"]);
    let allowed = app
        .create_stream(
            json!({"name": "o", "playbackPolicy": {"type": "public", "allowedOrigins": origins}}),
        )
        .await;
    assert_eq!(
        allowed["playbackPolicy"],
        json!({"type": "public", "allowedOrigins": origins})
    );
    app.post(
        "/stream",
        json!({"name": "o", "playbackPolicy": {"type": "secret"}}),
    )
    .await
    .assert_error(422, "playbackPolicy.type");

    // recordingSpec only with record=true.
    let spec =
        json!({"profiles": [{"name": "720p", "bitrate": 3000000, "width": 1280, "height": 720}]});
    app.post("/stream", json!({"name": "r", "recordingSpec": spec}))
        .await
        .assert_error(400, "recordingSpec");
    app.post(
        "/stream",
        json!({"name": "r", "record": false, "recordingSpec": spec}),
    )
    .await
    .assert_error(400, "record=true");
    let recorded = app
        .create_stream(json!({"name": "r", "record": true, "recordingSpec": spec}))
        .await;
    assert_eq!(recorded["record"], true);
    assert_eq!(recorded["recordingSpec"], spec);
    app.post(
        "/stream",
        json!({"name": "r", "record": true, "recordingSpec": {"profiles": [{"bitrate": 10}]}}),
    )
    .await
    .assert_error(422, "recordingSpec.profiles[0].bitrate");

    // Webhook policies need a webhook of this project.
    app.post(
        "/stream",
        json!({"name": "w", "playbackPolicy": {"type": "webhook"}}),
    )
    .await
    .assert_error(422, "playbackPolicy.webhookId");
    let unknown = uuid::Uuid::new_v4().to_string();
    app.post(
        "/stream",
        json!({"name": "w", "playbackPolicy": {"type": "webhook", "webhookId": unknown}}),
    )
    .await
    .assert_error(400, "playbackPolicy.webhookId");
    let hook = app.post("/webhook", json!({"name": "gate", "url": "https://example.com/gate", "events": ["playback.accessControl"]})).await;
    assert!(hook.status.is_success(), "{}", hook.text);
    let hook_id = id_of(&hook.json);
    let policy =
        json!({"type": "webhook", "webhookId": hook_id, "webhookContext": {"tier": "gold"}});
    let gated = app
        .create_stream(json!({"name": "w", "playbackPolicy": policy}))
        .await;
    assert_eq!(gated["playbackPolicy"], policy);
    // Another tenant's webhook is as good as none.
    let other = app.other_tenant("mallory").await;
    let reply = app
        .call(
            Some(&other.key),
            Method::POST,
            "/stream",
            Some(json!({"name": "w", "playbackPolicy": {"type": "webhook", "webhookId": hook_id}})),
        )
        .await;
    reply.assert_error(400, "playbackPolicy.webhookId");

    // Pull streams are not supported, and say so.
    let pull = app
        .post(
            "/stream",
            json!({"name": "p", "pull": {"source": "https://example.com/live.m3u8"}}),
        )
        .await;
    pull.assert_error(422, "pull");
    assert!(
        pull.errors().iter().any(|e| e.contains("not supported")),
        "{:?}",
        pull.errors()
    );
}

async fn multistream_targets_on_create(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = "live_123456_SECRETKEY";
    let reply = app
        .post("/stream", json!({"name": "cam", "multistream": {"targets": [
            {"profile": "720p0", "spec": {"url": format!("rtmp://live.twitch.example/app/{secret}")}},
        ]}}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(
        !reply.text.contains(secret),
        "the target URL is not echoed: {}",
        reply.text
    );
    let targets = reply.json["multistream"]["targets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(targets.len(), 1);
    let reference = targets[0].as_object().unwrap();
    let mut keys: Vec<&str> = reference.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["id", "profile", "videoOnly"],
        "only the reference is stored: {reference:?}"
    );
    assert_eq!(reference["profile"], "720p0");
    assert_eq!(reference["videoOnly"], false);
    let target_id = reference["id"].as_str().unwrap().to_string();

    // The inline spec became a target of its own.
    let target = app.get(&format!("/multistream/target/{target_id}")).await;
    assert_eq!(target.status, 200, "{}", target.text);
    assert_eq!(
        target.json["name"], "live.twitch.example",
        "the name defaults to the URL host"
    );
    assert!(target.json.get("url").is_none());

    // A second stream references the existing target by id.
    let by_id = app
        .create_stream(json!({"name": "cam2", "profiles": [], "multistream": {"targets": [{"id": target_id, "profile": "source", "videoOnly": true}]}}))
        .await;
    assert_eq!(
        by_id["multistream"],
        json!({"targets": [{"id": target_id, "profile": "source", "videoOnly": true}]})
    );
    assert_eq!(
        get_stream(&app, &id_of(&by_id)).await["multistream"],
        by_id["multistream"]
    );

    // Refusals.
    let unknown = uuid::Uuid::new_v4().to_string();
    app.post(
        "/stream",
        json!({"name": "x", "multistream": {"targets": [{"id": unknown, "profile": "source"}]}}),
    )
    .await
    .assert_error(400, "not found");
    app.post(
        "/stream",
        json!({"name": "x", "multistream": {"targets": [{"id": target_id, "profile": "1080p"}]}}),
    )
    .await
    .assert_error(422, "multistream.targets[0].profile");
    app.post("/stream", json!({"name": "x", "profiles": [], "multistream": {"targets": [{"id": target_id, "profile": "720p0"}]}}))
        .await
        .assert_error(422, "multistream.targets[0].profile");
    app.post("/stream", json!({"name": "x", "multistream": {"targets": [{"id": target_id, "profile": "source", "spec": {"url": "rtmp://a.example/k"}}]}}))
        .await
        .assert_error(422, "multistream.targets[0]");
    app.post(
        "/stream",
        json!({"name": "x", "multistream": {"targets": [{"profile": "source"}]}}),
    )
    .await
    .assert_error(422, "multistream.targets[0]");
    app.post("/stream", json!({"name": "x", "multistream": {"targets": [{"profile": "source", "spec": {"url": "http://a.example/k"}}]}}))
        .await
        .assert_error(422, "multistream.targets[0].spec.url");
    app.post(
        "/stream",
        json!({"name": "x", "multistream": {"targets": [
            {"id": target_id, "profile": "source"}, {"id": target_id, "profile": "source"},
        ]}}),
    )
    .await
    .assert_error(422, "multistream.targets[1]");

    // A refused stream leaves nothing behind: not the stream, not the target its spec described.
    let before = app
        .get("/multistream/target")
        .await
        .json
        .as_array()
        .unwrap()
        .len();
    app.post(
        "/stream",
        json!({"name": "x", "multistream": {"targets": [
            {"profile": "source", "spec": {"name": "orphan", "url": "rtmp://orphan.example/k"}},
            {"id": unknown, "profile": "source"},
        ]}}),
    )
    .await
    .assert_error(400, "not found");
    let after = app.get("/multistream/target").await.json;
    assert_eq!(
        after.as_array().unwrap().len(),
        before,
        "no orphan target: {after}"
    );
    assert_eq!(app.get("/stream").await.json.as_array().unwrap().len(), 2);
}

async fn patch_changes_only_what_is_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .create_stream(json!({"name": "cam", "userTags": {"a": "1"}, "playbackPolicy": {"type": "jwt"}, "creatorId": "alice"}))
        .await;
    let id = id_of(&created);
    let path = format!("/stream/{id}");

    let mut expected = get_stream(&app, &id).await;
    assert_eq!(expected, created);

    patch_and_check(&app, &id, json!({"name": "renamed"}), &mut expected).await;
    patch_and_check(&app, &id, json!({"record": true}), &mut expected).await;
    patch_and_check(&app, &id, json!({"suspended": true}), &mut expected).await;
    patch_and_check(&app, &id, json!({"suspended": false}), &mut expected).await;
    patch_and_check(
        &app,
        &id,
        json!({"userTags": {"b": 2, "c": ["x"]}}),
        &mut expected,
    )
    .await;
    patch_and_check(
        &app,
        &id,
        json!({"playbackPolicy": {"type": "public", "allowedOrigins": ["https://a.com"]}}),
        &mut expected,
    )
    .await;
    patch_and_check(&app, &id, json!({"playbackPolicy": null}), &mut expected).await;
    let one = json!([{"name": "hd", "width": 1280, "height": 720, "bitrate": 3000000, "fps": 30}]);
    patch_and_check(&app, &id, json!({"profiles": one}), &mut expected).await;
    patch_and_check(&app, &id, json!({"profiles": []}), &mut expected).await;
    patch_and_check(&app, &id, json!({}), &mut expected).await;
    let last = get_stream(&app, &id).await;
    assert_eq!(last["name"], "renamed");
    assert_eq!(last["record"], true);
    assert_eq!(last["profiles"], json!([]));
    assert_eq!(
        last["streamKey"], created["streamKey"],
        "the key never changes"
    );
    assert_eq!(last["playbackId"], created["playbackId"]);
    assert_eq!(
        last["creatorId"],
        json!({"type": "unverified", "value": "alice"})
    );

    // Refusals change nothing.
    app.patch(&path, json!({"colour": "red"}))
        .await
        .assert_error(422, "unknown field `colour`");
    app.patch(&path, json!({"streamKey": "aaaa-bbbb-cccc-dddd"}))
        .await
        .assert_error(422, "unknown field `streamKey`");
    app.patch(
        &path,
        json!({"profiles": [{"name": "x", "width": 10, "height": 720, "bitrate": 1000, "fps": 0}]}),
    )
    .await
    .assert_error(422, "profiles[0].width");
    app.patch(&path, json!({"userTags": {"o": {"p": 1}}}))
        .await
        .assert_error(422, "userTags.o");
    app.patch(
        &path,
        json!({"playbackPolicy": {"type": "jwt", "allowedOrigins": ["https://a.com/x"]}}),
    )
    .await
    .assert_error(422, "playbackPolicy.allowedOrigins[0]");
    app.patch(&path, json!({"name": 7}))
        .await
        .assert_error(422, "name: invalid type");
    app.patch(&path, json!({"playbackPolicy": {"type": "webhook"}}))
        .await
        .assert_error(422, "playbackPolicy.webhookId");
    app.patch(&path, json!({"playbackPolicy": {"type": "webhook", "webhookId": uuid::Uuid::new_v4().to_string()}}))
        .await
        .assert_error(400, "playbackPolicy.webhookId");
    app.patch(
        &path,
        json!({"record": false, "recordingSpec": {"profiles": [{"bitrate": 1000000}]}}),
    )
    .await
    .assert_error(400, "record=true");
    assert_eq!(get_stream(&app, &id).await, last);

    app.patch(
        &format!("/stream/{}", uuid::Uuid::new_v4()),
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not found");
}

async fn live_streams_keep_record_and_profiles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let live = app.create_stream(json!({"name": "live"})).await;
    let idle = app.create_stream(json!({"name": "idle"})).await;
    let id = id_of(&live);
    let path = format!("/stream/{id}");

    // setactive is for ingest nodes: an ordinary key may not call it.
    let refused = app
        .call(
            Some(&app.key),
            Method::PUT,
            &format!("/stream/{id}/setactive"),
            Some(json!({"active": true})),
        )
        .await;
    refused.assert_error(403, "admin");
    assert_eq!(get_stream(&app, &id).await["isActive"], false);

    set_active(&app, &id, true).await;
    let got = get_stream(&app, &id).await;
    assert_eq!(got["isActive"], true);
    assert!(
        got["lastSeen"].as_i64().unwrap() >= live["createdAt"].as_i64().unwrap(),
        "lastSeen is set: {got}"
    );

    // Only active streams with ?active=1 (and true); all without.
    for query in ["active=1", "active=true"] {
        let active = app.get(&format!("/stream?{query}")).await;
        assert_eq!(active.status, 200);
        let ids: Vec<String> = active.json.as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(ids, std::slice::from_ref(&id), "{query}");
    }
    assert_eq!(app.get("/stream").await.json.as_array().unwrap().len(), 2);

    // While live, record and profiles are frozen; the name is not.
    app.patch(&path, json!({"record": true}))
        .await
        .assert_error(400, "record");
    app.patch(&path, json!({"profiles": []}))
        .await
        .assert_error(400, "profiles");
    // The ladder it already has: not a change.
    assert_eq!(
        app.patch(&path, json!({"profiles": null})).await.status,
        204
    );
    let renamed = app.patch(&path, json!({"name": "still live"})).await;
    assert_eq!(renamed.status, 204, "{}", renamed.text);
    let got = get_stream(&app, &id).await;
    assert_eq!(got["name"], "still live");
    assert_eq!(got["record"], false);
    assert_eq!(got["profiles"], default_profiles());

    // Idle again: the same changes go through.
    set_active(&app, &id, false).await;
    assert_eq!(app.get("/stream?active=1").await.json, json!([]));
    assert_eq!(app.patch(&path, json!({"record": true})).await.status, 204);
    assert_eq!(app.patch(&path, json!({"profiles": []})).await.status, 204);
    let got = get_stream(&app, &id).await;
    assert_eq!(got["record"], true);
    assert_eq!(got["profiles"], json!([]));

    // A suspended stream cannot go live.
    let idle_id = id_of(&idle);
    assert_eq!(
        app.patch(&format!("/stream/{idle_id}"), json!({"suspended": true}))
            .await
            .status,
        204
    );
    let reply = app
        .call(
            Some(&app.admin_key),
            Method::PUT,
            &format!("/stream/{idle_id}/setactive"),
            Some(json!({"active": true})),
        )
        .await;
    reply.assert_error(403, "suspended");
    assert_eq!(get_stream(&app, &idle_id).await["isActive"], false);
}

async fn terminate_and_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.create_stream(json!({"name": "cam"})).await;
    let keep = app.create_stream(json!({"name": "keep"})).await;
    let id = id_of(&s);

    let terminated = app.delete(&format!("/stream/{id}/terminate")).await;
    assert_eq!(terminated.status, 204, "{}", terminated.text);
    let at = get_stream(&app, &id).await["lastTerminatedAt"]
        .as_i64()
        .expect("lastTerminatedAt is set");
    assert!(at >= s["createdAt"].as_i64().unwrap(), "{at}");
    app.delete(&format!("/stream/{id}/terminate"))
        .await
        .assert_error(429, "5 seconds");
    assert_eq!(
        get_stream(&app, &id).await["lastTerminatedAt"],
        at,
        "a refused terminate changes nothing"
    );
    app.delete(&format!("/stream/{}/terminate", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, "not found");

    let deleted = app.delete(&format!("/stream/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.get(&format!("/stream/{id}"))
        .await
        .assert_error(404, "not found");
    app.delete(&format!("/stream/{id}"))
        .await
        .assert_error(404, "not found");
    app.patch(&format!("/stream/{id}"), json!({"name": "x"}))
        .await
        .assert_error(404, "not found");
    app.delete(&format!("/stream/{id}/terminate"))
        .await
        .assert_error(404, "not found");
    let listed: Vec<String> = app
        .get("/stream")
        .await
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        listed,
        [id_of(&keep)],
        "the deleted stream is no longer listed"
    );
    let count = app.get("/stream?count=1").await;
    assert_eq!(count.header("x-total-count"), Some("1"));
    assert_eq!(
        get_stream(&app, &id_of(&keep)).await,
        keep,
        "the other stream is untouched"
    );
}

/// A webhook consumer that tracks which streams are live must see every live stream go idle, also
/// when the owner ends the session (terminate) or deletes the stream while it is live.
async fn ending_a_live_stream_reports_it_idle(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.post("/webhook", json!({"name": "h", "url": receiver.url(), "events": ["stream.started", "stream.idle"]})).await;
    assert!(hook.status.is_success(), "{}", hook.text);
    let terminated = id_of(&app.create_stream(json!({"name": "terminated"})).await);
    let deleted = id_of(&app.create_stream(json!({"name": "deleted"})).await);
    let suspended = id_of(&app.create_stream(json!({"name": "suspended"})).await);
    set_active(&app, &terminated, true).await;
    set_active(&app, &deleted, true).await;
    set_active(&app, &suspended, true).await;
    receiver.wait_for(3, Duration::from_secs(10)).await;

    assert_eq!(
        app.delete(&format!("/stream/{terminated}/terminate"))
            .await
            .status,
        204
    );
    assert_eq!(app.delete(&format!("/stream/{deleted}")).await.status, 204);
    assert_eq!(
        app.patch(&format!("/stream/{suspended}"), json!({"suspended": true}))
            .await
            .status,
        204
    );
    // The ingest node reports the end of the session it was told to stop (the deleted stream is
    // gone for it too: whatever it answers, the stream must not come back).
    let _ = app
        .call(
            Some(&app.admin_key),
            Method::PUT,
            &format!("/stream/{terminated}/setactive"),
            Some(json!({"active": false})),
        )
        .await;
    let _ = app
        .call(
            Some(&app.admin_key),
            Method::PUT,
            &format!("/stream/{deleted}/setactive"),
            Some(json!({"active": false})),
        )
        .await;

    receiver.wait_for(6, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["event"] == "stream.idle")
        .map(|b| b["stream"]["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut idle_sorted = idle.clone();
    idle_sorted.sort();
    let mut expected = vec![terminated.clone(), deleted.clone(), suspended.clone()];
    expected.sort();
    assert_eq!(
        idle_sorted, expected,
        "one stream.idle per stream that went idle: {idle:?}"
    );
    assert_eq!(get_stream(&app, &terminated).await["isActive"], false);
    let suspended = get_stream(&app, &suspended).await;
    assert_eq!(
        (
            suspended["isActive"].clone(),
            suspended["suspended"].clone()
        ),
        (json!(false), json!(true))
    );
    app.get(&format!("/stream/{deleted}"))
        .await
        .assert_error(404, "not found");
    assert!(
        app.get("/stream?active=1")
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn stream_multistream_endpoints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.create_stream(json!({"name": "cam"})).await;
    let id = id_of(&s);
    let add = format!("/stream/{id}/create-multistream-target");

    // With a spec: a new target is created and referenced.
    let reply = app.post(&add, json!({"profile": "720p0", "spec": {"name": "yt", "url": "rtmps://a.rtmp.youtube.example/live2/KEY"}})).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let refs = get_stream(&app, &id).await["multistream"]["targets"].clone();
    assert_eq!(refs.as_array().unwrap().len(), 1, "{refs}");
    let yt = refs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        refs[0],
        json!({"id": yt, "profile": "720p0", "videoOnly": false})
    );
    assert_eq!(
        app.get(&format!("/multistream/target/{yt}")).await.json["name"],
        "yt"
    );

    // With an existing target's id.
    let target = app
        .post(
            "/multistream/target",
            json!({"url": "srt://srt.example:9000?streamid=k"}),
        )
        .await;
    assert_eq!(target.status, 201, "{}", target.text);
    let srt = id_of(&target.json);
    let reply = app
        .post(
            &add,
            json!({"id": srt, "profile": "source", "videoOnly": true}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    // The same target with another profile is another reference; the same pair is refused.
    assert_eq!(
        app.post(&add, json!({"id": srt, "profile": "240p0"}))
            .await
            .status,
        204
    );
    app.post(&add, json!({"id": srt, "profile": "source"}))
        .await
        .assert_error(400, "already");
    app.post(
        &add,
        json!({"id": uuid::Uuid::new_v4().to_string(), "profile": "source"}),
    )
    .await
    .assert_error(400, "not found");
    app.post(&add, json!({"id": srt, "profile": "4k"}))
        .await
        .assert_error(422, "profile");
    app.post(
        &add,
        json!({"profile": "source", "spec": {"url": "http://not.rtmp/x"}}),
    )
    .await
    .assert_error(422, "url");
    app.post(
        &format!("/stream/{}/create-multistream-target", uuid::Uuid::new_v4()),
        json!({"id": srt, "profile": "source"}),
    )
    .await
    .assert_error(404, "not found");
    let refs = get_stream(&app, &id).await["multistream"]["targets"].clone();
    assert_eq!(
        refs,
        json!([
            {"id": yt, "profile": "720p0", "videoOnly": false},
            {"id": srt, "profile": "source", "videoOnly": true},
            {"id": srt, "profile": "240p0", "videoOnly": false},
        ])
    );

    // Profiles a target uses cannot be dropped from the stream.
    app.patch(&format!("/stream/{id}"), json!({"profiles": []}))
        .await
        .assert_error(400, "720p0");

    // Removing a reference keeps the target.
    let removed = app.delete(&format!("/stream/{id}/multistream/{srt}")).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    app.delete(&format!("/stream/{id}/multistream/{srt}"))
        .await
        .assert_error(404, "multistream target");
    let refs = get_stream(&app, &id).await["multistream"]["targets"].clone();
    assert_eq!(
        refs,
        json!([{"id": yt, "profile": "720p0", "videoOnly": false}])
    );
    assert_eq!(
        app.get(&format!("/multistream/target/{srt}")).await.status,
        200,
        "the target itself stays"
    );

    // PATCH multistream replaces the whole list.
    let reply = app
        .patch(
            &format!("/stream/{id}"),
            json!({"multistream": {"targets": [{"id": srt, "profile": "480p0"}]}}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let refs = get_stream(&app, &id).await["multistream"]["targets"].clone();
    assert_eq!(
        refs,
        json!([{"id": srt, "profile": "480p0", "videoOnly": false}])
    );
}

async fn creator_id_and_tenant_isolation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let plain = app
        .create_stream(json!({"name": "c", "creatorId": "alice"}))
        .await;
    assert_eq!(
        plain["creatorId"],
        json!({"type": "unverified", "value": "alice"})
    );
    assert_eq!(
        get_stream(&app, &id_of(&plain)).await["creatorId"],
        json!({"type": "unverified", "value": "alice"})
    );
    let object = app
        .create_stream(json!({"name": "c", "creatorId": {"type": "unverified", "value": "bob"}}))
        .await;
    assert_eq!(
        object["creatorId"],
        json!({"type": "unverified", "value": "bob"})
    );
    app.post(
        "/stream",
        json!({"name": "c", "creatorId": {"type": "verified", "value": "x"}}),
    )
    .await
    .assert_error(422, "creatorId");
    assert_eq!(
        app.patch(
            &format!("/stream/{}", id_of(&plain)),
            json!({"creatorId": "carol"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        get_stream(&app, &id_of(&plain)).await["creatorId"],
        json!({"type": "unverified", "value": "carol"})
    );

    // Another tenant sees none of it and can touch none of it.
    let other = app.other_tenant("eve").await;
    let path = format!("/stream/{}", id_of(&plain));
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let key = other.key.clone();
        let app = &app;
        async move { app.call(Some(&key), method, &path, body).await }
    };
    as_other(Method::GET, path.clone(), None)
        .await
        .assert_error(404, "not found");
    as_other(Method::PATCH, path.clone(), Some(json!({"name": "mine"})))
        .await
        .assert_error(404, "not found");
    as_other(Method::DELETE, format!("{path}/terminate"), None)
        .await
        .assert_error(404, "not found");
    as_other(Method::DELETE, path.clone(), None)
        .await
        .assert_error(404, "not found");
    let listed = as_other(Method::GET, "/stream".into(), None).await;
    assert_eq!(listed.json, json!([]));
    let theirs = as_other(
        Method::POST,
        "/multistream/target".into(),
        Some(json!({"url": "rtmp://theirs.example/k"})),
    )
    .await;
    assert_eq!(theirs.status, 201);
    app.post("/stream", json!({"name": "x", "multistream": {"targets": [{"id": id_of(&theirs.json), "profile": "source"}]}}))
        .await
        .assert_error(400, "not found");
    assert_eq!(get_stream(&app, &id_of(&plain)).await["name"], "c");
}
