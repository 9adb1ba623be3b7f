//! `/api/healthz` tells a load balancer whether this node can do its work: its database
//! answers and its media store takes writes.

use std::time::Duration;

use reqwest::Method;
use studio_tests::{Backend, Reply, TestApp, eventually, on_both_databases};

on_both_databases!(healthz_reports_an_unwritable_media_store_and_its_recovery);

async fn healthz(app: &TestApp) -> Reply {
    app.call(None, Method::GET, "/healthz", None).await
}

/// Tests run as root, whom file modes do not stop: the media directory is replaced by a
/// regular file, which no write below it can get through.
async fn healthz_reports_an_unwritable_media_store_and_its_recovery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(healthz(&app).await.status, 200);

    let media = app.config.data_dir.join("media");
    let moved = app.config.data_dir.join("media.moved");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::rename(&media, &moved).unwrap();
    std::fs::write(&media, b"not a directory").unwrap();
    let unhealthy = eventually(Duration::from_secs(10), || async {
        let reply = healthz(&app).await;
        (reply.status == 503).then_some(reply)
    })
    .await
    .expect("healthz turns 503 when the media store cannot be written");
    unhealthy.assert_error(503, "the media store cannot be written");
    assert!(
        !unhealthy
            .text
            .contains(&*app.config.data_dir.to_string_lossy()),
        "no internal path: {}",
        unhealthy.text
    );

    std::fs::remove_file(&media).unwrap();
    std::fs::rename(&moved, &media).unwrap();
    let recovered = eventually(Duration::from_secs(10), || async {
        (healthz(&app).await.status == 200).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "healthz recovers once the store is fixed"
    );
}
