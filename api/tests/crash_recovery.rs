//! Recordings survive `kill -9`: the real binary is killed while a recorded stream is being
//! published, or right after the recording's asset was created, and started again on the same
//! data; the recording ends `ready` with playable media, never stuck in `waiting`. On SQLite and
//! on PostgreSQL (`STUDIO_TEST_POSTGRES_URL`).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::{Api, PostgresDatabase, Studio, eventually, field, publish, studio, temp_dir};

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_killed_mid_publish_is_finished_after_restart_on_sqlite() {
    killed_mid_publish(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_killed_mid_publish_is_finished_after_restart_on_postgres() {
    killed_mid_publish(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_killed_while_processing_is_finished_after_restart_on_sqlite() {
    killed_while_processing(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_killed_while_processing_is_finished_after_restart_on_postgres() {
    killed_while_processing(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_upload_and_mid_processing_ends_ready_on_sqlite() {
    killed_mid_upload_and_processing(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_upload_and_mid_processing_ends_ready_on_postgres() {
    killed_mid_upload_and_processing(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_publish_finishes_the_recording_before_exit_on_sqlite() {
    sigterm_mid_publish(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_publish_finishes_the_recording_before_exit_on_postgres() {
    sigterm_mid_publish(Backend::Postgres).await
}

/// SIGTERM while the encoder publishes (what Kubernetes sends before a pod goes): the server
/// used to close its database under the live session, so the stream stayed live, the session
/// open and the recording lost. Now, before the process exits, the session is ended, the stream
/// is idle and the recording is ready, with nothing left for a restart to do.
async fn sigterm_mid_publish(backend: Backend) {
    let node = Node::new(backend).await;
    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let stream = api.create_recorded_stream().await;
    let _encoder = publish(&server, stream["streamKey"].as_str().unwrap(), 60);
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let session = eventually(Duration::from_secs(30), || async {
        let sessions = api.get(&format!("/stream/{stream_id}/sessions")).await;
        let session = sessions.get(0)?;
        (session["sourceSegments"].as_i64()? >= 3).then(|| session.clone())
    })
    .await
    .expect("the publish reaches three segments");
    let session_id = session["id"].as_str().unwrap().to_string();

    let log = server.stop().await;
    assert!(!log.contains("closed pool"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // Read from the database the server left, before anything starts again.
    assert_eq!(node.asset_phase(&session_id).await, "ready", "{log}");
    assert_eq!(node.stream_active(&stream_id).await, 0, "{log}");
    node.remove().await;
}

/// `kill -9` while the encoder publishes: the session is ended and its recording made from the
/// segments stored before the crash.
async fn killed_mid_publish(backend: Backend) {
    let node = Node::new(backend).await;
    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let stream = api.create_recorded_stream().await;
    let mut encoder = publish(&server, stream["streamKey"].as_str().unwrap(), 60);
    let stream_id = stream["id"].as_str().unwrap();
    let session = eventually(Duration::from_secs(30), || async {
        let sessions = api.get(&format!("/stream/{stream_id}/sessions")).await;
        let session = sessions.get(0)?;
        (session["sourceSegments"].as_i64()? >= 3).then(|| session.clone())
    })
    .await
    .expect("the publish reaches three segments");
    let session_id = session["id"].as_str().unwrap().to_string();
    let log = server.kill().await;
    let _ = encoder.kill().await;
    assert!(!log.contains("recording asset created"), "{log}");

    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let recorded = api.recorded_duration_when_finished(&session_id).await;
    let session = api.get(&format!("/session/{session_id}")).await;
    let published = session["sourceSegmentsDuration"].as_f64().unwrap();
    // The crash may fall between counting a segment and keeping it for the recording.
    assert!(
        recorded >= published - 2.5 && recorded <= published + 0.5,
        "the recording lasts {recorded} s of {published} s published"
    );
    assert_eq!(
        api.get(&format!("/stream/{stream_id}")).await["isActive"],
        false
    );
    server.stop().await;
    node.remove().await;
}

/// `kill -9` right after the session's recording asset was created: the asset is processed
/// again after the restart.
async fn killed_while_processing(backend: Backend) {
    let node = Node::new(backend).await;
    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let stream = api.create_recorded_stream().await;
    let mut encoder = publish(&server, stream["streamKey"].as_str().unwrap(), 5);
    assert!(encoder.wait().await.unwrap().success());
    assert!(
        server
            .wait_for_log("recording asset created", Duration::from_secs(30))
            .await,
        "{}",
        server.log()
    );
    let log = server.kill().await;
    let created = log
        .lines()
        .find(|line| line.contains("recording asset created"))
        .unwrap();
    let asset_id = field(created, "asset");
    assert_eq!(
        node.asset_phase(&asset_id).await,
        "waiting",
        "killed before processing finished"
    );

    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let recorded = api.recorded_duration_when_finished(&asset_id).await;
    assert!(
        (recorded - 5.0).abs() <= 0.5,
        "the recording lasts {recorded} s of 5 s"
    );
    server.stop().await;
    node.remove().await;
}

/// `kill -9` half way through a TUS upload, then again while the asset is being processed: the
/// upload resumes after the restart from where the server got, and the asset ends ready and
/// playable, its job taken over by the restarted server.
async fn killed_mid_upload_and_processing(backend: Backend) {
    let node = Node::new(backend).await;
    let file = node.dir.join("upload.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
        ])
        .args(["-g", "30", "-c:a", "aac"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let bytes = std::fs::read(&file).unwrap();
    let half = bytes.len() / 2;

    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let requested: Value = api
        .http
        .post(format!("{}/asset/request-upload", api.base))
        .bearer_auth(&api.key)
        .json(&serde_json::json!({"name": "killed", "staticMp4": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let asset_id = requested["asset"]["id"].as_str().unwrap().to_string();
    let endpoint = requested["tusEndpoint"].as_str().unwrap();
    let tus = |request: reqwest::RequestBuilder| request.header("Tus-Resumable", "1.0.0");
    let created = tus(api.http.post(endpoint))
        .header("Upload-Length", bytes.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let path = created.headers()["location"]
        .to_str()
        .unwrap()
        .split("/api/")
        .nth(1)
        .unwrap()
        .to_string();
    let first = tus(api.http.patch(format!("{}/{path}", api.base)))
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    server.kill().await;

    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let head = tus(api.http.head(format!("{}/{path}", api.base)))
        .send()
        .await
        .unwrap();
    let offset: usize = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(offset, half, "the stored half survives kill -9");
    let rest = tus(api.http.patch(format!("{}/{path}", api.base)))
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    assert!(
        server
            .wait_for_log("task started", Duration::from_secs(30))
            .await,
        "{}",
        server.log()
    );
    let log = server.kill().await;
    assert!(
        !log.contains("asset ready"),
        "killed before processing finished"
    );

    let server = node.start().await;
    let api = Api::new(&server, &node.key);
    let asset = eventually(Duration::from_secs(120), || async {
        let asset = api.get(&format!("/asset/{asset_id}")).await;
        matches!(asset["status"]["phase"].as_str(), Some("ready" | "failed")).then_some(asset)
    })
    .await
    .expect("the asset finishes after the restart");
    assert_eq!(
        asset["status"]["phase"],
        "ready",
        "{asset}\n{}",
        server.log()
    );
    assert_eq!(asset["size"], bytes.len() as u64);
    let duration = support::ffprobe_duration(asset["downloadUrl"].as_str().unwrap()).await;
    assert!((duration - 10.0).abs() <= 0.5, "the MP4 lasts {duration} s");
    server.stop().await;
    node.remove().await;
}

/// A node's data (directory and database) and an API key, across restarts.
struct Node {
    dir: PathBuf,
    database_url: String,
    /// The throwaway PostgreSQL database, to drop at the end.
    postgres: Option<PostgresDatabase>,
    key: String,
}

impl Node {
    async fn new(backend: Backend) -> Node {
        let dir = temp_dir();
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.join("studio.db").display()),
                None,
            ),
            Backend::Postgres => {
                let database = PostgresDatabase::create().await;
                (database.url.clone(), Some(database))
            }
        };
        let out = studio()
            .args(["api-key", "create", "--name", "crash", "--data-dir"])
            .arg(&dir)
            .args(["--database-url", &database_url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        Node {
            key: created["key"].as_str().unwrap().to_string(),
            dir,
            database_url,
            postgres,
        }
    }

    /// Starts `studio serve` on this node's data; a short idle bound, so that work a killed
    /// server left is taken over within seconds.
    async fn start(&self) -> Studio {
        let mut command = studio();
        command
            .args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args(["--database-url", &self.database_url])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--rtmp-addr", "127.0.0.1:0", "--srt-addr", "127.0.0.1:0"])
            .args(["--webrtc-addr", "127.0.0.1:0"])
            .env("STUDIO_STREAM_IDLE_AFTER_SECS", "3")
            .env("STUDIO_LOG", "info");
        Studio::start(command).await
    }

    /// The phase of asset `id`, read from the database itself.
    async fn asset_phase(&self, id: &str) -> String {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.database_url)
            .await
            .unwrap();
        let row = sqlx::query("SELECT phase FROM assets WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        row.get::<String, _>("phase")
    }

    /// `is_active` of stream `id`, read from the database itself.
    async fn stream_active(&self, id: &str) -> i64 {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.database_url)
            .await
            .unwrap();
        let row = sqlx::query("SELECT is_active FROM streams WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        row.get::<i64, _>("is_active")
    }

    async fn remove(self) {
        if let Some(database) = &self.postgres {
            database.drop_it().await;
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
