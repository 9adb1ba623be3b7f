//! What clients are told when the server fails them: enough to act on, nothing of its insides.

use std::time::Duration;

use serde_json::{Value, json};
use studio_tests::receiver::Receiver;
use studio_tests::{Backend, TestApp, eventually};

use crate::live::publish;

/// A recording whose processing fails for a reason inside the server (here its job's scratch
/// directory cannot be created, every attempt) fails with a message that names none of the
/// server's paths, in the API and in the `asset.failed` webhook alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_assets_error_message_names_no_server_path() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Where this node's jobs get their scratch directories: a file in the way makes creating
    // them fail.
    let data_dir = app.config.data_dir.clone();
    let runner = app.server.as_ref().unwrap().state.runner().config().clone();
    std::fs::create_dir_all(&runner.scratch_dir).unwrap();
    std::fs::write(runner.scratch_dir.join(&runner.node_id), b"in the way").unwrap();
    let receiver = Receiver::start().await;
    let hook = app
        .post(
            "/webhook",
            json!({"name": "failures", "url": receiver.url(), "events": ["asset.failed"]}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let stream = app
        .create_stream(json!({"name": "recorded", "record": true}))
        .await;
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 3);
    assert!(ffmpeg.wait().await.unwrap().success());

    // Three attempts, 5 s and 10 s apart.
    let failed = eventually(Duration::from_secs(45), || async {
        let assets = app.get("/asset").await.json;
        let asset = assets.as_array()?.first()?.clone();
        (asset["status"]["phase"] == "failed").then_some(asset)
    })
    .await
    .expect("the recording fails");
    let message = failed["status"]["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("a failed asset says why: {failed}"));
    let event = receiver.wait_for(1, Duration::from_secs(10)).await;
    let snapshot: Value = event[0].json()["payload"]["asset"]["snapshot"].clone();
    for (where_, shown) in [
        ("GET /asset", message),
        (
            "asset.failed",
            snapshot["status"]["errorMessage"]
                .as_str()
                .unwrap_or_default(),
        ),
    ] {
        assert!(!shown.is_empty(), "{where_}: no errorMessage");
        for internal in [data_dir.to_str().unwrap(), "/tmp", "scratch"] {
            assert!(
                !shown.contains(internal),
                "{where_}: errorMessage {shown:?} exposes {internal:?}"
            );
        }
    }
}
