//! Real clients against the real server: the official Livepeer SDKs (TypeScript and Python) and
//! schemathesis fuzzing our own OpenAPI document.

use std::path::PathBuf;
use std::process::Stdio;

use studio_tests::{Backend, TestApp, on_both_databases, workspace_root};

on_both_databases!(
    typescript_sdk_drives_every_operation,
    python_sdk_drives_every_operation,
    schemathesis_finds_no_violations
);

/// The Python of the venv `scripts/test-deps` makes (`STUDIO_PYTHON`), which has the SDK and schemathesis.
pub(crate) fn python() -> PathBuf {
    match std::env::var_os("STUDIO_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/studio/venv/bin/python"),
    }
}

/// Runs `program args` with the server's URL and key in the environment; panics with its output on failure.
async fn run_client(app: &TestApp, program: PathBuf, args: &[&str], key: &str) -> String {
    run_client_with(app, program, args, key, &[]).await
}

/// [`run_client`] with more environment variables.
pub(crate) async fn run_client_with(
    app: &TestApp,
    program: PathBuf,
    args: &[&str],
    key: &str,
    env: &[(&str, &str)],
) -> String {
    let output = tokio::process::Command::new(&program)
        .args(args)
        .current_dir(workspace_root())
        .env("STUDIO_API_URL", app.url(""))
        .env("STUDIO_API_KEY", key)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (run scripts/test-deps to install the clients)",
                program.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

/// The `storage` of a transcode payload: a fresh bucket of the test S3 server.
async fn transcode_storage() -> String {
    let s3 = studio_tests::TestS3::from_env();
    serde_json::json!({
        "type": "s3",
        "endpoint": s3.endpoint,
        "bucket": s3.fresh_bucket().await,
        "credentials": {"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key},
    })
    .to_string()
}

/// A file for the SDKs to upload, and a URL for them to import it from (a local HTTP server).
async fn vod_source() -> (studio_tests::TempDir, String, String) {
    let dir = studio_tests::TempDir::new();
    let file = crate::vod::source_file(&dir.0).await;
    let server = crate::vod::file_server(file.clone()).await;
    let path = file.to_str().unwrap().to_string();
    (dir, path, format!("http://{server}/video.mp4"))
}

async fn typescript_sdk_drives_every_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_dir, file, url) = vod_source().await;
    let out = run_client_with(
        &app,
        "node".into(),
        &["tests/sdk/js/conformance.mjs"],
        &app.key,
        &[
            ("STUDIO_VOD_FILE", &file),
            ("STUDIO_VOD_URL", &url),
            ("STUDIO_TRANSCODE_STORAGE", &transcode_storage().await),
        ],
    )
    .await;
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(out.contains("ok stream.create"), "{out}");
    assert!(out.contains("ok asset.createViaUrl"), "{out}");
    assert!(
        out.contains("ok task.get (transcode, until completed)"),
        "{out}"
    );
}

async fn python_sdk_drives_every_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_dir, file, url) = vod_source().await;
    let out = run_client_with(
        &app,
        python(),
        &["tests/sdk/python/conformance.py"],
        &app.key,
        &[
            ("STUDIO_VOD_FILE", &file),
            ("STUDIO_VOD_URL", &url),
            ("STUDIO_TRANSCODE_STORAGE", &transcode_storage().await),
        ],
    )
    .await;
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(out.contains("ok stream.create"), "{out}");
    assert!(out.contains("ok asset.create_via_url"), "{out}");
    assert!(
        out.contains("ok task.get (transcode, until completed)"),
        "{out}"
    );
}

/// Every operation of our document, fuzzed: no 5xx, every response matches the document
/// (status, content type, headers, schema), and schema-violating requests are refused. An admin
/// key on PostgreSQL reaches the admin operations too.
async fn schemathesis_finds_no_violations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = if backend == Backend::Postgres {
        app.admin_key.clone()
    } else {
        app.key.clone()
    };
    let schema = app.url("/openapi.json");
    let base = app.url("");
    let auth = format!("Authorization: Bearer {key}");
    let out = run_client(
        &app,
        python(),
        &[
            "-m",
            "schemathesis.cli",
            "run",
            &schema,
            "--url",
            &base,
            "-H",
            &auth,
            "--checks",
            "all",
            // Requests the document allows may still break rules it cannot express (a profile
            // name must exist on the stream); those get a 4xx, which is right.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "20261121",
            // One worker: with two, hypothesis parses lambda sources from two threads, which
            // CPython 3.11's parser does not survive ("AST constructor recursion depth
            // mismatch").
            "--workers",
            "1",
        ],
        &key,
    )
    .await;
    assert!(!out.contains("failures,") && !out.contains("❌"), "{out}");
}
