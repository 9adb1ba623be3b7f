//! Webhooks: the resource, and delivery through the outbox to real HTTP receivers on loopback.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::receiver::Receiver;
use studio_tests::{Backend, TestApp, eventually, on_both_databases};

on_both_databases!(
    webhook_crud_and_validation,
    delivers_signed_events_to_matching_webhooks,
    retries_server_errors_until_the_receiver_recovers,
    client_errors_are_not_retried,
    delivery_in_backoff_survives_a_restart,
    private_destinations_are_refused_unless_allowed,
    resend_sends_the_logged_event_again,
    retention_removes_finished_work_but_keeps_pending_retries,
);

async fn create_webhook(app: &TestApp, url: &str, events: &[&str], extra: Value) -> Value {
    let mut body = json!({"name": "hook", "url": url, "events": events});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = app.post("/webhook", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
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

async fn webhook_crud_and_validation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = create_webhook(
        &app,
        "https://example.com/hook",
        &["stream.started", "stream.idle"],
        json!({}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["events"], json!(["stream.started", "stream.idle"]));
    let secret = created["sharedSecret"].as_str().unwrap();
    assert!(secret.len() >= 32, "a generated secret is long: {secret}");
    assert_eq!(created["projectId"], app.project_id.as_str());

    let got = app.get(&format!("/webhook/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json["url"], "https://example.com/hook");
    let listed = app.get("/webhook").await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);

    // PUT replaces and answers with the webhook; a PUT without a secret keeps the old one.
    let put = app.put(&format!("/webhook/{id}"), json!({"name": "renamed", "url": "https://example.org/x", "events": ["recording.ready"]})).await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json["name"], "renamed");
    assert_eq!(put.json["events"], json!(["recording.ready"]));
    assert_eq!(put.json["sharedSecret"], secret);

    // PATCH changes only what it names.
    let patched = app
        .patch(&format!("/webhook/{id}"), json!({"sharedSecret": "s3cret"}))
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let got = app.get(&format!("/webhook/{id}")).await;
    assert_eq!(got.json["sharedSecret"], "s3cret");
    assert_eq!(got.json["name"], "renamed");

    // Validation.
    app.post(
        "/webhook",
        json!({"name": "x", "url": "ftp://example.com", "events": ["stream.started"]}),
    )
    .await
    .assert_error(422, "url must be an http");
    app.post(
        "/webhook",
        json!({"name": "x", "url": "https://example.com", "events": ["stream.exploded"]}),
    )
    .await
    .assert_error(422, "events[0]");
    app.post(
        "/webhook",
        json!({"name": "x", "url": "https://example.com", "events": []}),
    )
    .await
    .assert_error(422, "events must name at least one event");
    // The legacy single `event` is still accepted on create.
    let legacy = app
        .post(
            "/webhook",
            json!({"name": "x", "url": "https://example.com", "event": "stream.idle"}),
        )
        .await;
    assert_eq!(legacy.status, 200, "{}", legacy.text);
    assert_eq!(legacy.json["events"], json!(["stream.idle"]));

    // DELETE answers with the webhook, then it is gone.
    let deleted = app.delete(&format!("/webhook/{id}")).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json["id"], id);
    app.get(&format!("/webhook/{id}"))
        .await
        .assert_error(404, "not found");
    app.delete(&format!("/webhook/{id}"))
        .await
        .assert_error(404, "not found");
}

async fn delivers_signed_events_to_matching_webhooks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let other_receiver = Receiver::start().await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    let other_stream = app.create_stream(json!({"name": "other"})).await;
    let sid = stream["id"].as_str().unwrap();
    let all = create_webhook(
        &app,
        &receiver.url(),
        &["stream.started", "stream.idle"],
        json!({}),
    )
    .await;
    // Only events of the other stream, and only stream.idle.
    let filtered = create_webhook(
        &app,
        &other_receiver.url(),
        &["stream.idle"],
        json!({"streamId": other_stream["id"]}),
    )
    .await;

    set_active(&app, sid, true).await;
    set_active(&app, sid, false).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let secret = all["sharedSecret"].as_str().unwrap();
    let started = got
        .iter()
        .map(|r| r.json())
        .find(|b| b["event"] == "stream.started")
        .expect("stream.started delivered");
    assert!(
        got.iter().all(|r| r.signature_valid(secret)),
        "every delivery carries a valid Livepeer-Signature"
    );
    assert_eq!(started["webhookId"], all["id"]);
    assert_eq!(started["stream"]["id"], sid);
    assert!(
        started["stream"].get("streamKey").is_none(),
        "webhooks never carry the stream key"
    );
    assert!(started["createdAt"].as_i64().unwrap() <= started["timestamp"].as_i64().unwrap());
    assert_eq!(got[0].headers["content-type"], "application/json");

    // The filtered webhook saw nothing of this stream...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other_receiver.received().len(), 0);
    // ...and gets the idle event of its own stream, with its own secret.
    set_active(&app, other_stream["id"].as_str().unwrap(), true).await;
    set_active(&app, other_stream["id"].as_str().unwrap(), false).await;
    let got = other_receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        other_receiver.received().len(),
        1,
        "stream.started is not subscribed"
    );
    assert_eq!(got[0].json()["event"], "stream.idle");
    assert!(got[0].signature_valid(filtered["sharedSecret"].as_str().unwrap()));

    // Each attempt is logged; status is recorded on the webhook.
    let logs = app
        .get(&format!("/webhook/{}/log", all["id"].as_str().unwrap()))
        .await;
    assert_eq!(logs.status, 200);
    let logs = logs.json.as_array().unwrap().clone();
    assert!(logs.len() >= 2, "{logs:?}");
    assert!(
        logs.iter()
            .all(|l| l["success"] == true && l["response"]["status"] == 204)
    );
    let webhook = app
        .get(&format!("/webhook/{}", all["id"].as_str().unwrap()))
        .await
        .json;
    assert!(webhook["status"]["lastTriggeredAt"].as_i64().unwrap() > 0);
}

async fn retries_server_errors_until_the_receiver_recovers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(&[500, 503]);
    let hook = create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;

    let got = receiver.wait_for(3, Duration::from_secs(15)).await;
    let ids: Vec<Value> = got.iter().map(|r| r.json()["id"].clone()).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same event is retried: {ids:?}"
    );
    // Backoff: 200 ms, then 400 ms (test settings), so attempts are spread out.
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(150),
        "{:?}",
        got[1].at - got[0].at
    );
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(300),
        "{:?}",
        got[2].at - got[1].at
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "no more attempts after success"
    );

    let logs = app
        .get(&format!(
            "/webhook/{}/log?order=createdAt-false",
            hook["id"].as_str().unwrap()
        ))
        .await
        .json;
    let statuses: Vec<Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["response"]["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(204)]);
    let webhook = app
        .get(&format!("/webhook/{}", hook["id"].as_str().unwrap()))
        .await
        .json;
    assert_eq!(webhook["status"]["lastFailure"]["statusCode"], 503);
}

async fn client_errors_are_not_retried(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(&[410]);
    let hook = create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1, "a 4xx answer is final");
    let logs = app
        .get(&format!("/webhook/{}/log", hook["id"].as_str().unwrap()))
        .await
        .json;
    assert_eq!(logs[0]["success"], false);
    assert_eq!(logs[0]["response"]["status"], 410);
}

async fn delivery_in_backoff_survives_a_restart(backend: Backend) {
    let mut app = TestApp::spawn_with(backend, |c| {
        // Long enough that the retry is still pending when the server stops.
        c.webhooks.initial_backoff_ms = 1_500;
    })
    .await;
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    receiver.respond_with(&[502]);
    create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;
    let event_id = first[0].json()["id"].clone();

    // Stop the server while the retry waits, and the receiver with it.
    app.stop().await;
    drop(receiver);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let receiver = Receiver::start_on(addr).await;
    app.start().await;

    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        got[0].json()["id"],
        event_id,
        "the event in backoff is delivered after the restart"
    );
    assert_eq!(got[0].json()["event"], "stream.started");
}

async fn private_destinations_are_refused_unless_allowed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.webhooks.allow_private_destinations = false).await;
    let receiver = Receiver::start().await;
    let literal = create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
    let named = create_webhook(
        &app,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
        &["stream.started"],
        json!({}),
    )
    .await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;

    for hook in [&literal, &named] {
        let path = format!("/webhook/{}/log", hook["id"].as_str().unwrap());
        let logs = eventually(Duration::from_secs(10), || async {
            let logs = app.get(&path).await.json;
            (logs.as_array().is_some_and(|l| !l.is_empty())).then_some(logs)
        })
        .await
        .expect("the refusal is logged");
        assert_eq!(logs[0]["success"], false);
        assert!(
            logs[0]["error"]
                .as_str()
                .unwrap()
                .contains("destination refused"),
            "{logs}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        0,
        "nothing reaches a loopback receiver"
    );
}

async fn resend_sends_the_logged_event_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
    let hook_id = hook["id"].as_str().unwrap();
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;
    let logs = eventually(Duration::from_secs(5), || async {
        let logs = app.get(&format!("/webhook/{hook_id}/log")).await.json;
        logs.as_array()
            .is_some_and(|l| !l.is_empty())
            .then_some(logs)
    })
    .await
    .unwrap();
    let log_id = logs[0]["id"].as_str().unwrap();
    let one = app.get(&format!("/webhook/{hook_id}/log/{log_id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json["webhookId"], hook_id);

    let resent = app
        .post(
            &format!("/webhook/{hook_id}/log/{log_id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.text);
    assert_ne!(resent.json["id"], log_id, "a resend is a new log entry");
    assert_eq!(resent.json["success"], true);
    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].json()["id"], first[0].json()["id"], "the same event");
    assert!(got[1].signature_valid(hook["sharedSecret"].as_str().unwrap()));
    app.post(&format!("/webhook/{hook_id}/log/nope/resend"), json!({}))
        .await
        .assert_error(404, "not found");
}

async fn retention_removes_finished_work_but_keeps_pending_retries(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.webhooks.initial_backoff_ms = 60_000).await;
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(&[500]);
    let ok_hook = create_webhook(&app, &ok.url(), &["stream.started"], json!({})).await;
    create_webhook(&app, &failing.url(), &["stream.started"], json!({})).await;
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;
    ok.wait_for(1, Duration::from_secs(10)).await;
    failing.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let db = app.server.as_ref().unwrap().state.db().clone();
    studio_api::webhooks::delivery::remove_old(&db, studio_api::clock::now_ms() + 1)
        .await
        .unwrap();
    let logs = app
        .get(&format!("/webhook/{}/log", ok_hook["id"].as_str().unwrap()))
        .await
        .json;
    assert_eq!(logs, json!([]), "old logs are removed");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::Row::get::<i64, _>(&sqlx::query(sql).fetch_one(db.reader()).await.unwrap(), 0)
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'").await,
        1,
        "the retry waits on"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM webhook_deliveries WHERE state <> 'pending'").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM events").await,
        1,
        "the event of a pending retry is kept"
    );
}
