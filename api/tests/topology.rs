//! The multi-node topology as users deploy it, on loopback: two `studio serve` processes on one
//! PostgreSQL database and one S3 bucket (an s3s-fs server of the test's own). One node is
//! killed (`kill -9`) while it ingests or while it processes a recording: the other makes the
//! stream idle within the sweeper's bound, finishes the recording and serves it, each job runs
//! to its end once, and each webhook event is delivered (once, but for those the dead node may
//! have had in flight: at least once).
//!
//! Needs `STUDIO_TEST_POSTGRES_URL` and `STUDIO_TEST_S3_SERVER` (the s3s-fs binary), which the
//! README's test command provides.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, PostgresDatabase, Studio, eventually, field, publish, studio, temp_dir};

const ACCESS_KEY: &str = "topology";
const SECRET_KEY: &str = "topology-secret";
const BUCKET: &str = "media";
/// How long a silent node is presumed alive (streams, sessions, job leases).
const IDLE_AFTER_SECS: u64 = 3;

/// A node ingesting a recorded stream is killed mid-publish: the other node makes the stream
/// idle within the bound, ends the session, makes the recording from what reached S3 and
/// serves it; one recording job, run once; each webhook event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_publish_leaves_its_stream_and_recording_to_the_other() {
    let topology = Topology::new().await;
    let a = topology.node("a").await;
    let b = topology.node("b").await;
    let (api_a, api_b) = (topology.api(&a), topology.api(&b));
    topology.subscribe(&a).await;
    let stream = api_a.create_recorded_stream().await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let mut encoder = publish(&a, stream["streamKey"].as_str().unwrap(), 60);
    let session_id = eventually(Duration::from_secs(30), || async {
        let sessions = api_b.get(&format!("/stream/{stream_id}/sessions")).await;
        let session = sessions.get(0)?;
        (session["sourceSegments"].as_i64()? >= 3)
            .then(|| session["id"].as_str().unwrap().to_string())
    })
    .await
    .expect("node B sees the publish on node A reach three segments");
    // B plays what A ingests, from the bucket.
    let playlist = topology
        .http
        .get(format!(
            "http://{}/hls/{}/index.m3u8",
            b.http,
            stream["playbackId"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200);
    assert!(playlist.text().await.unwrap().contains("#EXT-X-STREAM-INF"));

    let log_a = a.kill().await;
    let killed = Instant::now();
    let _ = encoder.kill().await;
    let idle = eventually(Duration::from_secs(20), || async {
        (api_b.get(&format!("/stream/{stream_id}")).await["isActive"] == false)
            .then(|| killed.elapsed())
    })
    .await
    .unwrap_or_else(|| panic!("the stream of the dead node stays active\n{}", b.log()));
    assert!(
        idle <= Duration::from_secs(IDLE_AFTER_SECS + 5),
        "idle {idle:?} after the node died"
    );
    let recorded = api_b.recorded_duration_when_finished(&session_id).await;
    let session = api_b.get(&format!("/session/{session_id}")).await;
    let published = session["sourceSegmentsDuration"].as_f64().unwrap();
    assert!(
        recorded >= published - 2.5 && recorded <= published + 0.5,
        "the recording lasts {recorded} s of {published} s published\n{log_a}"
    );
    assert_eq!(
        topology.recording_job(&session_id).await,
        ("completed".to_string(), 1),
        "one recording job, run once"
    );
    // Node B's events come once; node A's may have been in flight when it died (delivery is
    // at least once: B delivers them again once A's lease on them expires).
    topology
        .events_arrive(
            &["recording.waiting", "recording.ready", "stream.idle"],
            &["stream.started", "recording.started"],
        )
        .await;
    b.stop().await;
    topology.remove().await;
}

/// A node is killed while it processes a recording: the other node takes the job over once its
/// lease runs out and finishes it; the job ran twice (the dead attempt and the finished one),
/// the asset turned ready once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_job_whose_node_dies_is_taken_over_by_the_other() {
    let topology = Topology::new().await;
    let a = topology.node("a").await;
    let b = topology.node("b").await;
    let api_b = topology.api(&b);
    topology.subscribe(&b).await;
    let stream = topology.api(&a).create_recorded_stream().await;
    let mut encoder = publish(&a, stream["streamKey"].as_str().unwrap(), 5);
    assert!(encoder.wait().await.unwrap().success());
    assert!(
        a.wait_for_log("task started", Duration::from_secs(30))
            .await,
        "{}",
        a.log()
    );
    let log_a = a.kill().await;
    let created = log_a
        .lines()
        .find(|line| line.contains("recording asset created"))
        .unwrap();
    let asset_id = field(created, "asset");
    let (phase, attempts) = topology.recording_job(&asset_id).await;
    assert_eq!(
        (phase.as_str(), attempts),
        ("running", 1),
        "killed while its node processed the recording"
    );

    let recorded = api_b.recorded_duration_when_finished(&asset_id).await;
    assert!(
        (recorded - 5.0).abs() <= 0.5,
        "the recording lasts {recorded} s of 5 s"
    );
    assert_eq!(
        topology.recording_job(&asset_id).await,
        ("completed".to_string(), 2),
        "the dead node's attempt, then the other node's"
    );
    assert!(b.log().contains("recording processed"), "{}", b.log());
    topology
        .events_arrive(&["recording.ready"], &["recording.waiting"])
        .await;
    b.stop().await;
    topology.remove().await;
}

/// PostgreSQL, an S3 server, a webhook receiver, an API key, and data directories for nodes.
struct Topology {
    dir: PathBuf,
    database: PostgresDatabase,
    s3: tokio::process::Child,
    s3_endpoint: String,
    key: String,
    http: reqwest::Client,
    /// Webhook deliveries received, by event.
    received: Arc<Mutex<HashMap<String, usize>>>,
    receiver: SocketAddr,
}

impl Topology {
    async fn new() -> Topology {
        let dir = temp_dir();
        let database = PostgresDatabase::create().await;

        let s3_root = dir.join("s3");
        std::fs::create_dir_all(s3_root.join(BUCKET)).unwrap();
        let port = free_port();
        let s3 = tokio::process::Command::new(
            std::env::var("STUDIO_TEST_S3_SERVER")
                .expect("STUDIO_TEST_S3_SERVER names the s3s-fs binary"),
        )
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(&s3_root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running s3s-fs");
        let s3_endpoint = format!("http://127.0.0.1:{port}");
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await
        .expect("s3s-fs listens");

        let out = studio()
            .args(["api-key", "create", "--name", "topology", "--data-dir"])
            .arg(dir.join("admin"))
            .args(["--database-url", &database.url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = created["key"].as_str().unwrap().to_string();

        let received: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let receiver = receive_webhooks(received.clone()).await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Topology {
            dir,
            database,
            s3,
            s3_endpoint,
            key,
            http,
            received,
            receiver,
        }
    }

    /// Starts node `name`: its own data directory, the shared database and bucket.
    async fn node(&self, name: &str) -> Studio {
        let mut command = studio();
        command
            .args(["serve", "--data-dir"])
            .arg(self.dir.join(name))
            .args(["--database-url", &self.database.url])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--rtmp-addr", "127.0.0.1:0", "--srt-addr", "127.0.0.1:0"])
            .args(["--webrtc-addr", "127.0.0.1:0"])
            .env("STUDIO_STORAGE__URL", format!("s3://{BUCKET}/live"))
            .env("STUDIO_STORAGE__FORCE_PATH_STYLE", "true")
            .env("AWS_ENDPOINT_URL", &self.s3_endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("STUDIO_STREAM_IDLE_AFTER_SECS", IDLE_AFTER_SECS.to_string())
            .env("STUDIO_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("STUDIO_WEBHOOKS__TIMEOUT_MS", "2000")
            .env("STUDIO_LOG", "info");
        Studio::start(command).await
    }

    fn api(&self, node: &Studio) -> Api {
        Api::new(node, &self.key)
    }

    /// Subscribes the receiver to the events the tests count, through `node`.
    async fn subscribe(&self, node: &Studio) {
        let events = [
            "stream.started",
            "stream.idle",
            "recording.started",
            "recording.waiting",
            "recording.ready",
        ];
        let reply = self
            .http
            .post(format!("http://{}/api/webhook", node.http))
            .bearer_auth(&self.key)
            .json(&json!({"name": "all", "url": format!("http://{}/hook", self.receiver), "events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    }

    /// The phase and the attempts of the recording job of session `id`, from the database.
    async fn recording_job(&self, id: &str) -> (String, i64) {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.database.url)
            .await
            .unwrap();
        let rows = sqlx::query(
            "SELECT phase, attempts FROM tasks WHERE type = 'recording' AND unique_key = $1",
        )
        .bind(id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "one recording job for session {id}");
        (rows[0].get("phase"), rows[0].get("attempts"))
    }

    /// Waits until every event of `once` and `at_least_once` arrived, then checks that those of
    /// `once` arrived exactly once (a second delivery would come within seconds of the first).
    /// A dead node's deliveries are taken over when their lease expires (the delivery timeout
    /// plus 30 s).
    async fn events_arrive(&self, once: &[&str], at_least_once: &[&str]) {
        let counts = || self.received.lock().unwrap().clone();
        let all_arrived = eventually(Duration::from_secs(60), || async {
            let seen = counts();
            once.iter()
                .chain(at_least_once)
                .all(|event| seen.get(*event).copied().unwrap_or(0) >= 1)
                .then_some(())
        })
        .await;
        assert!(all_arrived.is_some(), "events missing: {:?}", counts());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let seen = counts();
        for event in once {
            assert_eq!(
                seen.get(*event).copied().unwrap_or(0),
                1,
                "{event}: {seen:?}"
            );
        }
    }

    async fn remove(mut self) {
        let _ = self.s3.kill().await;
        self.database.drop_it().await;
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A webhook receiver counting deliveries by event (`{"event": ...}` of each body).
async fn receive_webhooks(received: Arc<Mutex<HashMap<String, usize>>>) -> SocketAddr {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let event = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(str::to_string))
                    .unwrap_or_default();
                *received.lock().unwrap().entry(event).or_default() += 1;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
