//! The `studio` binary as a child process: started, watched through its log, stopped or
//! killed.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
