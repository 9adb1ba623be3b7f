//! Video on demand end to end: a file made by ffmpeg is uploaded (direct `PUT` to the URL of
//! `request-upload`) or imported from a local HTTP server (`upload/url`), and becomes an asset
//! whose HLS ladder and static MP4 ffmpeg plays without an error, lasting as long as the file,
//! with its size, digests, `videoSpec`, playback info and webhooks. On SQLite and local disk, on
//! PostgreSQL, and on PostgreSQL with S3.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use studio_tests::receiver::Receiver;
use studio_tests::{
    Backend, Storage, TempDir, TestApp, assert_decodes_cleanly, eventually, on_both_databases,
};
use tokio::process::Command;

on_both_databases!(
    an_uploaded_file_becomes_a_playable_asset,
    tus_uploads_resume_and_become_playable_assets,
    a_tus_upload_resumes_after_a_restart_and_expired_ones_go,
    assets_are_changed_and_deleted_with_their_media,
    the_transcode_api_writes_into_the_callers_bucket,
    an_audio_only_file_becomes_a_playable_asset,
    a_url_import_becomes_a_playable_asset,
    imports_that_cannot_work_fail_with_the_reason
);

mod on_s3_storage {
    use studio_tests::{Backend, Storage};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn assets_are_changed_and_deleted_with_their_media_postgres() {
        super::assets_are_changed_and_deleted_with_their_media_on(Backend::Postgres, Storage::S3)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tus_uploads_resume_and_become_playable_assets_postgres() {
        super::tus_uploads_resume_and_become_playable_assets_on(Backend::Postgres, Storage::S3)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_uploaded_file_becomes_a_playable_asset_postgres() {
        super::an_uploaded_file_becomes_a_playable_asset_on(Backend::Postgres, Storage::S3).await
    }
}

const SECONDS: f64 = 6.0;

/// `SECONDS` of 854x480 H.264 (a keyframe every second) and AAC, as an MP4 in `dir`.
pub(crate) async fn source_file(dir: &Path) -> PathBuf {
    encoded_file(dir, "upload.mp4", "854x480", SECONDS).await
}

/// `seconds` of `size` (`WxH`) H.264 in 4:2:0 (a keyframe every second) and AAC, as MP4 `name`
/// in `dir`.
pub(crate) async fn encoded_file(dir: &Path, name: &str, size: &str, seconds: f64) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=30")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-c:a", "aac",
        ])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

async fn ffprobe(url: &str, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            entries,
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls the asset until it is ready or failed, checking that its progress never goes back.
pub(crate) async fn finished(app: &TestApp, id: &str) -> Value {
    let last = std::sync::Mutex::new(0.0f64);
    eventually(Duration::from_secs(120), || async {
        let asset = app.get(&format!("/asset/{id}")).await.json;
        if let Some(progress) = asset["status"]["progress"].as_f64() {
            let mut last = last.lock().unwrap();
            assert!(
                progress + 1e-9 >= *last,
                "progress went back: {progress} after {last}"
            );
            *last = progress;
        }
        matches!(asset["status"]["phase"].as_str(), Some("ready" | "failed")).then_some(asset)
    })
    .await
    .expect("the asset finishes")
}

/// What a user checks of a ready asset: the HLS ladder and the MP4 play cleanly for the length
/// of the file, the playback info lists the MP4 then the HLS.
async fn assert_playable(app: &TestApp, asset: &Value) {
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let hls = asset["playbackUrl"].as_str().expect("a playback URL");
    assert_decodes_cleanly(hls).await;
    let master = reqwest::get(hls).await.unwrap().text().await.unwrap();
    assert!(master.contains("source/index.m3u8"), "{master}");
    assert!(
        master.contains("360p0/index.m3u8"),
        "the 360p rendition: {master}"
    );
    assert!(!master.contains("720p0"), "never upscaled: {master}");
    let duration: f64 = ffprobe(hls, "format=duration").await.parse().unwrap();
    assert!((duration - SECONDS).abs() <= 0.5, "HLS lasts {duration} s");
    let rendition = hls.replace("index.m3u8", "360p0/index.m3u8");
    assert_eq!(
        ffprobe(&rendition, "stream=height").await.lines().next(),
        Some("360")
    );

    let mp4 = asset["downloadUrl"].as_str().expect("a download URL");
    assert!(mp4.ends_with("/static360p0.mp4"), "{mp4}");
    assert_decodes_cleanly(mp4).await;
    let duration: f64 = ffprobe(mp4, "format=duration").await.parse().unwrap();
    assert!((duration - SECONDS).abs() <= 0.5, "MP4 lasts {duration} s");

    let info = app
        .call(
            None,
            reqwest::Method::GET,
            &format!("/playback/{}", asset["playbackId"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.json["type"], "vod");
    let sources = info.json["meta"]["source"].as_array().unwrap();
    assert_eq!(sources[0]["hrn"], "MP4", "{}", info.json);
    assert_eq!(sources[0]["height"], 360);
    assert!(sources[0]["size"].as_i64().unwrap() > 0);
    assert!(sources[0]["bitrate"].as_i64().unwrap() > 0);
    assert_eq!(sources[1]["hrn"], "HLS (TS)");
    assert_eq!(sources[2]["hrn"], "Thumbnails", "{}", info.json);
    assert_eq!(sources[2]["type"], "text/vtt");
    let vtt_url = sources[2]["url"].as_str().unwrap();
    let vtt = reqwest::get(vtt_url).await.unwrap().text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    let first = vtt
        .lines()
        .find(|l| l.ends_with(".jpg"))
        .unwrap_or_else(|| panic!("no picture in {vtt}"));
    assert!(vtt.contains("00:00:00.000 --> "), "{vtt}");
    let picture = vtt_url.replace("thumbnails.vtt", first);
    let response = reqwest::get(&picture).await.unwrap();
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(
        ffprobe(&picture, "stream=width,height").await,
        "320,180",
        "a 320 px wide preview of the 854x480 source"
    );

    let spec = app
        .get(&format!(
            "/asset/{}?details=1",
            asset["id"].as_str().unwrap()
        ))
        .await
        .json["videoSpec"]
        .clone();
    assert!(
        (spec["duration"].as_f64().unwrap() - SECONDS).abs() <= 0.2,
        "{spec}"
    );
    let tracks = spec["tracks"].as_array().unwrap();
    assert!(
        tracks
            .iter()
            .any(|t| t["type"] == "video" && t["codec"] == "h264" && t["width"] == 854)
    );
    assert!(
        tracks
            .iter()
            .any(|t| t["type"] == "audio" && t["codec"] == "aac")
    );
}

async fn an_uploaded_file_becomes_a_playable_asset(backend: Backend) {
    an_uploaded_file_becomes_a_playable_asset_on(backend, Storage::LocalDir).await
}

pub(crate) async fn an_uploaded_file_becomes_a_playable_asset_on(
    backend: Backend,
    storage: Storage,
) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let dir = TempDir::new();
    let file = source_file(&dir.0).await;
    let bytes = std::fs::read(&file).unwrap();
    let receiver = Receiver::start().await;
    app.post(
        "/webhook",
        json!({"name": "vod", "url": receiver.url(), "events": ["asset.created", "asset.ready", "task.completed"]}),
    )
    .await;

    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": "my upload", "staticMp4": true}),
        )
        .await;
    assert_eq!(requested.status, 200, "{}", requested.text);
    let asset = &requested.json["asset"];
    assert_eq!(asset["status"]["phase"], "uploading");
    assert_eq!(asset["source"]["type"], "directUpload");
    let id = asset["id"].as_str().unwrap().to_string();
    let url = requested.json["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&app.url("/asset/upload/direct?token=")),
        "{url}"
    );
    assert!(
        requested.json["tusEndpoint"]
            .as_str()
            .unwrap()
            .contains("/api/asset/upload/tus?token=")
    );
    let task_id = requested.json["task"]["id"].as_str().unwrap().to_string();
    let task = app.get(&format!("/task/{task_id}")).await.json;
    assert_eq!(task["type"], "upload");
    assert_eq!(
        task["status"]["phase"], "pending",
        "held until the file arrives: {task}"
    );

    let http = reqwest::Client::new();
    // A token that is not the URL's is refused.
    let forged = http
        .put(url.replace("token=", "token=x"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let put = http.put(&url).body(bytes.clone()).send().await.unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let again = http.put(&url).body(bytes.clone()).send().await.unwrap();
    assert_eq!(again.status(), 422, "a second upload of the same asset");

    let asset = finished(&app, &id).await;
    assert_playable(&app, &asset).await;
    assert_eq!(asset["size"], bytes.len() as u64);
    let hashes: Vec<(String, String)> = asset["hash"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["algorithm"].as_str().unwrap().into(),
                h["hash"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        hashes.contains(&("sha256".into(), hex::encode(sha2::Sha256::digest(&bytes)))),
        "{hashes:?}"
    );
    assert!(hashes.iter().any(|(a, h)| a == "md5" && h.len() == 32));
    // The task completed in the transaction that made the asset ready.
    let task = app.get(&format!("/task/{task_id}")).await.json;
    assert_eq!(task["status"]["phase"], "completed", "{task}");
    assert_eq!(task["status"]["progress"], 1.0);

    let delivered = receiver.wait_for(3, Duration::from_secs(10)).await;
    let events: Vec<String> = delivered
        .iter()
        .map(|d| d.json()["event"].as_str().unwrap().to_string())
        .collect();
    for event in ["asset.created", "asset.ready", "task.completed"] {
        assert!(
            events.iter().any(|e| e == event),
            "{event} missing from {events:?}"
        );
    }
    let ready = delivered
        .iter()
        .find(|d| d.json()["event"] == "asset.ready")
        .unwrap()
        .json();
    assert_eq!(ready["payload"]["asset"]["id"], id.as_str());
    assert_eq!(
        ready["payload"]["asset"]["snapshot"]["status"]["phase"],
        "ready"
    );
}

/// Serves `file` at `/video.mp4`, a text file at `/notes.mp4`, and 404 elsewhere.
pub(crate) async fn file_server(file: PathBuf) -> SocketAddr {
    use axum::routing::get;
    let bytes = std::fs::read(file).unwrap();
    let app = axum::Router::new()
        .route("/video.mp4", get(move || async move { bytes.clone() }))
        .route("/notes.mp4", get(|| async { "these are not video frames" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn a_url_import_becomes_a_playable_asset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = TempDir::new();
    let server = file_server(source_file(&dir.0).await).await;
    let url = format!("http://{server}/video.mp4");
    let created = app
        .post(
            "/asset/upload/url",
            json!({"name": "imported", "url": url, "staticMp4": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.json["asset"]["source"],
        json!({"type": "url", "url": url})
    );
    assert_eq!(created.json["asset"]["status"]["phase"], "waiting");
    let id = created.json["asset"]["id"].as_str().unwrap().to_string();
    // The same URL again while the first is at work: the same asset and task.
    let again = app
        .post("/asset/upload/url", json!({"name": "imported", "url": url}))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["asset"]["id"], id.as_str());
    assert_eq!(again.json["task"]["id"], created.json["task"]["id"]);

    let asset = finished(&app, &id).await;
    assert_playable(&app, &asset).await;
    let listed = app
        .get(&format!(
            "/asset?sourceUrl={}",
            studio_tests::urlencode(&url)
        ))
        .await
        .json;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

async fn imports_that_cannot_work_fail_with_the_reason(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = TempDir::new();
    let server = file_server(source_file(&dir.0).await).await;
    let receiver = Receiver::start().await;
    app.post(
        "/webhook",
        json!({"name": "failures", "url": receiver.url(), "events": ["asset.failed"]}),
    )
    .await;
    for (path, reason) in [
        ("/missing.mp4", "404 Not Found"),
        ("/notes.mp4", "could not be read as media"),
    ] {
        let url = format!("http://{server}{path}");
        let created = app
            .post("/asset/upload/url", json!({"name": "broken", "url": url}))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json["asset"]["id"].as_str().unwrap().to_string();
        let asset = finished(&app, &id).await;
        assert_eq!(asset["status"]["phase"], "failed", "{asset}");
        let message = asset["status"]["errorMessage"].as_str().unwrap();
        assert!(message.contains(reason), "{path}: {message}");
        let task = app
            .get(&format!(
                "/task/{}",
                created.json["task"]["id"].as_str().unwrap()
            ))
            .await
            .json;
        assert_eq!(task["status"]["phase"], "failed", "{task}");
    }
    let delivered = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 2);

    // Refused before anything is made.
    for (body, status, fragment) in [
        (
            json!({"name": "x", "url": "ftp://example.com/a.mp4"}),
            422,
            "url must be",
        ),
        (json!({"name": "x"}), 422, "url is required"),
        (
            json!({"name": "x", "url": "http://example.com/a.mp4", "profiles": []}),
            400,
            "at least one profile",
        ),
        (
            json!({"name": "x", "url": "http://example.com/a.mp4", "encryption": {"encryptedKey": "abc"}}),
            422,
            "encryption",
        ),
    ] {
        app.post("/asset/upload/url", body)
            .await
            .assert_error(status, fragment);
    }
    app.post("/asset/request-upload", json!({"staticMp4": true}))
        .await
        .assert_error(422, "name");
}

/// Uploads are bounded: a body past `vod.max_upload_bytes` is refused with 413, and the asset
/// can still be uploaded within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_size_limit_are_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.vod.max_upload_bytes = 1000).await;
    let requested = app
        .post("/asset/request-upload", json!({"name": "big"}))
        .await;
    let url = requested.json["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let put = http.put(&url).body(vec![0u8; 5000]).send().await.unwrap();
    assert_eq!(put.status(), 413);
    // Without a length up front (chunked), the limit still holds.
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![0u8; 500])));
    let put = http
        .put(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 413);
    let asset = app
        .get(&format!(
            "/asset/{}",
            requested.json["asset"]["id"].as_str().unwrap()
        ))
        .await
        .json;
    assert_eq!(
        asset["status"]["phase"], "uploading",
        "nothing was taken: {asset}"
    );
}

/// Requests an upload and returns (asset id, tusEndpoint).
async fn request_upload(app: &TestApp, name: &str) -> (String, String) {
    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": name, "staticMp4": true}),
        )
        .await;
    assert_eq!(requested.status, 200, "{}", requested.text);
    (
        requested.json["asset"]["id"].as_str().unwrap().to_string(),
        requested.json["tusEndpoint"].as_str().unwrap().to_string(),
    )
}

async fn tus_uploads_resume_and_become_playable_assets(backend: Backend) {
    tus_uploads_resume_and_become_playable_assets_on(backend, Storage::LocalDir).await
}

/// tus-js-client uploads in chunks, is aborted part way and resumes (findPreviousUploads) where
/// the server says it got to; tuspy uploads another (with its empty Upload-Metadata). Both
/// assets become playable, with the file's digests.
pub(crate) async fn tus_uploads_resume_and_become_playable_assets_on(
    backend: Backend,
    storage: Storage,
) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let dir = TempDir::new();
    let file = source_file(&dir.0).await;
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.len() > 4 * 32 * 1024,
        "the file spans several chunks: {}",
        bytes.len()
    );

    let (js_asset, endpoint) = request_upload(&app, "tus-js-client").await;
    let storage_file = dir.0.join("tus-urls.json");
    let out = crate::clients::run_client_with(
        &app,
        "node".into(),
        &[
            "tests/sdk/js/tus-upload.mjs",
            &endpoint,
            file.to_str().unwrap(),
            storage_file.to_str().unwrap(),
        ],
        &app.key,
        &[],
    )
    .await;
    let report: Value = serde_json::from_str(out.lines().last().unwrap())
        .unwrap_or_else(|_| panic!("tus-upload.mjs printed {out}"));
    let resumed_at = report["resumedAt"].as_u64().unwrap_or(0);
    assert!(
        resumed_at > 0 && resumed_at < bytes.len() as u64,
        "resumed from the server's offset, not from 0: {report}"
    );
    assert!(
        report["url"]
            .as_str()
            .unwrap()
            .starts_with(&app.url("/asset/upload/tus/"))
    );

    let (py_asset, endpoint) = request_upload(&app, "tuspy").await;
    crate::clients::run_client_with(
        &app,
        crate::clients::python(),
        &[
            "tests/sdk/python/tus_upload.py",
            &endpoint,
            file.to_str().unwrap(),
        ],
        &app.key,
        &[],
    )
    .await;

    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    for id in [js_asset, py_asset] {
        let asset = finished(&app, &id).await;
        assert_playable(&app, &asset).await;
        assert_eq!(asset["size"], bytes.len() as u64);
        assert!(
            asset["hash"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["algorithm"] == "sha256" && h["hash"] == sha256.as_str()),
            "{asset}"
        );
    }
}

/// The protocol's rules, as a TUS client relies on them: OPTIONS says what is supported, the
/// version is required, a wrong offset is 409, creation-with-upload stores the first bytes,
/// termination removes the upload, Upload-Length past the limit is 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_follows_the_protocol() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.vod.max_upload_bytes = 1_000_000).await;
    let (asset, endpoint) = request_upload(&app, "protocol").await;
    let http = reqwest::Client::new();
    let tus = |request: reqwest::RequestBuilder| request.header("Tus-Resumable", "1.0.0");

    let options = http
        .request(reqwest::Method::OPTIONS, &endpoint)
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 204);
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert_eq!(options.headers()["tus-max-size"], "1000000");
    let extensions = options.headers()["tus-extension"]
        .to_str()
        .unwrap()
        .to_string();
    for ext in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
    ] {
        assert!(extensions.split(',').any(|e| e == ext), "{extensions}");
    }

    let unversioned = http
        .post(&endpoint)
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(unversioned.status(), 412);
    let too_big = tus(http.post(&endpoint))
        .header("Upload-Length", "2000000")
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let forged = tus(http.post(endpoint.replace("token=", "token=x")))
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // Creation with upload: the first 4 bytes come with the POST.
    let created = tus(http.post(&endpoint))
        .header("Upload-Length", "10")
        .header("Upload-Metadata", "")
        .header("Content-Type", "application/offset+octet-stream")
        .body("abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["upload-offset"], "4");
    assert!(created.headers().contains_key("upload-expires"));
    let location = created.headers()["location"].to_str().unwrap().to_string();

    let wrong = tus(http.patch(&location))
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 409);
    let untyped = tus(http.patch(&location))
        .header("Upload-Offset", "4")
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status(), 415);
    let more = tus(http.patch(&location))
        .header("Upload-Offset", "4")
        .header("Content-Type", "application/offset+octet-stream")
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(more.status(), 204);
    assert_eq!(more.headers()["upload-offset"], "8");
    let head = tus(http.head(&location)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], "8");
    assert_eq!(head.headers()["upload-length"], "10");
    assert_eq!(head.headers()["cache-control"], "no-store");

    let terminated = tus(http.delete(&location)).send().await.unwrap();
    assert_eq!(terminated.status(), 204);
    let head = tus(http.head(&location)).send().await.unwrap();
    assert_eq!(head.status(), 404);
    let unknown = tus(http.head(app.url("/asset/upload/tus/0123456789abcdef0123456789abcdef")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let asset = app.get(&format!("/asset/{asset}")).await.json;
    assert_eq!(asset["status"]["phase"], "uploading", "{asset}");
}

async fn tus(request: reqwest::RequestBuilder) -> reqwest::Response {
    request
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap()
}

/// Half an upload, a server restart, the other half: the upload continues where the database
/// says it got to and the asset becomes ready. An upload past its expiry is refused (410) and
/// removed with its pieces.
async fn a_tus_upload_resumes_after_a_restart_and_expired_ones_go(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let dir = TempDir::new();
    let bytes = std::fs::read(source_file(&dir.0).await).unwrap();
    let (id, endpoint) = request_upload(&app, "restart").await;
    let http = reqwest::Client::new();
    let created = tus(http
        .post(&endpoint)
        .header("Upload-Length", bytes.len().to_string()))
    .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let half = bytes.len() / 2;
    let first = tus_patch(&http, &location, 0, bytes[..half].to_vec()).await;
    assert_eq!(first.status(), 204);

    app.restart().await;
    let location = location.replace(
        &location[..location.find("/api/").unwrap()],
        app.url("").trim_end_matches("/api"),
    );
    let head = tus(http.head(&location)).await;
    assert_eq!(head.headers()["upload-offset"], half.to_string().as_str());
    let rest = tus_patch(&http, &location, half as u64, bytes[half..].to_vec()).await;
    assert_eq!(rest.status(), 204);
    let asset = finished(&app, &id).await;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    assert_eq!(asset["size"], bytes.len() as u64);

    // An upload left half done past its expiry.
    let (_, endpoint) = request_upload(&app, "abandoned").await;
    let created = tus(http.post(&endpoint).header("Upload-Length", "100")).await;
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let patched = tus_patch(&http, &location, 0, vec![7u8; 40]).await;
    assert_eq!(patched.status(), 204);
    let state = app.server.as_ref().unwrap().state.clone();
    let upload_id = location.rsplit('/').next().unwrap().to_string();
    let part: String = sqlx::query_scalar("SELECT object_key FROM tus_parts WHERE upload_id = $1")
        .bind(&upload_id)
        .fetch_one(state.db().reader())
        .await
        .unwrap();
    assert!(state.media_store().get(&part).await.unwrap().is_some());
    sqlx::query("UPDATE tus_uploads SET expires_at = 0 WHERE id = $1")
        .bind(&upload_id)
        .execute(state.db().writer())
        .await
        .unwrap();
    assert_eq!(tus(http.head(&location)).await.status(), 410);
    studio_api::assets::tus::expire(&state).await.unwrap();
    assert_eq!(tus(http.head(&location)).await.status(), 404);
    assert!(
        state.media_store().get(&part).await.unwrap().is_none(),
        "the expired upload's pieces are removed"
    );
}

/// The keys of the app's media store below `folder` (the bucket's, or the local directory's).
async fn stored_under(app: &TestApp, folder: &str) -> Vec<String> {
    match &app.s3_bucket {
        Some(bucket) => studio_tests::TestS3::from_env()
            .keys(bucket)
            .await
            .into_iter()
            .filter(|k| k.starts_with(&format!("media/{folder}/")))
            .collect(),
        None => {
            let root = app.config.data_dir.join("media").join(folder);
            let mut found = Vec::new();
            let mut dirs = vec![root];
            while let Some(dir) = dirs.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        dirs.push(entry.path());
                    } else {
                        found.push(entry.path().display().to_string());
                    }
                }
            }
            found
        }
    }
}

async fn assets_are_changed_and_deleted_with_their_media(backend: Backend) {
    assets_are_changed_and_deleted_with_their_media_on(backend, Storage::LocalDir).await
}

/// PATCH changes a ready asset's name and creator (`asset.updated`) under Studio's rules;
/// DELETE makes it unplayable at once (`asset.deleted`) and its media leaves the store.
pub(crate) async fn assets_are_changed_and_deleted_with_their_media_on(
    backend: Backend,
    storage: Storage,
) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let dir = TempDir::new();
    let bytes = std::fs::read(source_file(&dir.0).await).unwrap();
    let receiver = Receiver::start().await;
    app.post(
        "/webhook",
        json!({"name": "changes", "url": receiver.url(), "events": ["asset.updated", "asset.deleted"]}),
    )
    .await;
    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": "before", "staticMp4": true}),
        )
        .await;
    let id = requested.json["asset"]["id"].as_str().unwrap().to_string();
    // Not ready yet: nothing may change.
    app.patch(&format!("/asset/{id}"), json!({"name": "early"}))
        .await
        .assert_error(422, "only ready assets");
    let put = reqwest::Client::new()
        .put(requested.json["url"].as_str().unwrap())
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let asset = finished(&app, &id).await;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let pid = asset["playbackId"].as_str().unwrap().to_string();

    let patched = app
        .patch(
            &format!("/asset/{id}"),
            json!({"name": "after", "creatorId": "creator-1"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["name"], "after");
    assert_eq!(patched.json["creatorId"]["value"], "creator-1");
    assert_eq!(app.get(&format!("/asset/{id}")).await.json["name"], "after");
    app.patch(
        &format!("/asset/{id}"),
        json!({"playbackPolicy": {"type": "jwt"}}),
    )
    .await
    .assert_error(422, "cannot switch between public and gated");
    app.patch(&format!("/asset/{id}"), json!({"storage": {"ipfs": true}}))
        .await
        .assert_error(422, "IPFS");
    let other = app.other_tenant("other").await;
    assert_eq!(
        app.call(
            Some(&other.key),
            reqwest::Method::PATCH,
            &format!("/asset/{id}"),
            Some(json!({"name": "theirs"}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.call(
            Some(&other.key),
            reqwest::Method::DELETE,
            &format!("/asset/{id}"),
            None
        )
        .await
        .status,
        404
    );

    assert!(!stored_under(&app, &format!("hls/{pid}")).await.is_empty());
    assert!(
        !stored_under(&app, &format!("uploads/{id}"))
            .await
            .is_empty()
    );
    let deleted = app.delete(&format!("/asset/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // Unplayable at once.
    assert_eq!(app.get(&format!("/asset/{id}")).await.status, 404);
    let hls = asset["playbackUrl"].as_str().unwrap();
    assert_eq!(reqwest::get(hls).await.unwrap().status(), 404);
    let mp4 = asset["downloadUrl"].as_str().unwrap();
    assert_eq!(reqwest::get(mp4).await.unwrap().status(), 404);
    assert_eq!(
        app.call(
            None,
            reqwest::Method::GET,
            &format!("/playback/{pid}"),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(app.delete(&format!("/asset/{id}")).await.status, 404);
    // Its media leaves the store.
    let gone = eventually(Duration::from_secs(20), || async {
        (stored_under(&app, &format!("hls/{pid}")).await.is_empty()
            && stored_under(&app, &format!("uploads/{id}"))
                .await
                .is_empty())
        .then_some(())
    })
    .await;
    assert!(gone.is_some(), "the deleted asset's media is still stored");

    // asset.updated when the file arrived and when it was renamed, then asset.deleted.
    let delivered = receiver.wait_for(3, Duration::from_secs(10)).await;
    let events: Vec<String> = delivered
        .iter()
        .map(|d| d.json()["event"].as_str().unwrap().to_string())
        .collect();
    for event in ["asset.updated", "asset.deleted"] {
        assert!(
            events.iter().any(|e| e == event),
            "{event} missing: {events:?}"
        );
    }
}

/// Downloads every object of `bucket` below `prefix/` into `dir`, keeping their paths.
async fn download(s3: &studio_tests::TestS3, bucket: &str, prefix: &str, dir: &Path) {
    let client = s3.client();
    for key in s3.keys(bucket).await {
        let Some(relative) = key.strip_prefix(&format!("{prefix}/")) else {
            continue;
        };
        let object = client
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = object.body.collect().await.unwrap().into_bytes();
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// `POST /transcode` (the SDKs' `transcode.create`): a file from the caller's S3 bucket, or
/// from a URL, becomes HLS and MP4s in the caller's bucket; the credentials never come back
/// and are gone once the task ends.
async fn the_transcode_api_writes_into_the_callers_bucket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s3 = studio_tests::TestS3::from_env();
    let dir = TempDir::new();
    let file = source_file(&dir.0).await;
    let (input, output) = (s3.fresh_bucket().await, s3.fresh_bucket().await);
    s3.client()
        .put_object()
        .bucket(&input)
        .key("in/source.mp4")
        .body(std::fs::read(&file).unwrap().into())
        .send()
        .await
        .unwrap();
    let credentials = json!({"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key});
    let storage = json!({"type": "s3", "endpoint": s3.endpoint, "bucket": output, "credentials": credentials});
    let created = app
        .post(
            "/transcode",
            json!({
                "input": {"type": "s3", "endpoint": s3.endpoint, "bucket": input, "path": "/in/source.mp4", "credentials": credentials},
                "storage": storage,
                "outputs": {"hls": {"path": "/out/hls"}, "mp4": {"path": "/out/mp4"}},
            }),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["type"], "transcode-file");
    assert!(!created.text.contains(&s3.secret_key), "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_string();
    let task = task_finished(&app, &id).await;
    assert_eq!(task["status"]["phase"], "completed", "{task}");
    assert!(!task.to_string().contains(&s3.secret_key), "{task}");
    assert_eq!(
        task["output"]["transcode-file"]["hls"]["path"],
        "out/hls/index.m3u8"
    );
    let secrets: Option<String> =
        sqlx::query_scalar("SELECT secret_params FROM tasks WHERE id = $1")
            .bind(&id)
            .fetch_one(app.server.as_ref().unwrap().state.db().reader())
            .await
            .unwrap();
    assert!(
        secrets.is_none(),
        "the credentials are scrubbed when the task ends"
    );

    let keys = s3.keys(&output).await;
    for key in [
        "out/hls/index.m3u8",
        "out/hls/source/index.m3u8",
        "out/hls/360p0/index.m3u8",
        "out/mp4/static360p0.mp4",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    let local = dir.0.join("out");
    download(&s3, &output, "out", &local).await;
    for media in [
        local.join("hls/index.m3u8"),
        local.join("mp4/static360p0.mp4"),
    ] {
        let path = media.to_str().unwrap();
        assert_decodes_cleanly(path).await;
        let duration: f64 = ffprobe(path, "format=duration").await.parse().unwrap();
        assert!(
            (duration - SECONDS).abs() <= 0.5,
            "{path} lasts {duration} s"
        );
    }

    // From a URL, MP4 only: no HLS is left in the bucket.
    let server = file_server(file).await;
    let mp4_only = app
        .post(
            "/transcode",
            json!({
                "input": {"url": format!("http://{server}/video.mp4")},
                "storage": storage,
                "outputs": {"mp4": {"path": "mp4-only"}},
                "profiles": [{"name": "low", "width": 426, "height": 240, "bitrate": 400000}],
            }),
        )
        .await;
    assert_eq!(mp4_only.status, 200, "{}", mp4_only.text);
    let id = mp4_only.json["id"].as_str().unwrap().to_string();
    let task = task_finished(&app, &id).await;
    assert_eq!(task["status"]["phase"], "completed", "{task}");
    let keys: Vec<String> = s3
        .keys(&output)
        .await
        .into_iter()
        .filter(|k| k.starts_with("mp4-only/"))
        .collect();
    assert_eq!(keys, ["mp4-only/static240p0.mp4"], "{keys:?}");

    for (body, fragment) in [
        (
            json!({"input": {"url": "http://example.com/a.mp4"}, "storage": {"type": "web3.storage", "credentials": {"proof": "x"}}, "outputs": {"hls": {"path": "x"}}}),
            "storage.type",
        ),
        (
            json!({"input": {"url": "http://example.com/a.mp4"}, "storage": storage, "outputs": {"fmp4": {"path": "x"}}}),
            "fmp4",
        ),
        (
            json!({"input": {"url": "http://example.com/a.mp4"}, "storage": storage, "outputs": {}}),
            "outputs must name",
        ),
        (
            json!({"input": {"url": "http://example.com/a.mp4"}, "storage": storage, "outputs": {"hls": {"path": "../up"}}}),
            "outputs.hls.path",
        ),
    ] {
        app.post("/transcode", body)
            .await
            .assert_error(422, fragment);
    }
}

/// An audio file (AAC in M4A): HLS of the source only, an `audio.mp4`, no thumbnails.
async fn an_audio_only_file_becomes_a_playable_asset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = TempDir::new();
    let path = dir.0.join("voice.m4a");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "8", "-c:a", "aac"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": "voice", "staticMp4": true}),
        )
        .await;
    let put = reqwest::Client::new()
        .put(requested.json["url"].as_str().unwrap())
        .body(std::fs::read(&path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let asset = finished(&app, requested.json["asset"]["id"].as_str().unwrap()).await;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let hls = asset["playbackUrl"].as_str().unwrap();
    assert_decodes_cleanly(hls).await;
    let duration: f64 = ffprobe(hls, "format=duration").await.parse().unwrap();
    assert!((duration - 8.0).abs() <= 0.5, "HLS lasts {duration} s");
    let mp4 = asset["downloadUrl"].as_str().unwrap();
    assert!(mp4.ends_with("/audio.mp4"), "{mp4}");
    assert_eq!(ffprobe(mp4, "stream=codec_type").await, "audio");
    let info = app
        .call(
            None,
            reqwest::Method::GET,
            &format!("/playback/{}", asset["playbackId"].as_str().unwrap()),
            None,
        )
        .await;
    let hrns: Vec<&str> = info.json["meta"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hrn"].as_str().unwrap())
        .collect();
    assert_eq!(hrns, ["MP4", "HLS (TS)"], "no thumbnails without pictures");
}

/// A page on another origin can upload: the preflights of the direct PUT and of TUS are
/// answered, and TUS answers expose the headers a browser client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_work_from_any_origin() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let requested = app
        .post("/asset/request-upload", json!({"name": "cors"}))
        .await;
    let http = reqwest::Client::new();
    let origin = "https://uploader.example";
    for (url, method, headers) in [
        (
            requested.json["url"].as_str().unwrap(),
            "PUT",
            "content-type",
        ),
        (
            requested.json["tusEndpoint"].as_str().unwrap(),
            "POST",
            "tus-resumable,upload-length,upload-metadata",
        ),
    ] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", headers)
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{method} {url}");
        assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
        assert!(
            preflight.headers()["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains(method)
        );
        assert_eq!(preflight.headers()["access-control-allow-headers"], headers);
    }
    let created = http
        .post(requested.json["tusEndpoint"].as_str().unwrap())
        .header("Origin", origin)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["access-control-allow-origin"], origin);
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in [
        "location",
        "upload-offset",
        "tus-resumable",
        "upload-expires",
    ] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
}

/// Polls task `id` until it completed or failed.
async fn task_finished(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(120), || async {
        let task = app.get(&format!("/task/{id}")).await.json;
        matches!(
            task["status"]["phase"].as_str(),
            Some("completed" | "failed")
        )
        .then_some(task)
    })
    .await
    .unwrap_or_else(|| panic!("task {id} never finished"))
}

/// A TUS `PATCH` of `body` at `offset`.
async fn tus_patch(
    http: &reqwest::Client,
    location: &str,
    offset: u64,
    body: Vec<u8>,
) -> reqwest::Response {
    tus(http
        .patch(location)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body))
    .await
}
