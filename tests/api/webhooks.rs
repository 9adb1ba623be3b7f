//! Webhooks: the resource, and delivery through the outbox to real HTTP receivers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    silent_endpoints_of_one_project_do_not_delay_another,
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

/// An endpoint that accepts connections and never answers, as a black-holed host does. Counts
/// the connections open at once.
struct BlackHole {
    addr: std::net::SocketAddr,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, highest) = (open.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (counted, highest) = (counted.clone(), highest.clone());
                tokio::spawn(async move {
                    let now_open = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    highest.fetch_max(now_open, Ordering::SeqCst);
                    // Swallow the request; answer nothing until the sender gives up.
                    let _ = tokio::io::copy(&mut socket, &mut tokio::io::sink()).await;
                    counted.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        BlackHole {
            addr,
            open,
            peak,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn silent_endpoints_of_one_project_do_not_delay_another(backend: Backend) {
    let concurrency = 8;
    let timeout = Duration::from_secs(3);
    let app = TestApp::spawn_with(backend, |c| {
        c.webhooks.concurrency = concurrency;
        c.webhooks.timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    // Project A (the app's): five times as many silent webhooks as there are delivery slots.
    let hole = BlackHole::start().await;
    for _ in 0..5 * concurrency {
        create_webhook(&app, &hole.url(), &["stream.started"], json!({})).await;
    }
    // Project B, another tenant, with one healthy receiver.
    let b = app.other_tenant("tenant-b").await;
    let b_admin = {
        let db = app.server.as_ref().unwrap().state.db().clone();
        let mut tx = db.begin().await.unwrap();
        let key = studio_api::tenancy::accounts::create_key(
            &mut tx,
            &b.user_id,
            &b.project_id,
            "admin",
            true,
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        key.key.unwrap()
    };
    let receiver = Receiver::start().await;
    let hook = app
        .call(
            Some(&b.key),
            Method::POST,
            "/webhook",
            Some(json!({"name": "b", "url": receiver.url(), "events": ["stream.started"]})),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let b_stream = app
        .call(
            Some(&b.key),
            Method::POST,
            "/stream",
            Some(json!({"name": "b"})),
        )
        .await;
    assert_eq!(b_stream.status, 201, "{}", b_stream.text);

    // A's event goes first and its deliveries hang in the black hole...
    let a_stream = app.create_stream(json!({"name": "a"})).await;
    set_active(&app, a_stream["id"].as_str().unwrap(), true).await;
    eventually(Duration::from_secs(10), || async {
        (hole.open.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await
    .expect("A's deliveries reach the black hole");

    // ...and B's event is delivered at once, not after A's backlog of timeouts.
    let emitted = Instant::now();
    let started = app
        .call(
            Some(&b_admin),
            Method::PUT,
            &format!(
                "/stream/{}/setactive",
                b_stream.json["id"].as_str().unwrap()
            ),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(started.status, 204, "{}", started.text);
    let got = receiver.wait_for(1, Duration::from_secs(60)).await;
    let waited = got[0].at.saturating_duration_since(emitted);
    assert!(
        waited < timeout / 2,
        "B's event waited {waited:?} behind A's silent endpoints (delivery timeout {timeout:?})"
    );
    assert_eq!(got[0].json()["event"], "stream.started");
    let peak = hole.peak.load(Ordering::SeqCst);
    assert!(
        (1..concurrency).contains(&peak),
        "A had {peak} deliveries in flight at once: some, never every slot"
    );
}

/// Two nodes share one PostgreSQL database and claim deliveries at the same time: the fair
/// claim still hands each delivery to one node only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_postgres_deliver_each_event_once() {
    let app = TestApp::spawn_with(Backend::Postgres, |c| c.webhooks.concurrency = 4).await;
    let mut config = app.config.clone();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.rtmp_addr = "127.0.0.1:0".parse().unwrap();
    config.srt_addr = "127.0.0.1:0".parse().unwrap();
    config.webrtc_addr = "127.0.0.1:0".parse().unwrap();
    let second_node = studio_api::app::start(config)
        .await
        .expect("a second node starts");
    let receiver = Receiver::start().await;
    let mut hooks = Vec::new();
    for _ in 0..12 {
        let hook = create_webhook(&app, &receiver.url(), &["stream.started"], json!({})).await;
        hooks.push(hook["id"].as_str().unwrap().to_string());
    }
    let stream = app.create_stream(json!({"name": "cam"})).await;
    set_active(&app, stream["id"].as_str().unwrap(), true).await;
    // Both nodes poll; the second one learns of the event that way.
    receiver
        .wait_for(hooks.len(), Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut delivered_to: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["webhookId"].as_str().unwrap().to_string())
        .collect();
    delivered_to.sort();
    hooks.sort();
    assert_eq!(
        delivered_to, hooks,
        "every webhook gets the event exactly once"
    );
    second_node.stop().await.unwrap();
}
