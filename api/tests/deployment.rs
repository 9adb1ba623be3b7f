//! The `studio` binary as deployments run it: configured from the environment of a Kubernetes
//! pod, failing to start with the cause and without credentials.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::{Studio, studio, temp_dir};

/// What Kubernetes injects into every pod when a Service named `studio` exists.
const KUBERNETES_SERVICE_LINKS: &[(&str, &str)] = &[
    ("STUDIO_SERVICE_HOST", "10.96.0.12"),
    ("STUDIO_SERVICE_PORT", "8080"),
    ("STUDIO_SERVICE_PORT_HTTP", "8080"),
    ("STUDIO_PORT", "tcp://10.96.0.12:8080"),
    ("STUDIO_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
    ("STUDIO_PORT_8080_TCP_PROTO", "tcp"),
    ("STUDIO_PORT_8080_TCP_PORT", "8080"),
    ("STUDIO_PORT_8080_TCP_ADDR", "10.96.0.12"),
];

/// Every `STUDIO_*` variable the help of `serve` names.
fn variables_named_by_help() -> Vec<String> {
    let help = studio().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut names: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("STUDIO_") && word.len() > "STUDIO_".len())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The server starts in an environment holding every variable `--help` names, each with a
/// valid value, plus Kubernetes' service links and an unknown variable holding a secret. The
/// unknown ones are reported once, by name only; settings from variables take effect, and a
/// flag wins over its variable.
#[tokio::test]
async fn every_variable_help_names_and_kubernetes_service_links_are_accepted() {
    let dir = temp_dir();
    let config_file = dir.join("studio.toml");
    std::fs::write(&config_file, "[webhooks]\ntimeout_ms = 1234\n").unwrap();
    let database = dir.join("from-env.db");
    // The variable names a port another listener holds: only the flag lets the server start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let mut env = BTreeMap::new();
    for name in variables_named_by_help() {
        let value = match name.as_str() {
            "STUDIO_CONFIG" => config_file.display().to_string(),
            "STUDIO_DATA_DIR" => dir.join("data").display().to_string(),
            "STUDIO_DATABASE_URL" => format!("sqlite://{}", database.display()),
            "STUDIO_HTTP_ADDR" => taken_addr.clone(),
            "STUDIO_RTMP_ADDR" | "STUDIO_SRT_ADDR" | "STUDIO_WEBRTC_ADDR" => {
                "127.0.0.1:0".to_string()
            }
            "STUDIO_PUBLIC_URL" => "https://video.example".to_string(),
            "STUDIO_STORAGE__URL" => format!("file://{}", dir.join("media").display()),
            "STUDIO_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS" | "STUDIO_ALLOW_PRIVATE_DESTINATIONS" => {
                "true".to_string()
            }
            "STUDIO_LOG_JSON" => "false".to_string(),
            other => panic!("{other} is named by --help: give it a value in this test"),
        };
        env.insert(name, value);
    }
    assert!(env.contains_key("STUDIO_DATABASE_URL"), "{env:?}");
    for (name, value) in KUBERNETES_SERVICE_LINKS {
        env.insert(name.to_string(), value.to_string());
    }
    // Named by the help of earlier versions, not a setting: ignored.
    env.insert("STUDIO_ALLOW_PRIVATE_DESTINATIONS".into(), "true".into());
    // An operator's mistake holding a secret: ignored, and never printed.
    env.insert("STUDIO_DATABASE_PASSWORD".into(), "top-secret-value".into());

    let mut command = studio();
    command
        .args(["serve", "--http-addr", "127.0.0.1:0"])
        .envs(&env);
    let server = Studio::start(command).await;
    let health = reqwest::get(format!("http://{}/api/healthz", server.http))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(database.exists(), "STUDIO_DATABASE_URL took effect");
    let log = server.stop().await;

    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("name no setting"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {log}");
    for (name, _) in KUBERNETES_SERVICE_LINKS {
        assert!(warnings[0].contains(name), "{name} in {}", warnings[0]);
    }
    assert!(warnings[0].contains("STUDIO_ALLOW_PRIVATE_DESTINATIONS"));
    assert!(warnings[0].contains("STUDIO_DATABASE_PASSWORD"));
    assert!(
        !log.contains("top-secret-value") && !log.contains("10.96.0.12"),
        "values stay out of the log: {log}"
    );
    drop(taken);
    std::fs::remove_dir_all(&dir).ok();
}

/// A refused PostgreSQL connection is reported as such (not only as a pool timeout), and no
/// message repeats the password of the database URL.
#[test]
fn a_refused_database_connection_says_so_without_the_password() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://studio:Pa55-w0rd-xyz@127.0.0.1:{closed}/studio");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_studio"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success());
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let serve = run(&[
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--rtmp-addr",
        "127.0.0.1:0",
        "--srt-addr",
        "127.0.0.1:0",
        "--webrtc-addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
    ]);
    assert!(
        serve.to_lowercase().contains("connection refused"),
        "the cause is kept: {serve}"
    );
    assert!(
        serve.contains(&format!("postgres://studio:***@127.0.0.1:{closed}/studio")),
        "{serve}"
    );
    let create_key = run(&["api-key", "create", "--name", "k", "--database-url", &url]);
    assert!(
        create_key.to_lowercase().contains("connection refused"),
        "{create_key}"
    );
    let unsupported = run(&[
        "api-key",
        "create",
        "--name",
        "k",
        "--database-url",
        "mysql://studio:Pa55-w0rd-xyz@db/studio",
    ]);
    assert!(
        unsupported.contains("database_url must start with"),
        "{unsupported}"
    );
    for output in [serve, create_key, unsupported] {
        assert!(!output.contains("Pa55-w0rd-xyz"), "{output}");
    }
}
