//! Tenancy: isolation between users and between the projects of one user, API key and project
//! management by admin keys, and browser (CORS) use of keys.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use studio_api::tenancy::accounts;
use studio_tests::receiver::Receiver;
use studio_tests::{Backend, Reply, Tenant, TestApp, eventually, on_both_databases, urlencode};

on_both_databases!(
    other_users_and_projects_cannot_reach_a_tenants_resources,
    resources_of_another_tenant_cannot_be_referenced,
    api_keys_are_shown_once_and_revoked_at_once,
    projects_scope_keys_and_resources,
    admin_keys_manage_only_their_own_user,
    browsers_need_a_cors_key_for_their_origin,
    restricted_cors_keys_call_only_what_a_page_needs,
    playback_info_is_public_from_any_origin,
    a_deleted_projects_content_no_longer_plays,
    admin_keys_made_by_the_cli_manage_every_project,
    deleting_a_project_cuts_its_publishers,
);

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(id)
        .collect()
}

/// A request with extra headers (`Origin`, pre-flight headers).
async fn send(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = app.http.request(method, app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    Reply::from(req.send().await.expect("the server answers")).await
}

/// `app.call` with an owned path, for closures.
async fn call_as(
    app: &TestApp,
    key: &str,
    method: Method,
    path: String,
    body: Option<Value>,
) -> Reply {
    app.call(Some(key), method, &path, body).await
}

/// What a page served from `origin` sends.
async fn from_origin(
    app: &TestApp,
    key: &str,
    origin: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    send(app, Some(key), method, path, body, &[("origin", origin)]).await
}

/// Asserts a 404 with a JSON `{"errors": [...]}` body.
#[track_caller]
fn assert_not_found(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "{what}: {}",
        reply.text
    );
    assert!(!reply.errors().is_empty(), "{what}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: errors are JSON, got {:?}",
        reply.header("content-type")
    );
}

/// Marks a stream live the way an ingest node does (admin key).
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

/// Creates an API key with the app's admin key; returns the response (with the secret).
async fn create_api_key(app: &TestApp, body: Value) -> Value {
    let reply = app
        .call(Some(&app.admin_key), Method::POST, "/api-token", Some(body))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

/// A task of A's project (tasks are made by the server; no API creates them).
async fn spawn_task(app: &TestApp) -> String {
    use studio_api::tasks::{TaskType, repo};
    let db = app
        .server
        .as_ref()
        .expect("server running")
        .state
        .db()
        .clone();
    let mut tx = db.begin().await.unwrap();
    let new = repo::NewTask::new(&app.project_id, &app.user_id, TaskType::Upload, json!({}));
    let (task, _) = repo::spawn(&mut tx, &new, studio_api::clock::now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    task.id
}

/// The ids of A's resources, one of each kind.
struct Owned {
    stream: String,
    target: String,
    signing_key: String,
    webhook: String,
    log: String,
    task: String,
}

/// Everything A can see of its resources, read with A's key. The webhook's delivery `status` is
/// left out: the worker may still be writing it.
async fn view_of_owner(app: &TestApp, a: &Owned) -> Value {
    let mut view = serde_json::Map::new();
    for (name, path) in [
        ("stream", format!("/stream/{}", a.stream)),
        ("target", format!("/multistream/target/{}", a.target)),
        (
            "signingKey",
            format!("/access-control/signing-key/{}", a.signing_key),
        ),
        ("webhook", format!("/webhook/{}", a.webhook)),
        ("logs", format!("/webhook/{}/log", a.webhook)),
        ("log", format!("/webhook/{}/log/{}", a.webhook, a.log)),
        ("task", format!("/task/{}", a.task)),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        let mut json = reply.json;
        if name == "webhook" {
            json.as_object_mut().unwrap().remove("status");
        }
        view.insert(name.into(), json);
    }
    Value::Object(view)
}

async fn other_users_and_projects_cannot_reach_a_tenants_resources(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver_a = Receiver::start().await;
    let receiver_b = Receiver::start().await;
    let receiver_c = Receiver::start().await;
    let bob = app.other_tenant("bob").await;
    let side = app.other_project("side").await;

    // Tenant A: one of each resource, and a delivery log.
    let target = app
        .post(
            "/multistream/target",
            json!({"name": "a-target", "url": "rtmp://ingest.example/live/a-secret"}),
        )
        .await;
    assert_eq!(target.status, 201, "{}", target.text);
    let hook = app
        .post(
            "/webhook",
            json!({"name": "a-hook", "url": receiver_a.url(), "events": ["stream.started"]}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let stream = app
        .create_stream(json!({"name": "a-stream", "multistream": {"targets": [{"id": id(&target.json), "profile": "source"}]}}))
        .await;
    let signing = app
        .post(
            "/access-control/signing-key",
            json!({"name": "a-signing-key"}),
        )
        .await;
    assert_eq!(signing.status, 200, "{}", signing.text);

    // B (another user) and C (another project of A's user) have their own stream and a webhook
    // for every stream.started of their project.
    for (tenant, receiver) in [(&bob, &receiver_b), (&side, &receiver_c)] {
        let reply = app
            .call(Some(&tenant.key), Method::POST, "/webhook", Some(json!({"name": "own-hook", "url": receiver.url(), "events": ["stream.started"]})))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let reply = app
            .call(
                Some(&tenant.key),
                Method::POST,
                "/stream",
                Some(json!({"name": "own-stream"})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }

    set_active(&app, &id(&stream), true).await;
    receiver_a.wait_for(1, Duration::from_secs(10)).await;
    let hook_id = id(&hook.json);
    let logs = eventually(Duration::from_secs(10), || async {
        let logs = app.get(&format!("/webhook/{hook_id}/log")).await.json;
        logs.as_array()
            .is_some_and(|l| !l.is_empty())
            .then_some(logs)
    })
    .await
    .expect("the delivery is logged");
    let a = Owned {
        stream: id(&stream),
        target: id(&target.json),
        signing_key: id(&signing.json),
        webhook: hook_id.clone(),
        log: id(&logs[0]),
        task: spawn_task(&app).await,
    };
    let before = view_of_owner(&app, &a).await;
    assert_eq!(before["stream"]["isActive"], true);
    assert_eq!(
        before["stream"]["multistream"]["targets"][0]["id"],
        a.target.as_str()
    );

    let ops: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/stream/{}", a.stream), None),
        (
            Method::PATCH,
            format!("/stream/{}", a.stream),
            Some(json!({"name": "hijacked", "suspended": true, "record": true})),
        ),
        (
            Method::DELETE,
            format!("/stream/{}/terminate", a.stream),
            None,
        ),
        (
            Method::POST,
            format!("/stream/{}/create-multistream-target", a.stream),
            Some(
                json!({"profile": "source", "spec": {"name": "evil", "url": "rtmp://evil.example/live/x"}}),
            ),
        ),
        (
            Method::POST,
            format!("/stream/{}/create-multistream-target", a.stream),
            Some(json!({"id": a.target, "profile": "source", "videoOnly": true})),
        ),
        (
            Method::DELETE,
            format!("/stream/{}/multistream/{}", a.stream, a.target),
            None,
        ),
        (
            Method::GET,
            format!("/multistream/target/{}", a.target),
            None,
        ),
        (
            Method::PATCH,
            format!("/multistream/target/{}", a.target),
            Some(
                json!({"name": "hijacked", "url": "rtmp://evil.example/live/x", "disabled": true}),
            ),
        ),
        (
            Method::GET,
            format!("/access-control/signing-key/{}", a.signing_key),
            None,
        ),
        (
            Method::PATCH,
            format!("/access-control/signing-key/{}", a.signing_key),
            Some(json!({"name": "hijacked", "disabled": true})),
        ),
        (Method::GET, format!("/task/{}", a.task), None),
        (Method::GET, format!("/webhook/{}", a.webhook), None),
        (
            Method::PUT,
            format!("/webhook/{}", a.webhook),
            Some(
                json!({"name": "hijacked", "url": "https://evil.example/hook", "events": ["stream.idle"], "sharedSecret": "evil"}),
            ),
        ),
        (
            Method::PATCH,
            format!("/webhook/{}", a.webhook),
            Some(json!({"url": "https://evil.example/hook", "sharedSecret": "evil"})),
        ),
        (Method::GET, format!("/webhook/{}/log", a.webhook), None),
        (
            Method::GET,
            format!("/webhook/{}/log/{}", a.webhook, a.log),
            None,
        ),
        (
            Method::POST,
            format!("/webhook/{}/log/{}/resend", a.webhook, a.log),
            Some(json!({})),
        ),
        // Deletes last, so that a leak in one of them cannot hide the others.
        (Method::DELETE, format!("/webhook/{}", a.webhook), None),
        (
            Method::DELETE,
            format!("/access-control/signing-key/{}", a.signing_key),
            None,
        ),
        (
            Method::DELETE,
            format!("/multistream/target/{}", a.target),
            None,
        ),
        (Method::DELETE, format!("/stream/{}", a.stream), None),
    ];
    // Ids that never existed, to compare with: the answers must not tell A's ids from them.
    let unknown = |path: &str| {
        [
            &a.stream,
            &a.target,
            &a.signing_key,
            &a.webhook,
            &a.log,
            &a.task,
        ]
        .iter()
        .enumerate()
        .fold(path.to_string(), |p, (i, id)| {
            p.replace(
                id.as_str(),
                &format!("00000000-0000-4000-8000-00000000000{i}"),
            )
        })
    };
    for (who, tenant) in [("another user", &bob), ("another project", &side)] {
        for (method, path, body) in &ops {
            let reply = app
                .call(Some(&tenant.key), method.clone(), path, body.clone())
                .await;
            assert_not_found(&reply, &format!("{who}: {method} {path}"));
            assert!(
                !reply.text.contains("a-secret") && !reply.text.contains("a-stream"),
                "{who}: {method} {path} leaks: {}",
                reply.text
            );
            let never = app
                .call(
                    Some(&tenant.key),
                    method.clone(),
                    &unknown(path),
                    body.clone(),
                )
                .await;
            assert_eq!(
                (never.status, unknown(&reply.text)),
                (reply.status, never.text.clone()),
                "{who}: {method} {path} answers differently for an id that exists elsewhere"
            );
        }

        // Lists show only the caller's own resources, whatever the filter.
        for (path, a_id, own) in [
            ("/stream", &a.stream, 1),
            ("/multistream/target", &a.target, 0),
            ("/access-control/signing-key", &a.signing_key, 0),
            ("/webhook", &a.webhook, 1),
            ("/task", &a.task, 0),
        ] {
            let reply = app.call(Some(&tenant.key), Method::GET, path, None).await;
            assert_eq!(reply.status, 200, "{who}: GET {path}: {}", reply.text);
            let listed = ids(&reply.json);
            assert!(
                !listed.contains(a_id),
                "{who}: GET {path} lists A's resource: {}",
                reply.text
            );
            assert_eq!(
                listed.len(),
                own,
                "{who}: GET {path} lists exactly its own: {}",
                reply.text
            );
        }
        for filter in [
            json!([{"id": "id", "value": a.stream}]),
            json!([{"id": "projectId", "value": app.project_id}]),
            json!([{"id": "userId", "value": app.user_id}]),
            json!([{"id": "name", "value": "a-stream"}]),
            json!([{"id": "isActive", "value": true}]),
        ] {
            let path = format!("/stream?filters={}", urlencode(&filter.to_string()));
            let reply = app.call(Some(&tenant.key), Method::GET, &path, None).await;
            assert_eq!(reply.status, 200, "{who}: GET {path}: {}", reply.text);
            let listed = ids(&reply.json);
            assert!(
                !listed.contains(&a.stream),
                "{who}: GET {path} lists A's stream"
            );
            if filter[0]["id"] != "userId" || tenant.user_id != app.user_id {
                assert!(listed.is_empty(), "{who}: GET {path}: {}", reply.text);
            }
        }
        let active = app
            .call(Some(&tenant.key), Method::GET, "/stream?active=1", None)
            .await;
        assert_eq!(
            active.json,
            json!([]),
            "{who}: A's live stream is not among the caller's live streams"
        );
        let targets = app
            .call(
                Some(&tenant.key),
                Method::GET,
                &format!(
                    "/multistream/target?filters={}",
                    urlencode(&json!([{"id": "userId", "value": app.user_id}]).to_string())
                ),
                None,
            )
            .await;
        assert_eq!(targets.json, json!([]), "{who}: {}", targets.text);
    }

    // A's resources are all there, unchanged, and still listed.
    let after = view_of_owner(&app, &a).await;
    assert_eq!(after, before, "A's resources changed");
    let webhook = app.get(&format!("/webhook/{}", a.webhook)).await.json;
    assert_eq!(webhook["url"], receiver_a.url().as_str());
    assert_eq!(webhook["sharedSecret"], hook.json["sharedSecret"]);
    for (path, a_id) in [
        ("/stream", &a.stream),
        ("/multistream/target", &a.target),
        ("/access-control/signing-key", &a.signing_key),
        ("/webhook", &a.webhook),
        ("/task", &a.task),
    ] {
        let listed = ids(&app.get(path).await.json);
        assert!(
            listed.contains(a_id),
            "A still lists its resource at {path}"
        );
    }

    // A's event reached A's webhook only, once: no resend happened and no other tenant heard it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver_a.received().len(),
        1,
        "no resend reached A's receiver"
    );
    assert_eq!(
        receiver_b.received().len(),
        0,
        "another user's webhook heard A's stream.started"
    );
    assert_eq!(
        receiver_c.received().len(),
        0,
        "another project's webhook heard A's stream.started"
    );
}

async fn resources_of_another_tenant_cannot_be_referenced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bob = app.other_tenant("bob").await;
    let side = app.other_project("side").await;
    let target = app
        .post(
            "/multistream/target",
            json!({"name": "a-target", "url": "rtmp://ingest.example/live/a-secret"}),
        )
        .await;
    assert_eq!(target.status, 201, "{}", target.text);
    let target_id = id(&target.json);
    let hook = app.post("/webhook", json!({"name": "a-hook", "url": "https://a.example/hook", "events": ["playback.accessControl"]})).await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let hook_id = id(&hook.json);
    let by_target = json!({"targets": [{"id": target_id, "profile": "source"}]});
    let by_webhook = json!({"type": "webhook", "webhookId": hook_id});

    // A itself may reference both: the refusals below are about ownership, not syntax.
    let own = app
        .create_stream(
            json!({"name": "a-stream", "multistream": by_target, "playbackPolicy": by_webhook}),
        )
        .await;
    assert_eq!(own["multistream"]["targets"][0]["id"], target_id.as_str());
    assert_eq!(own["playbackPolicy"]["webhookId"], hook_id.as_str());

    for (who, tenant) in [("another user", &bob), ("another project", &side)] {
        let call = |method: Method, path: String, body: Option<Value>| {
            call_as(&app, &tenant.key, method, path, body)
        };
        call(
            Method::POST,
            "/stream".into(),
            Some(json!({"name": "x", "multistream": by_target})),
        )
        .await
        .assert_error(400, &format!("multistream target {target_id} not found"));
        call(
            Method::POST,
            "/stream".into(),
            Some(json!({"name": "x", "playbackPolicy": by_webhook})),
        )
        .await
        .assert_error(400, "playbackPolicy.webhookId");
        let list = call(Method::GET, "/stream".into(), None).await;
        assert_eq!(
            list.json,
            json!([]),
            "{who}: refused creates leave nothing behind"
        );

        // Their own stream cannot be pointed at A's target or webhook either.
        let mine = call(
            Method::POST,
            "/stream".into(),
            Some(json!({"name": "mine"})),
        )
        .await;
        assert_eq!(mine.status, 201, "{}", mine.text);
        let mine_id = id(&mine.json);
        call(
            Method::PATCH,
            format!("/stream/{mine_id}"),
            Some(json!({"multistream": by_target})),
        )
        .await
        .assert_error(400, &format!("multistream target {target_id} not found"));
        call(
            Method::POST,
            format!("/stream/{mine_id}/create-multistream-target"),
            Some(json!({"id": target_id, "profile": "source"})),
        )
        .await
        .assert_error(400, &format!("multistream target {target_id} not found"));
        call(
            Method::PATCH,
            format!("/stream/{mine_id}"),
            Some(json!({"playbackPolicy": by_webhook})),
        )
        .await
        .assert_error(400, "playbackPolicy.webhookId");
        let removed = call(
            Method::DELETE,
            format!("/stream/{mine_id}/multistream/{target_id}"),
            None,
        )
        .await;
        assert_not_found(
            &removed,
            &format!("{who}: removing A's target from its own stream"),
        );
        let mine = call(Method::GET, format!("/stream/{mine_id}"), None)
            .await
            .json;
        assert!(
            mine.get("multistream")
                .is_none_or(|m| m.is_null() || m["targets"] == json!([])),
            "{who}: the stream has no multistream target: {mine}"
        );
        assert!(
            mine.get("playbackPolicy")
                .is_none_or(|p| p.is_null() || p["type"] != "webhook"),
            "{who}: {mine}"
        );
    }
    // A's target and webhook are untouched.
    assert_eq!(
        app.get(&format!("/multistream/target/{target_id}"))
            .await
            .json["name"],
        "a-target"
    );
    assert_eq!(
        app.get(&format!("/webhook/{hook_id}")).await.json["name"],
        "a-hook"
    );
}

async fn api_keys_are_shown_once_and_revoked_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = create_api_key(&app, json!({"name": "ci"})).await;
    let secret = created["key"]
        .as_str()
        .expect("the secret is in the create response")
        .to_string();
    let key_id = id(&created);
    assert_eq!(created["name"], "ci");
    assert_eq!(created["projectId"], app.project_id.as_str());
    assert_eq!(created["admin"], false);

    // Listing and reading never show a secret.
    let list = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(ids(&list.json).contains(&key_id));
    assert!(
        list.json
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none()),
        "{}",
        list.text
    );
    assert!(
        !list.text.contains(&secret)
            && !list.text.contains(&app.key)
            && !list.text.contains(&app.admin_key)
    );
    let one = app
        .call(
            Some(&app.admin_key),
            Method::GET,
            &format!("/api-token/{key_id}"),
            None,
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.json["name"], "ci");
    assert!(
        one.json.get("key").is_none() && !one.text.contains(&secret),
        "{}",
        one.text
    );

    // The new key works, as a key of the same project.
    let stream = app
        .call(
            Some(&secret),
            Method::POST,
            "/stream",
            Some(json!({"name": "by-ci"})),
        )
        .await;
    assert_eq!(stream.status, 201, "{}", stream.text);
    assert_eq!(
        app.get(&format!("/stream/{}", id(&stream.json)))
            .await
            .status,
        200
    );

    // Revoked: the very next request is refused.
    let revoked = app
        .call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/api-token/{key_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    app.call(Some(&secret), Method::GET, "/stream", None)
        .await
        .assert_error(401, "invalid API key");
    app.call(
        Some(&secret),
        Method::POST,
        "/stream",
        Some(json!({"name": "late"})),
    )
    .await
    .assert_error(401, "invalid API key");
    assert_not_found(
        &app.call(
            Some(&app.admin_key),
            Method::GET,
            &format!("/api-token/{key_id}"),
            None,
        )
        .await,
        "a revoked key",
    );
    assert_not_found(
        &app.call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/api-token/{key_id}"),
            None,
        )
        .await,
        "revoking twice",
    );
    let list = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await;
    assert!(
        !ids(&list.json).contains(&key_id),
        "revoked keys are not listed"
    );
    // What the key created stays.
    assert_eq!(
        app.get(&format!("/stream/{}", id(&stream.json)))
            .await
            .status,
        200
    );

    // Non-admin keys cannot manage projects or keys.
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/project".into(), None),
        (
            Method::POST,
            "/project".into(),
            Some(json!({"name": "mine"})),
        ),
        (Method::GET, format!("/project/{}", app.project_id), None),
        (
            Method::PATCH,
            format!("/project/{}", app.project_id),
            Some(json!({"name": "renamed"})),
        ),
        (Method::DELETE, format!("/project/{}", app.project_id), None),
        (Method::GET, "/api-token".into(), None),
        (
            Method::POST,
            "/api-token".into(),
            Some(json!({"name": "escalate", "admin": true})),
        ),
        (Method::GET, format!("/api-token/{key_id}"), None),
        (Method::DELETE, format!("/api-token/{key_id}"), None),
    ];
    for (method, path, body) in forbidden {
        app.call(Some(&app.key), method.clone(), &path, body)
            .await
            .assert_error(403, "admin");
    }
    // Nor can they revoke the admin key, whose id they could learn.
    let keys = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await
        .json;
    let admin_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "admin key")
        .map(id)
        .expect("the admin key is listed");
    app.call(
        Some(&app.key),
        Method::DELETE,
        &format!("/api-token/{admin_id}"),
        None,
    )
    .await
    .assert_error(403, "admin");
    assert_eq!(
        app.call(Some(&app.admin_key), Method::GET, "/api-token", None)
            .await
            .status,
        200,
        "the admin key still works"
    );
    // Without a key at all: 401, not 403.
    app.call(None, Method::GET, "/api-token", None)
        .await
        .assert_error(401, "not authenticated");
    app.call(None, Method::GET, "/project", None)
        .await
        .assert_error(401, "not authenticated");

    // An admin key can create an admin key; a non-admin one could not.
    let admin2 = create_api_key(&app, json!({"name": "second admin", "admin": true})).await;
    assert_eq!(admin2["admin"], true);
    let reply = app
        .call(
            Some(admin2["key"].as_str().unwrap()),
            Method::GET,
            "/project",
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

async fn projects_scope_keys_and_resources(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = |method: Method, path: String, body: Option<Value>| {
        call_as(&app, &app.admin_key, method, path, body)
    };

    let created = admin(
        Method::POST,
        "/project".into(),
        Some(json!({"name": "staging"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let project = id(&created.json);
    assert_eq!(created.json["name"], "staging");
    assert_eq!(created.json["userId"], app.user_id.as_str());
    assert_ne!(project, app.project_id);

    let list = admin(Method::GET, "/project".into(), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let mut listed = ids(&list.json);
    listed.sort();
    let mut expected = vec![project.clone(), app.project_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let got = admin(Method::GET, format!("/project/{project}"), None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json["name"], "staging");

    let renamed = admin(
        Method::PATCH,
        format!("/project/{project}"),
        Some(json!({"name": "preview"})),
    )
    .await;
    assert_eq!(renamed.status, 204, "{}", renamed.text);
    assert_eq!(
        admin(Method::GET, format!("/project/{project}"), None)
            .await
            .json["name"],
        "preview"
    );
    admin(
        Method::POST,
        "/project".into(),
        Some(json!({"name": "preview"})),
    )
    .await
    .assert_error(409, "already exists");
    admin(
        Method::PATCH,
        format!("/project/{}", app.project_id),
        Some(json!({"name": "preview"})),
    )
    .await
    .assert_error(409, "already exists");
    admin(Method::POST, "/project".into(), Some(json!({"name": ""})))
        .await
        .assert_error(422, "name");
    assert_not_found(
        &admin(Method::GET, "/project/no-such-project".into(), None).await,
        "an unknown project",
    );

    // A key of the new project sees only that project.
    let key = create_api_key(&app, json!({"name": "preview key", "projectId": project})).await;
    assert_eq!(key["projectId"], project.as_str());
    let preview_key = key["key"].as_str().unwrap().to_string();
    let by_query = app
        .call(
            Some(&app.admin_key),
            Method::POST,
            &format!("/api-token?projectId={project}"),
            Some(json!({"name": "query form"})),
        )
        .await;
    assert_eq!(by_query.status, 201, "{}", by_query.text);
    assert_eq!(by_query.json["projectId"], project.as_str());
    let query_key = by_query.json["key"].as_str().unwrap().to_string();
    assert_not_found(
        &app.call(
            Some(&app.admin_key),
            Method::POST,
            "/api-token",
            Some(json!({"name": "x", "projectId": "no-such-project"})),
        )
        .await,
        "a key in an unknown project",
    );

    let preview_stream = app
        .call(
            Some(&preview_key),
            Method::POST,
            "/stream",
            Some(json!({"name": "preview-stream"})),
        )
        .await;
    assert_eq!(preview_stream.status, 201, "{}", preview_stream.text);
    assert_eq!(preview_stream.json["projectId"], project.as_str());
    let preview_playback = format!(
        "/playback/{}",
        preview_stream.json["playbackId"].as_str().unwrap()
    );
    let preview_stream = id(&preview_stream.json);
    assert_eq!(
        app.call(None, Method::GET, &preview_playback, None)
            .await
            .status,
        200
    );
    let default_stream = id(&app.create_stream(json!({"name": "default-stream"})).await);

    assert_not_found(
        &app.get(&format!("/stream/{preview_stream}")).await,
        "the default project's key reading a preview stream",
    );
    assert_eq!(
        ids(&app.get("/stream").await.json),
        vec![default_stream.clone()]
    );
    for k in [&preview_key, &query_key] {
        let own = app.call(Some(k), Method::GET, "/stream", None).await;
        assert_eq!(ids(&own.json), vec![preview_stream.clone()]);
        assert_not_found(
            &app.call(
                Some(k),
                Method::GET,
                &format!("/stream/{default_stream}"),
                None,
            )
            .await,
            "a preview key reading a default stream",
        );
    }

    // Deleting the project: its keys stop working at once, the project is gone.
    admin(Method::DELETE, format!("/project/{}", app.project_id), None)
        .await
        .assert_error(400, "own project");
    assert_eq!(
        app.get("/stream").await.status,
        200,
        "refusing leaves the default project working"
    );
    let deleted = admin(Method::DELETE, format!("/project/{project}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.call(Some(&preview_key), Method::GET, "/stream", None)
        .await
        .assert_error(401, "invalid API key");
    app.call(
        Some(&query_key),
        Method::GET,
        &format!("/stream/{preview_stream}"),
        None,
    )
    .await
    .assert_error(401, "invalid API key");
    assert_not_found(
        &admin(Method::GET, format!("/project/{project}"), None).await,
        "a deleted project",
    );
    assert_not_found(
        &admin(Method::DELETE, format!("/project/{project}"), None).await,
        "deleting twice",
    );
    assert_not_found(
        &admin(
            Method::PATCH,
            format!("/project/{project}"),
            Some(json!({"name": "back"})),
        )
        .await,
        "renaming a deleted project",
    );
    assert_not_found(
        &app.call(
            Some(&app.admin_key),
            Method::POST,
            "/api-token",
            Some(json!({"name": "x", "projectId": project})),
        )
        .await,
        "a key in a deleted project",
    );
    assert_eq!(
        ids(&admin(Method::GET, "/project".into(), None).await.json),
        vec![app.project_id.clone()]
    );
    // Its keys, which cannot work any more, are not listed as if they could.
    let keys = admin(Method::GET, "/api-token".into(), None).await;
    assert!(
        keys.json
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["projectId"] == app.project_id.as_str()),
        "{}",
        keys.text
    );
    assert_not_found(
        &admin(Method::GET, format!("/api-token/{}", id(&key)), None).await,
        "a key of a deleted project",
    );
    // Its streams are gone with it: their playback ids no longer play.
    assert_not_found(
        &app.call(None, Method::GET, &preview_playback, None).await,
        "playback of a deleted project's stream",
    );
    // The default project is unaffected, and the name is free again.
    assert_eq!(ids(&app.get("/stream").await.json), vec![default_stream]);
    let again = admin(
        Method::POST,
        "/project".into(),
        Some(json!({"name": "preview"})),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(id(&again.json), project);
}

async fn admin_keys_manage_only_their_own_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bob: Tenant = app.other_tenant("bob").await;
    let bob_admin = {
        let db = app.server.as_ref().unwrap().state.db().clone();
        let mut tx = db.begin().await.unwrap();
        let key = accounts::create_key(
            &mut tx,
            &bob.user_id,
            &bob.project_id,
            "bob admin",
            true,
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        key.key.unwrap()
    };
    let keys = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await
        .json;
    let a_key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "test key")
        .map(id)
        .expect("A's key is listed");

    let bob_call = |method: Method, path: String, body: Option<Value>| {
        call_as(&app, &bob_admin, method, path, body)
    };
    let projects = bob_call(Method::GET, "/project".into(), None).await;
    assert_eq!(projects.status, 200, "{}", projects.text);
    assert_eq!(ids(&projects.json), vec![bob.project_id.clone()]);
    let tokens = bob_call(Method::GET, "/api-token".into(), None).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    assert!(
        tokens
            .json
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["userId"] == bob.user_id.as_str()),
        "{}",
        tokens.text
    );
    assert!(!ids(&tokens.json).contains(&a_key_id));
    let filtered = bob_call(
        Method::GET,
        format!(
            "/api-token?filters={}",
            urlencode(&json!([{"id": "projectId", "value": app.project_id}]).to_string())
        ),
        None,
    )
    .await;
    assert_eq!(filtered.json, json!([]), "{}", filtered.text);

    for (method, path, body) in [
        (Method::GET, format!("/project/{}", app.project_id), None),
        (
            Method::PATCH,
            format!("/project/{}", app.project_id),
            Some(json!({"name": "hijacked"})),
        ),
        (Method::DELETE, format!("/project/{}", app.project_id), None),
        (Method::GET, format!("/api-token/{a_key_id}"), None),
        (Method::DELETE, format!("/api-token/{a_key_id}"), None),
        (
            Method::POST,
            "/api-token".into(),
            Some(json!({"name": "planted", "projectId": app.project_id})),
        ),
        (
            Method::POST,
            format!("/api-token?projectId={}", app.project_id),
            Some(json!({"name": "planted"})),
        ),
    ] {
        let reply = bob_call(method.clone(), path.clone(), body).await;
        assert_not_found(
            &reply,
            &format!("another user's admin key: {method} {path}"),
        );
    }
    // A is untouched: its key works, its project keeps its name, no key was planted in it.
    assert_eq!(app.get("/stream").await.status, 200);
    let project = app
        .call(
            Some(&app.admin_key),
            Method::GET,
            &format!("/project/{}", app.project_id),
            None,
        )
        .await;
    assert_eq!(project.json["name"], "default");
    let keys = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await
        .json;
    let mut names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["admin key", "test key"]);
}

async fn browsers_need_a_cors_key_for_their_origin(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // Pre-flights need no key and are answered for any origin.
    for path in ["/stream", "/stream/some-id", "/webhook"] {
        let preflight = send(
            &app,
            None,
            Method::OPTIONS,
            path,
            None,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
        )
        .await;
        assert_eq!(preflight.status, 204, "OPTIONS {path}: {}", preflight.text);
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert!(
            preflight
                .header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST")),
            "{:?}",
            preflight.headers
        );
        let allowed = preflight
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{allowed}"
        );
    }

    // A key without CORS access cannot be used from a page; the page can read why.
    let refused = from_origin(
        &app,
        &app.key,
        "https://app.example",
        Method::GET,
        "/stream",
        None,
    )
    .await;
    refused.assert_error(403, "CORS");
    assert!(
        refused.errors()[0].contains("https://app.example"),
        "{}",
        refused.text
    );
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    from_origin(
        &app,
        &app.key,
        "https://app.example",
        Method::POST,
        "/stream",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_error(403, "CORS");
    from_origin(
        &app,
        &app.admin_key,
        "https://app.example",
        Method::GET,
        "/api-token",
        None,
    )
    .await
    .assert_error(403, "CORS");
    assert_eq!(
        app.get("/stream").await.json,
        json!([]),
        "the refused create created nothing"
    );
    // The same key works server-side, without Origin.
    assert_eq!(app.get("/stream").await.status, 200);

    // A full-access CORS key may do anything from any origin.
    let any = create_api_key(&app, json!({"name": "any origin", "access": {"cors": {"allowedOrigins": ["*"], "fullAccess": true}}})).await;
    assert_eq!(
        any["access"],
        json!({"cors": {"allowedOrigins": ["*"], "fullAccess": true}})
    );
    let any_key = any["key"].as_str().unwrap();
    for origin in ["https://anything.example", "http://localhost:3000"] {
        let listed = from_origin(&app, any_key, origin, Method::GET, "/stream", None).await;
        assert_eq!(listed.status, 200, "{origin}: {}", listed.text);
        assert_eq!(listed.header("access-control-allow-origin"), Some(origin));
    }
    let created = from_origin(
        &app,
        any_key,
        "https://anything.example",
        Method::POST,
        "/stream",
        Some(json!({"name": "from-page"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let deleted = from_origin(
        &app,
        any_key,
        "https://anything.example",
        Method::DELETE,
        &format!("/stream/{}", id(&created.json)),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(
        from_origin(
            &app,
            any_key,
            "https://anything.example",
            Method::GET,
            "/webhook",
            None
        )
        .await
        .status,
        200
    );

    // Origins must be `*` or scheme://host[:port]; the error names the entry.
    for (origins, field) in [
        (
            json!(["https://app.example/"]),
            "access.cors.allowedOrigins[0]",
        ),
        (json!(["app.example"]), "access.cors.allowedOrigins[0]"),
        (
            json!(["https://ok.example", "ftp://files.example"]),
            "access.cors.allowedOrigins[1]",
        ),
        (
            json!(["https://ok.example", "https://app.example/path"]),
            "access.cors.allowedOrigins[1]",
        ),
    ] {
        let reply = app
            .call(
                Some(&app.admin_key),
                Method::POST,
                "/api-token",
                Some(json!({"name": "bad", "access": {"cors": {"allowedOrigins": origins}}})),
            )
            .await;
        reply.assert_error(422, field);
    }
    app.call(
        Some(&app.admin_key),
        Method::POST,
        "/api-token",
        Some(json!({"name": "bad", "access": {"cors": {"allowedOrigins": ["https://app.example"]}}, "admin": true})),
    )
    .await
    .assert_error(422, "admin");
    app.call(
        Some(&app.admin_key),
        Method::POST,
        "/api-token",
        Some(json!({"name": "bad", "access": {"cors": {"allowedOrigin": ["*"]}}})),
    )
    .await
    .assert_error(422, "allowedOrigin");
    let keys = app
        .call(Some(&app.admin_key), Method::GET, "/api-token", None)
        .await
        .json;
    assert!(
        keys.as_array().unwrap().iter().all(|k| k["name"] != "bad"),
        "refused keys are not created: {keys}"
    );
}

async fn restricted_cors_keys_call_only_what_a_page_needs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let page = "https://app.example";
    let web = create_api_key(
        &app,
        json!({"name": "web", "access": {"cors": {"allowedOrigins": [page]}}}),
    )
    .await;
    assert_eq!(web["access"]["cors"]["allowedOrigins"], json!([page]));
    assert_eq!(web["access"]["cors"]["fullAccess"], false);
    let web_key = web["key"].as_str().unwrap().to_string();
    let restricted = "access forbidden for CORS-enabled API key with restricted access";

    // What a page needs: create a stream, read and update it, create a multistream target.
    let created = from_origin(
        &app,
        &web_key,
        page,
        Method::POST,
        "/stream",
        Some(json!({"name": "from-page"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("access-control-allow-origin"), Some(page));
    let stream_id = id(&created.json);
    let got = from_origin(
        &app,
        &web_key,
        page,
        Method::GET,
        &format!("/stream/{stream_id}"),
        None,
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json["name"], "from-page");
    let patched = from_origin(
        &app,
        &web_key,
        page,
        Method::PATCH,
        &format!("/stream/{stream_id}"),
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let target = from_origin(
        &app,
        &web_key,
        page,
        Method::POST,
        "/multistream/target",
        Some(json!({"url": "rtmp://ingest.example/live/k"})),
    )
    .await;
    assert_eq!(target.status, 201, "{}", target.text);
    let target_id = id(&target.json);
    assert_eq!(
        from_origin(
            &app,
            &web_key,
            page,
            Method::GET,
            &format!("/multistream/target/{target_id}"),
            None
        )
        .await
        .status,
        200
    );

    // Nothing else: lists, deletes, and other resources.
    let hook = app
        .post(
            "/webhook",
            json!({"name": "h", "url": "https://a.example/hook", "events": ["stream.idle"]}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    for (method, path, body) in [
        (Method::GET, "/stream".to_string(), None),
        (Method::DELETE, format!("/stream/{stream_id}"), None),
        (
            Method::DELETE,
            format!("/stream/{stream_id}/terminate"),
            None,
        ),
        (
            Method::POST,
            format!("/stream/{stream_id}/create-multistream-target"),
            Some(json!({"id": target_id, "profile": "source"})),
        ),
        (Method::GET, "/multistream/target".to_string(), None),
        (
            Method::DELETE,
            format!("/multistream/target/{target_id}"),
            None,
        ),
        (Method::GET, "/webhook".to_string(), None),
        (Method::GET, format!("/webhook/{}", id(&hook.json)), None),
        (
            Method::POST,
            "/webhook".to_string(),
            Some(
                json!({"name": "h", "url": "https://evil.example/hook", "events": ["stream.idle"]}),
            ),
        ),
        (Method::GET, "/access-control/signing-key".to_string(), None),
        (
            Method::POST,
            "/access-control/signing-key".to_string(),
            Some(json!({})),
        ),
    ] {
        let reply = from_origin(&app, &web_key, page, method.clone(), &path, body).await;
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text);
        assert!(
            reply.errors().iter().any(|e| e == restricted),
            "{method} {path}: {:?}",
            reply.errors()
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(page),
            "{method} {path}"
        );
    }
    // The refused calls changed nothing.
    let stream = app.get(&format!("/stream/{stream_id}")).await;
    assert_eq!(
        stream.status, 200,
        "the refused DELETE left the stream: {}",
        stream.text
    );
    assert_eq!(stream.json["name"], "renamed");
    assert!(stream.json["lastTerminatedAt"].is_null(), "{}", stream.text);
    assert!(
        stream
            .json
            .get("multistream")
            .is_none_or(|m| m.is_null() || m["targets"] == json!([])),
        "{}",
        stream.text
    );
    assert_eq!(
        app.get(&format!("/multistream/target/{target_id}"))
            .await
            .status,
        200
    );
    assert_eq!(ids(&app.get("/webhook").await.json).len(), 1);

    // Another origin may not use the key at all.
    for origin in [
        "https://evil.example",
        "https://app.example:8443",
        "http://app.example",
    ] {
        let reply = from_origin(
            &app,
            &web_key,
            origin,
            Method::GET,
            &format!("/stream/{stream_id}"),
            None,
        )
        .await;
        reply.assert_error(403, "CORS");
        assert!(reply.errors()[0].contains(origin), "{:?}", reply.errors());
        from_origin(
            &app,
            &web_key,
            origin,
            Method::POST,
            "/stream",
            Some(json!({"name": "x"})),
        )
        .await
        .assert_error(403, "CORS");
    }

    // It is still a key of its project: another tenant's stream is not found from the page.
    let bob = app.other_tenant("bob").await;
    let bobs = app
        .call(
            Some(&bob.key),
            Method::POST,
            "/stream",
            Some(json!({"name": "bobs"})),
        )
        .await;
    assert_eq!(bobs.status, 201);
    assert_not_found(
        &from_origin(
            &app,
            &web_key,
            page,
            Method::GET,
            &format!("/stream/{}", id(&bobs.json)),
            None,
        )
        .await,
        "another tenant's stream",
    );
    assert_not_found(
        &from_origin(
            &app,
            &web_key,
            page,
            Method::PATCH,
            &format!("/stream/{}", id(&bobs.json)),
            Some(json!({"name": "x"})),
        )
        .await,
        "another tenant's stream",
    );

    // Without an Origin the key is just as restricted: it is published in a page, so anyone can
    // send it from a script that sets no Origin. Only the CORS response headers differ.
    let signing_keys_before = app.get("/access-control/signing-key").await.json;
    for (method, path, body) in [
        (Method::GET, "/stream".to_string(), None),
        (Method::GET, "/webhook".to_string(), None),
        (Method::GET, format!("/webhook/{}", id(&hook.json)), None),
        (
            Method::POST,
            "/access-control/signing-key".to_string(),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/stream/{stream_id}/terminate"),
            None,
        ),
        (Method::DELETE, format!("/stream/{stream_id}"), None),
    ] {
        let reply = app.call(Some(&web_key), method.clone(), &path, body).await;
        assert_eq!(
            reply.status, 403,
            "without Origin: {method} {path}: {}",
            reply.text
        );
        assert!(
            reply.errors().iter().any(|e| e == restricted),
            "{method} {path}: {:?}",
            reply.errors()
        );
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "no Origin, no CORS headers: {method} {path}"
        );
    }
    assert_eq!(
        app.get("/access-control/signing-key").await.json,
        signing_keys_before,
        "no signing key was created"
    );
    let kept = app.get(&format!("/stream/{stream_id}")).await;
    assert_eq!(kept.status, 200, "the stream is still there: {}", kept.text);
    assert!(kept.json["lastTerminatedAt"].is_null(), "{}", kept.text);
    // What a page may do, it may do without an Origin too.
    let got = app
        .call(
            Some(&web_key),
            Method::GET,
            &format!("/stream/{stream_id}"),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(got.header("access-control-allow-origin").is_none());
    let created = app
        .call(
            Some(&web_key),
            Method::POST,
            "/stream",
            Some(json!({"name": "from-a-script"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
}

async fn playback_info_is_public_from_any_origin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "public"})).await;
    let playback_id = stream["playbackId"].as_str().unwrap().to_string();
    let path = format!("/playback/{playback_id}");

    let anonymous = app.call(None, Method::GET, &path, None).await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.text);
    assert_eq!(anonymous.json["type"], "live");
    let sources = anonymous.json["meta"]["source"]
        .as_array()
        .expect("sources");
    assert!(
        sources.iter().any(|s| s["url"]
            .as_str()
            .is_some_and(|u| u.contains(&playback_id) && u.ends_with(".m3u8"))),
        "{}",
        anonymous.text
    );
    assert!(
        !anonymous
            .text
            .contains(stream["streamKey"].as_str().unwrap()),
        "playback info never carries the stream key"
    );

    for origin in ["https://player.example", "http://localhost:8080"] {
        let reply = send(&app, None, Method::GET, &path, None, &[("origin", origin)]).await;
        assert_eq!(reply.status, 200, "{origin}: {}", reply.text);
        assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
        assert_eq!(reply.json, anonymous.json);
        let preflight = send(
            &app,
            None,
            Method::OPTIONS,
            &path,
            None,
            &[("origin", origin), ("access-control-request-method", "GET")],
        )
        .await;
        assert_eq!(preflight.status, 204);
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some(origin)
        );
    }
    // Players that send a key (of any kind) from a page are not refused either.
    let with_key = from_origin(
        &app,
        &app.key,
        "https://player.example",
        Method::GET,
        &path,
        None,
    )
    .await;
    assert_eq!(with_key.status, 200, "{}", with_key.text);
    let other = app.other_tenant("viewer").await;
    assert_eq!(
        app.call(Some(&other.key), Method::GET, &path, None)
            .await
            .status,
        200,
        "playback ids are public across tenants"
    );

    // Unknown ids are 404, readable from a page.
    let unknown = send(
        &app,
        None,
        Method::GET,
        "/playback/nosuchplayback1",
        None,
        &[("origin", "https://player.example")],
    )
    .await;
    assert_not_found(&unknown, "an unknown playback id");
    assert_eq!(
        unknown.header("access-control-allow-origin"),
        Some("https://player.example")
    );
    // A deleted stream is no longer playable.
    assert_eq!(
        app.delete(&format!("/stream/{}", id(&stream))).await.status,
        204
    );
    assert_not_found(
        &app.call(None, Method::GET, &path, None).await,
        "a deleted stream's playback id",
    );
}

/// After an admin deletes a project, nothing of it plays: its recording's HLS and MP4, playback
/// info by the asset's playback id and by the session id, and its stream.
async fn a_deleted_projects_content_no_longer_plays(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let beta = app.other_project("beta").await;
    let as_beta = |method: Method, path: String| call_as(&app, &beta.key, method, path, None);
    let created = call_as(
        &app,
        &beta.key,
        Method::POST,
        "/stream".into(),
        Some(json!({"name": "recorded", "record": true})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let stream = created.json;
    let mut ffmpeg = crate::live::publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 3);
    assert!(
        ffmpeg.wait().await.unwrap().success(),
        "the publisher streamed to the end"
    );
    let asset = eventually(Duration::from_secs(30), || async {
        let sessions = as_beta(Method::GET, format!("/stream/{}/sessions", id(&stream))).await;
        let session = sessions.json.as_array()?.first()?.clone();
        let asset = as_beta(Method::GET, format!("/asset/{}", id(&session))).await;
        (asset.json["status"]["phase"] == "ready").then_some(asset.json)
    })
    .await
    .expect("the recording becomes a ready asset");
    let session_id = id(&asset);
    let asset_pid = asset["playbackId"].as_str().unwrap().to_string();
    let stream_pid = stream["playbackId"].as_str().unwrap().to_string();
    let public_urls = [
        asset["playbackUrl"].as_str().unwrap().to_string(),
        format!("{}/hls/{asset_pid}/source/index.m3u8", app.base),
        format!("{}/hls/{asset_pid}/source/0.ts", app.base),
        asset["downloadUrl"].as_str().unwrap().to_string(),
        app.url(&format!("/playback/{asset_pid}")),
        app.url(&format!("/playback/{session_id}")),
        app.url(&format!("/playback/{stream_pid}")),
    ];
    let get = |url: String| {
        let http = app.http.clone();
        async move { Reply::from(http.get(url).send().await.unwrap()).await }
    };
    for url in &public_urls {
        let reply = get(url.clone()).await;
        assert_eq!(
            reply.status, 200,
            "before the deletion, {url}: {}",
            reply.text
        );
    }

    let deleted = app
        .call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/project/{}", beta.project_id),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    for url in &public_urls {
        assert_not_found(
            &get(url.clone()).await,
            &format!("after the deletion, {url}"),
        );
    }
    let ranged = app
        .http
        .get(asset["downloadUrl"].as_str().unwrap())
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.status(),
        404,
        "a byte range of the deleted project's MP4"
    );
    // The project's key went with it.
    assert_eq!(
        as_beta(Method::GET, format!("/asset/{session_id}"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// A key as `studio api-key create --project NAME [--admin]` makes it: every such key belongs to
/// the one local user.
async fn cli_key(app: &TestApp, project: &str, admin: bool) -> (String, String) {
    let db = app.server.as_ref().unwrap().state.db().clone();
    let mut tx = db.begin().await.unwrap();
    let user_id = accounts::ensure_user(&mut tx, accounts::LOCAL_USER)
        .await
        .unwrap();
    let project = accounts::ensure_project(&mut tx, &user_id, project)
        .await
        .unwrap();
    let key = accounts::create_key(&mut tx, &user_id, &project.id, "cli", admin, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (key.key.unwrap(), project.id)
}

/// Admin is the operator's role, as in Livepeer Studio: an `--admin` key made for project beta
/// manages alpha's projects and keys too (the CLI makes every key for one local user). A key
/// without `--admin` manages nothing, not even its own project.
async fn admin_keys_made_by_the_cli_manage_every_project(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alpha_key, alpha) = cli_key(&app, "alpha", false).await;
    let (beta_admin, beta) = cli_key(&app, "beta", true).await;
    let (beta_key, _) = cli_key(&app, "beta", false).await;
    let as_admin = |method: Method, path: String, body: Option<Value>| {
        call_as(&app, &beta_admin, method, path, body)
    };

    // A key without --admin, of either project: 403 on every management route.
    for key in [&alpha_key, &beta_key] {
        for (method, path, body) in [
            (Method::GET, "/project".to_string(), None),
            (Method::GET, format!("/project/{alpha}"), None),
            (
                Method::POST,
                "/project".to_string(),
                Some(json!({"name": "x"})),
            ),
            (
                Method::PATCH,
                format!("/project/{alpha}"),
                Some(json!({"name": "x"})),
            ),
            (Method::DELETE, format!("/project/{alpha}"), None),
            (Method::GET, "/api-token".to_string(), None),
            (
                Method::POST,
                "/api-token".to_string(),
                Some(json!({"name": "x", "projectId": alpha})),
            ),
        ] {
            call_as(&app, key, method.clone(), path.clone(), body)
                .await
                .assert_error(403, "admin API key");
        }
    }

    // Beta's admin key sees and manages alpha.
    let projects = as_admin(Method::GET, "/project".into(), None).await;
    assert_eq!(projects.status, 200, "{}", projects.text);
    let listed = ids(&projects.json);
    assert!(
        listed.contains(&alpha) && listed.contains(&beta),
        "{listed:?}"
    );
    let renamed = as_admin(
        Method::PATCH,
        format!("/project/{alpha}"),
        Some(json!({"name": "alpha-renamed"})),
    )
    .await;
    assert_eq!(renamed.status, 204, "{}", renamed.text);
    let keys = as_admin(Method::GET, "/api-token".into(), None).await;
    let alpha_key_id = keys
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["projectId"] == alpha.as_str())
        .map(id)
        .expect("alpha's key is listed");
    let planted = as_admin(
        Method::POST,
        "/api-token".into(),
        Some(json!({"name": "made for alpha", "projectId": alpha})),
    )
    .await;
    assert_eq!(planted.status, 201, "{}", planted.text);
    let new_key = planted.json["key"].as_str().unwrap().to_string();
    let stream = call_as(
        &app,
        &new_key,
        Method::POST,
        "/stream".into(),
        Some(json!({"name": "in alpha"})),
    )
    .await;
    assert_eq!(stream.status, 201, "{}", stream.text);
    assert_eq!(stream.json["projectId"], alpha.as_str());

    let revoked = as_admin(Method::DELETE, format!("/api-token/{alpha_key_id}"), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    assert_eq!(
        call_as(&app, &alpha_key, Method::GET, "/stream".into(), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let deleted = as_admin(Method::DELETE, format!("/project/{alpha}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(
        call_as(&app, &new_key, Method::GET, "/stream".into(), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// A deleted project's live streams go off the air: their publishers are disconnected, and the
/// stream is no longer live.
async fn deleting_a_project_cuts_its_publishers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let beta = app.other_project("beta").await;
    let created = call_as(
        &app,
        &beta.key,
        Method::POST,
        "/stream".into(),
        Some(json!({"name": "on air", "profiles": []})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let stream = created.json;
    let stream_id = id(&stream);
    let mut ffmpeg = crate::live::publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);
    let live = eventually(Duration::from_secs(15), || async {
        let s = call_as(
            &app,
            &beta.key,
            Method::GET,
            format!("/stream/{stream_id}"),
            None,
        )
        .await;
        (s.json["isActive"] == true).then_some(())
    })
    .await;
    assert!(live.is_some(), "the stream goes live");

    let deleted = app
        .call(
            Some(&app.admin_key),
            Method::DELETE,
            &format!("/project/{}", beta.project_id),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let exited = tokio::time::timeout(Duration::from_secs(5), ffmpeg.wait()).await;
    let status = exited
        .expect("the publisher is disconnected within seconds")
        .unwrap();
    assert!(!status.success());
    let playback = stream["playbackId"].as_str().unwrap();
    let played = app
        .http
        .get(format!("{}/hls/{playback}/index.m3u8", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(played.status(), 404);
}
