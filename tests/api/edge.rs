//! The HTTP edge: what the server does with requests and connections before any handler runs.

use reqwest::StatusCode;
use studio_tests::{Backend, Reply, TestApp, on_both_databases};

on_both_databases!(two_authorization_headers_are_refused);

async fn two_authorization_headers_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.other_tenant("bob").await;
    // Both orders, both keys valid: which one counts would depend on who reads the request.
    for (first, second) in [(&app.key, &other.key), (&other.key, &app.key)] {
        for path in ["/stream", "/playback/anything"] {
            let reply = Reply::from(
                app.http
                    .get(app.url(path))
                    .header("authorization", format!("Bearer {first}"))
                    .header("authorization", format!("Bearer {second}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            reply.assert_error(400, "one Authorization header");
        }
    }
    // One header still works.
    assert_eq!(app.get("/stream").await.status, StatusCode::OK);
}
