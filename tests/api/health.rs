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

/// Starts the test run's S3 server binary (s3s-fs) of its own on `port`, over `dir`.
fn start_s3_server(
    s3: &studio_tests::TestS3,
    port: u16,
    dir: &std::path::Path,
) -> tokio::process::Child {
    let binary = std::env::var("STUDIO_TEST_S3_SERVER").expect(
        "STUDIO_TEST_S3_SERVER is not set: run scripts/test, which names the s3s-fs binary it built",
    );
    tokio::process::Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--access-key",
            &s3.access_key,
            "--secret-key",
            &s3.secret_key,
        ])
        .arg(dir)
        .kill_on_drop(true)
        .spawn()
        .expect("starting s3s-fs")
}

async fn wait_for_port(port: u16) {
    eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await
    .expect("the S3 server listens");
}

/// On S3 storage the same probe goes to the bucket: an S3 server that goes away turns the node
/// unhealthy with the reason, and healthy again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_the_s3_server() {
    let shared = studio_tests::TestS3::from_env();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = studio_tests::TempDir::new();
    let own = studio_tests::TestS3 {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..shared.clone()
    };
    let mut server = start_s3_server(&own, port, &dir.0);
    wait_for_port(port).await;
    let bucket = own.fresh_bucket().await;
    let app = TestApp::spawn_with(Backend::Sqlite, |c| own.configure(c, &bucket, "media")).await;
    assert_eq!(healthz(&app).await.status, 200);

    server.kill().await.unwrap();
    let unhealthy = eventually(Duration::from_secs(20), || async {
        let reply = healthz(&app).await;
        (reply.status == 503).then_some(reply)
    })
    .await
    .expect("healthz turns 503 when the S3 server is gone");
    assert!(
        unhealthy.text.contains("the media store cannot be written"),
        "{}",
        unhealthy.text
    );

    let _server = start_s3_server(&own, port, &dir.0);
    wait_for_port(port).await;
    eventually(Duration::from_secs(20), || async {
        (healthz(&app).await.status == 200).then_some(())
    })
    .await
    .expect("healthz recovers once the S3 server is back");
}
