//! API conventions every resource shares: authentication, errors, paging, filters, health, metrics.

use reqwest::Method;
use serde_json::json;
use studio_tests::{Backend, TestApp, on_both_databases, urlencode};

on_both_databases!(
    authentication_errors,
    error_bodies_name_the_field,
    paging_filters_and_order,
    health_metrics_and_docs,
    nul_characters_are_refused_not_stored,
);

async fn authentication_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.call(None, Method::GET, "/stream", None)
        .await
        .assert_error(401, "not authenticated");
    let secret_guess = "0f3c9a4e-1111-4222-8333-944455556666";
    let unknown = app
        .call(Some(secret_guess), Method::GET, "/stream", None)
        .await;
    unknown.assert_error(401, "invalid API key");
    assert!(
        !unknown.text.contains(secret_guess),
        "the key is never echoed"
    );
    let basic = app
        .http
        .get(app.url("/stream"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let body: serde_json::Value = basic.json().await.unwrap();
    assert_eq!(
        body["errors"][0],
        "unsupported authorization header scheme: Basic"
    );
    // The scheme is case-insensitive.
    let lower = app
        .http
        .get(app.url("/stream"))
        .header("authorization", format!("bearer {}", app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
    // Using a key records when it was last seen.
    let seen = studio_tests::eventually(std::time::Duration::from_secs(5), || async {
        let keys = app
            .call(Some(&app.admin_key), Method::GET, "/api-token", None)
            .await
            .json;
        let key = keys
            .as_array()?
            .iter()
            .find(|k| k["name"] == "test key")?
            .clone();
        (key["lastSeen"].as_i64()? > 0).then_some(key)
    })
    .await;
    assert!(seen.is_some(), "lastSeen of the used key is set");
}

async fn nul_characters_are_refused_not_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get("/stream/%00").await.assert_error(400, "NUL");
    app.get("/stream?filters=%00")
        .await
        .assert_error(400, "NUL");
    app.post("/stream", json!({"name": "a\u{0}b"}))
        .await
        .assert_error(422, "NUL");
    app.post(
        "/webhook",
        json!({"name": "x\u{0}", "url": "https://example.com", "events": ["stream.idle"]}),
    )
    .await
    .assert_error(422, "NUL");
    assert_eq!(
        app.get("/stream").await.json,
        json!([]),
        "nothing was stored"
    );
}

async fn error_bodies_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app
        .post("/stream", json!({"name": "x", "profiles": [{"name": "p", "width": 100, "height": 720, "bitrate": 1000, "fps": 30}]}))
        .await;
    reply.assert_error(422, "profiles[0].width must be >= 128");
    app.post("/stream", json!({"name": "x", "colour": "red"}))
        .await
        .assert_error(422, "unknown field `colour`");
    app.post("/stream", json!({"profiles": []}))
        .await
        .assert_error(422, "missing field `name`");
    app.post("/stream", json!({"name": 5}))
        .await
        .assert_error(422, "name: invalid type");
    let not_json = app
        .http
        .post(app.url("/stream"))
        .bearer_auth(&app.key)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    let broken = app
        .http
        .post(app.url("/stream"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 422);
    // Unknown routes and methods answer JSON errors too.
    app.get("/no-such-thing")
        .await
        .assert_error(404, "not found");
    let wrong_method = app
        .call(Some(&app.key), Method::PUT, "/stream", Some(json!({})))
        .await;
    assert_eq!(wrong_method.status, 405);
    assert!(!wrong_method.errors().is_empty());
    // A body over the limit is refused, not buffered.
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_big = app.post("/stream", json!({"name": huge})).await;
    assert!(
        too_big.status == 413 || too_big.status == 422,
        "{}",
        too_big.status
    );
}

async fn paging_filters_and_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..5 {
        app.create_stream(json!({"name": format!("cam-{i}"), "record": i % 2 == 0}))
            .await;
    }
    // A full page has a Link to the next one; the last page has none.
    let first = app.get("/stream?limit=2&count=1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json.as_array().unwrap().len(), 2);
    assert_eq!(first.header("x-total-count"), Some("5"));
    let link = first.header("link").expect("a next link on a full page");
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    assert!(next.starts_with(&app.base), "links are absolute: {next}");
    let mut seen: Vec<String> = first
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let mut url = next.to_string();
    loop {
        let page = app
            .http
            .get(&url)
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let link = page
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let items: Vec<serde_json::Value> = page.json().await.unwrap();
        seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        match link {
            Some(l) => {
                url = l
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "pages cover every stream once");
    let last = app.get("/stream?limit=10").await;
    assert!(
        last.header("link").is_none(),
        "no next link when the page is not full"
    );
    let exact = app.get("/stream?limit=5").await;
    assert_eq!(exact.json.as_array().unwrap().len(), 5);
    assert!(
        exact.header("link").is_none(),
        "no next link when nothing follows a full page"
    );

    // Filters and order.
    let recorded = app
        .get(&format!(
            "/stream?filters={}",
            urlencode(r#"[{"id":"record","value":true}]"#)
        ))
        .await;
    assert_eq!(recorded.json.as_array().unwrap().len(), 3);
    let named = app
        .get(&format!(
            "/stream?filters={}",
            urlencode(r#"[{"id":"name","value":"CAM-3"}]"#)
        ))
        .await;
    assert_eq!(
        named.json[0]["name"], "cam-3",
        "name filters are case-insensitive substrings"
    );
    let ordered = app.get("/stream?order=name-false").await;
    let names: Vec<&str> = ordered
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cam-0", "cam-1", "cam-2", "cam-3", "cam-4"]);
    let range = app
        .get(&format!(
            "/stream?filters={}",
            urlencode(r#"[{"id":"createdAt","value":{"gt":0}}]"#)
        ))
        .await;
    assert_eq!(range.json.as_array().unwrap().len(), 5);
    app.get(&format!(
        "/stream?filters={}",
        urlencode(r#"[{"id":"streamKey","value":"x"}]"#)
    ))
    .await
    .assert_error(400, "unknown field");
    app.get("/stream?filters=notjson")
        .await
        .assert_error(400, "error parsing filters");
    app.get("/stream?limit=zero")
        .await
        .assert_error(422, "limit must be an integer");
    app.get("/stream?cursor=bogus")
        .await
        .assert_error(422, "cursor");
}

async fn health_metrics_and_docs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = app.call(None, Method::GET, "/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["ok"], true);
    app.get("/stream").await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("route=\"/api/stream\""),
        "requests are labelled by route template"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    let doc = app.call(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["paths"]["/stream"]["post"].is_object());
    let ui = app
        .http
        .get(format!("{}/api/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    let html = ui.text().await.unwrap();
    assert!(
        html.contains("swagger-ui"),
        "the docs page is served offline"
    );
}
