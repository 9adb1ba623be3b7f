//! The `studio` binary as a child process: started, watched through its log, stopped or
//! killed.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A command running the `studio` binary under test.
pub fn studio() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_studio"))
}

/// A fresh temporary directory (removed by the test that made it).
pub fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("studio-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `studio serve`, with its log as it arrives.
pub struct Studio {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Where the API listens.
    pub http: SocketAddr,
    /// Where the RTMP ingest listens.
    pub rtmp: SocketAddr,
}

impl Studio {
    /// Spawns `command` (a `studio serve ...`) and waits until it serves.
    pub async fn start(command: std::process::Command) -> Studio {
        let mut command = Command::from(command);
        command
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawning studio");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let serving = log
                .lock()
                .unwrap()
                .lines()
                .find(|line| line.contains("studio is serving"))
                .map(str::to_string);
            if let Some(line) = serving {
                return Studio {
                    child,
                    log,
                    http: field(&line, "addr").parse().unwrap(),
                    rtmp: field(&line, "rtmp_addr").parse().unwrap(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "studio exited ({status}) before serving:\n{}",
                    log.lock().unwrap()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "studio did not start serving:\n{}",
                log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `fragment`.
    pub async fn wait_for_log(&self, fragment: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.log.lock().unwrap().contains(fragment) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// `kill -9`: the process ends at once, finishing nothing.
    pub async fn kill(mut self) -> String {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        self.log()
    }

    /// SIGTERM, then waits for the exit; returns the log.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
        }
        let waited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(waited.is_ok(), "studio did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log()
    }
}

/// The value of the field `name` in a log line (`name=value`).
pub fn field(line: &str, name: &str) -> String {
    let start = line
        .split(' ')
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    start.trim_matches('"').to_string()
}

/// A throwaway database of the test PostgreSQL server (`STUDIO_TEST_POSTGRES_URL`), dropped by
/// [`PostgresDatabase::drop_it`].
pub struct PostgresDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        let admin = std::env::var("STUDIO_TEST_POSTGRES_URL")
            .expect("STUDIO_TEST_POSTGRES_URL names a PostgreSQL server for tests");
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        execute(&admin, &format!("CREATE DATABASE {name}")).await;
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        PostgresDatabase { url, admin, name }
    }

    pub async fn drop_it(&self) {
        execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// Runs `sql` (statements without results) on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The API of a running server, as one tenant.
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(server: &Studio, key: &str) -> Api {
        Api {
            base: format!("http://{}/api", server.http),
            key: key.to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let reply = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        reply.json().await.unwrap_or(Value::Null)
    }

    pub async fn create_recorded_stream(&self) -> Value {
        let reply = self
            .http
            .post(format!("{}/stream", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"name": "recorded", "record": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        reply.json().await.unwrap()
    }

    /// Waits until the recording of session `id` is finished, asserts that it is ready, and
    /// returns the duration of its MP4 (which must decode without errors).
    pub async fn recorded_duration_when_finished(&self, id: &str) -> f64 {
        let session = eventually(Duration::from_secs(60), || async {
            let session = self.get(&format!("/session/{id}")).await;
            (session["recordingStatus"] != "waiting").then_some(session)
        })
        .await
        .unwrap_or_else(|| panic!("the recording of session {id} is still waiting"));
        let asset = self.get(&format!("/asset/{id}")).await;
        assert_eq!(session["recordingStatus"], "ready", "{session}\n{asset}");
        assert_eq!(asset["status"]["phase"], "ready", "{asset}");
        let mp4 = asset["downloadUrl"].as_str().unwrap();
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i", mp4, "-f", "null", "-"])
            .output()
            .await
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{mp4}: {}",
            String::from_utf8_lossy(&decode.stderr)
        );
        ffprobe_duration(mp4).await
    }
}

/// Publishes `seconds` of test video and audio over RTMP, as an encoder would.
pub fn publish(server: &Studio, stream_key: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(format!("rtmp://{}/live/{stream_key}", server.rtmp))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running ffmpeg")
}

pub async fn ffprobe_duration(url: &str) -> f64 {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {url}: {}", String::from_utf8_lossy(&probe.stderr)))
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `timeout`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
