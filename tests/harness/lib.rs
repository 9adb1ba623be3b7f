//! The test harness: starts the real `studio` server on a loopback port against a fresh SQLite
//! file or a fresh PostgreSQL database, with typed helpers to call it as a client would.
//!
//! PostgreSQL comes from `STUDIO_TEST_POSTGRES_URL` (a superuser URL of a throwaway server; the
//! README's test command starts one). Each test gets its own database in it. Likewise, S3 storage
//! comes from `STUDIO_TEST_S3_ENDPOINT` (with `STUDIO_TEST_S3_ACCESS_KEY` and
//! `STUDIO_TEST_S3_SECRET_KEY`: the s3s-fs server scripts/test starts), a fresh bucket per test.

pub mod publisher;
pub mod receiver;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use studio_api::app::RunningServer;
use studio_api::config::Config;
use studio_api::tenancy::accounts;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A fresh database URL for one test.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("studio.db").display()),
        Backend::Postgres => {
            let admin = std::env::var("STUDIO_TEST_POSTGRES_URL").expect(
                "STUDIO_TEST_POSTGRES_URL is not set: run the README's test command (scripts/test), \
                 which starts a throwaway PostgreSQL, or point it at a superuser URL",
            );
            sqlx::any::install_default_drivers();
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connecting to the test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("creating a test database");
            let base = admin
                .rsplit_once('/')
                .map(|(base, _)| base.to_string())
                .unwrap_or(admin);
            format!("{base}/{name}")
        }
    }
}

/// The S3-compatible server of the test run (scripts/test starts s3s-fs).
#[derive(Debug, Clone)]
pub struct TestS3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl TestS3 {
    pub fn from_env() -> TestS3 {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the README's test command (scripts/test), which starts \
                     the S3 server s3s-fs, or point STUDIO_TEST_S3_ENDPOINT, STUDIO_TEST_S3_ACCESS_KEY \
                     and STUDIO_TEST_S3_SECRET_KEY at one"
                )
            })
        };
        TestS3 {
            endpoint: var("STUDIO_TEST_S3_ENDPOINT"),
            access_key: var("STUDIO_TEST_S3_ACCESS_KEY"),
            secret_key: var("STUDIO_TEST_S3_SECRET_KEY"),
        }
    }

    /// How the server's store reaches `bucket` (below `prefix`).
    pub fn settings(&self, bucket: &str, prefix: &str) -> studio_media_core::store::s3::S3Settings {
        studio_media_core::store::s3::S3Settings {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            session_token: None,
            force_path_style: true,
        }
    }

    /// A client of the server, to look into buckets as an operator would.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "studio-tests",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A new, empty bucket of its own for one test.
    pub async fn fresh_bucket(&self) -> String {
        let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
        self.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating the test bucket at {}: {}",
                    self.endpoint,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        bucket
    }

    /// Points `config` at `bucket` below `prefix`, the way an operator would: `storage.url`,
    /// path-style addressing, and the AWS variables.
    pub fn configure(&self, config: &mut Config, bucket: &str, prefix: &str) {
        config.storage.url = Some(format!("s3://{bucket}/{prefix}"));
        config.storage.force_path_style = true;
        config.storage.aws = studio_api::config::AwsEnvironment {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone().into()),
            session_token: None,
        };
    }

    /// The keys of `bucket`, to check where the server put its media.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("listing the test bucket");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys
    }
}

/// Which media store a test's server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `<data_dir>/media`, the default.
    LocalDir,
    /// A fresh bucket of the test S3 server, below the prefix `media`.
    S3,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("studio-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server and the credentials of one tenant.
pub struct TestApp {
    pub server: Option<RunningServer>,
    pub config: Config,
    pub base: String,
    /// An API key of the project `default`.
    pub key: String,
    /// An admin key of the same project.
    pub admin_key: String,
    pub user_id: String,
    pub project_id: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    /// The bucket of the server's media when it runs on S3 storage.
    pub s3_bucket: Option<String>,
    _dir: TempDir,
}

/// A key of another tenant (another user and project) on the same server.
pub struct Tenant {
    pub key: String,
    pub user_id: String,
    pub project_id: String,
}

impl TestApp {
    /// Starts a server with test settings: loopback, fast webhook retries, private webhook
    /// destinations allowed (receivers run on loopback).
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_on(backend, Storage::LocalDir, adjust).await
    }

    /// [`TestApp::spawn_with`] on the given media store.
    pub async fn spawn_on(
        backend: Backend,
        storage: Storage,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = TempDir::new();
        let mut config = Config {
            data_dir: dir.0.join("data"),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            rtmp_addr: "127.0.0.1:0".parse().unwrap(),
            srt_addr: "127.0.0.1:0".parse().unwrap(),
            webrtc_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(fresh_database(backend, &dir.0).await),
            database_max_connections: 8,
            ..Config::default()
        };
        config.webhooks.allow_private_destinations = true;
        config.webhooks.initial_backoff_ms = 200;
        config.webhooks.max_backoff_ms = 2_000;
        config.webhooks.timeout_ms = 3_000;
        config.viewership.flush_interval_ms = 200;
        config.viewership.country_header = Some("x-viewer-country".into());
        let s3_bucket = match storage {
            Storage::LocalDir => None,
            Storage::S3 => {
                let s3 = TestS3::from_env();
                let bucket = s3.fresh_bucket().await;
                s3.configure(&mut config, &bucket, "media");
                Some(bucket)
            }
        };
        adjust(&mut config);
        let server = studio_api::app::start(config.clone())
            .await
            .expect("starting the server");
        // Keep the ports across restarts.
        config.http_addr = server.addr;
        config.rtmp_addr = server.rtmp_addr;
        config.srt_addr = server.srt_addr;
        config.webrtc_addr = server.webrtc_addr;
        let base = format!("http://{}", server.addr);
        let db = server.state.db().clone();
        let mut tx = db.begin().await.unwrap();
        let user_id = accounts::ensure_user(&mut tx, "tester").await.unwrap();
        let project = accounts::ensure_project(&mut tx, &user_id, "default")
            .await
            .unwrap();
        let key = accounts::create_key(&mut tx, &user_id, &project.id, "test key", false, None)
            .await
            .unwrap();
        let admin = accounts::create_key(&mut tx, &user_id, &project.id, "admin key", true, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        TestApp {
            server: Some(server),
            config,
            base,
            key: key.key.unwrap(),
            admin_key: admin.key.unwrap(),
            user_id,
            project_id: project.id,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            backend,
            s3_bucket,
            _dir: dir,
        }
    }

    /// A new user with its own project and key.
    pub async fn other_tenant(&self, name: &str) -> Tenant {
        let db = self
            .server
            .as_ref()
            .expect("server running")
            .state
            .db()
            .clone();
        let mut tx = db.begin().await.unwrap();
        let user_id = accounts::ensure_user(&mut tx, name).await.unwrap();
        let project = accounts::ensure_project(&mut tx, &user_id, "default")
            .await
            .unwrap();
        let key = accounts::create_key(&mut tx, &user_id, &project.id, "key", false, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Tenant {
            key: key.key.unwrap(),
            user_id,
            project_id: project.id,
        }
    }

    /// A second project of the same user, with its own key.
    pub async fn other_project(&self, name: &str) -> Tenant {
        let db = self
            .server
            .as_ref()
            .expect("server running")
            .state
            .db()
            .clone();
        let mut tx = db.begin().await.unwrap();
        let project = accounts::ensure_project(&mut tx, &self.user_id, name)
            .await
            .unwrap();
        let key = accounts::create_key(&mut tx, &self.user_id, &project.id, "key", false, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Tenant {
            key: key.key.unwrap(),
            user_id: self.user_id.clone(),
            project_id: project.id,
        }
    }

    /// A second node on the same database and media store, on ports of its own, with the
    /// configuration `adjust` leaves.
    pub async fn second_node(&self, adjust: impl FnOnce(&mut Config)) -> RunningServer {
        let mut config = self.config.clone();
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.rtmp_addr = "127.0.0.1:0".parse().unwrap();
        config.srt_addr = "127.0.0.1:0".parse().unwrap();
        config.webrtc_addr = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        studio_api::app::start(config)
            .await
            .expect("a second node starts on the same database")
    }

    /// Where an encoder publishes `stream_key`.
    pub fn rtmp_url(&self, stream_key: &str) -> String {
        format!("rtmp://{}/live/{stream_key}", self.config.rtmp_addr)
    }

    /// Where an encoder publishes `stream_key` over SRT (MPEG-TS, ffmpeg `-f mpegts`).
    pub fn srt_url(&self, stream_key: &str) -> String {
        format!(
            "srt://{}?mode=caller&streamid={stream_key}",
            self.config.srt_addr
        )
    }

    /// `{base}/api{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api{}", self.base, path)
    }

    /// Sends a request with `key` (none when `None`) and an optional JSON body.
    pub async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Reply::from(req.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Some(&self.key.clone()), Method::GET, path, None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Some(&self.key.clone()), Method::POST, path, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Some(&self.key.clone()), Method::PATCH, path, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Some(&self.key.clone()), Method::PUT, path, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Some(&self.key.clone()), Method::DELETE, path, None)
            .await
    }

    /// Creates a stream and returns it.
    pub async fn create_stream(&self, body: Value) -> Value {
        let reply = self.post("/stream", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json
    }

    /// Stops the server and starts it again on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stopping the server");
        }
    }

    pub async fn start(&mut self) {
        assert!(self.server.is_none(), "already running");
        self.server = Some(
            studio_api::app::start(self.config.clone())
                .await
                .expect("restarting the server"),
        );
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `errors` array of an error body; panics when the body is not one.
    pub fn errors(&self) -> Vec<String> {
        let errors = self
            .json
            .get("errors")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("not an error body: {}", self.text));
        assert!(!errors.is_empty(), "empty errors array");
        errors
            .iter()
            .map(|e| e.as_str().expect("errors are strings").to_string())
            .collect()
    }

    /// Asserts the status and that the body is an error mentioning `fragment`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, fragment: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let errors = self.errors();
        assert!(
            errors.iter().any(|e| e.contains(fragment)),
            "no error mentions {fragment:?}: {errors:?}"
        );
    }
}

/// Waits until `check` returns `Some`, polling every 50 ms, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decodes all of `url` with ffmpeg, as a player would, and fails the test if ffmpeg fails or
/// reports any error on the way.
pub async fn assert_decodes_cleanly(url: &str) {
    let decode = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-f", "null", "-"])
        .output()
        .await
        .expect("running ffmpeg (scripts/test-deps installs it)");
    assert!(
        decode.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    assert!(
        decode.stderr.is_empty(),
        "decoding {url} reports errors: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
}

/// Percent-encodes `s` for a query string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The workspace root (where README.md is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}
