//! The `studio` binary's commands, run as a user runs them.

use std::process::Command;

fn studio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_studio"))
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("studio-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn api_key_create_prints_one_json_line_and_the_key_works() {
    let dir = temp_dir();
    let run = |args: &[&str]| {
        let out = studio()
            .args(["api-key", "create", "--data-dir"])
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let first = run(&["--name", "one"]);
    for field in ["key", "id", "projectId", "userId"] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} in {first}"
        );
    }
    // The same local user and default project are reused; another project is created on demand.
    let second = run(&["--name", "two"]);
    assert_eq!(first["userId"], second["userId"]);
    assert_eq!(first["projectId"], second["projectId"]);
    assert_ne!(first["key"], second["key"]);
    let other = run(&["--name", "three", "--project", "staging", "--admin"]);
    assert_ne!(other["projectId"], first["projectId"]);

    // The database holds a hash, never the key itself.
    let db = std::fs::read(dir.join("studio.db")).unwrap();
    let key = first["key"].as_str().unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "the key is stored hashed"
    );

    // The key authenticates against a server started on that data directory.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = studio()
        .args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--rtmp-addr",
            "127.0.0.1:0",
            "--srt-addr",
            "127.0.0.1:0",
            "--webrtc-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/stream");
    let mut status = 0;
    for _ in 0..100 {
        if let Ok(out) = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Authorization: Bearer {key}"),
                &url,
            ])
            .output()
        {
            status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
            // curl writes 000 while nothing answers.
            if status != 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SIGTERM shuts the server down gracefully.
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let exit = server.wait().unwrap();
    assert_eq!(status, 200, "the new key lists streams");
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn configuration_errors_are_clear() {
    let out = studio()
        .args([
            "api-key",
            "create",
            "--name",
            "x",
            "--database-url",
            "mysql://nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database_url must start with sqlite://"),
        "{stderr}"
    );
}
