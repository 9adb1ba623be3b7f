//! The deployment files at the top of the repository: `docker-compose.yml`, `Dockerfile` and
//! `.dockerignore`. Images cannot be pulled here, so the compose file is resolved by Debian's
//! `docker-compose` (v1, which needs no Docker daemon for `config`; scripts/test-deps installs
//! it) and checked for the topology README.md's "Deployment" section describes; the Dockerfile
//! is checked against the binary the tests build (the FFmpeg libraries it links) and against
//! the settings the server knows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use studio_api::config::Config;

/// Services of the compose file, and the studio nodes among them.
const SERVICES: &[&str] = &["minio", "minio-bucket", "postgres", "studio-1", "studio-2"];
const NODES: &[&str] = &["studio-1", "studio-2"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
fn run(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e} (scripts/test-deps installs it)"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `docker-compose config` of the repository's compose file, as JSON. The variables the file
/// interpolates are removed from its environment, so their defaults are what is checked.
fn resolved_compose() -> Value {
    let mut command = Command::new("docker-compose");
    command
        .arg("-f")
        .arg(root().join("docker-compose.yml"))
        .arg("config");
    for name in [
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "STUDIO_PUBLIC_URL",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
    ] {
        command.env_remove(name);
    }
    let yaml = run(&mut command, "docker-compose config");
    // Debian's docker-compose depends on python3-yaml: no YAML crate needed.
    let mut to_json = Command::new("python3");
    to_json
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = to_json.spawn().expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "YAML to JSON: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other}"),
    }
}

/// A service's environment as name -> value (compose resolves lists and maps to a map).
fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|env| env.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

/// A healthcheck's command as one string.
fn healthcheck(service: &Value, name: &str) -> String {
    match &service["healthcheck"]["test"] {
        Value::Array(parts) => parts.iter().map(text).collect::<Vec<_>>().join(" "),
        Value::String(s) => s.clone(),
        other => panic!("{name} has no healthcheck: {other}"),
    }
}

/// Published ports of a service as (host port, container port, protocol).
fn published_ports(service: &Value) -> Vec<(u16, u16, String)> {
    let Some(ports) = service["ports"].as_array() else {
        return Vec::new();
    };
    ports
        .iter()
        .filter_map(|port| {
            let published = port.get("published")?;
            Some((
                text(published).parse().unwrap(),
                text(&port["target"]).parse().unwrap(),
                port.get("protocol")
                    .map(text)
                    .unwrap_or_else(|| "tcp".into()),
            ))
        })
        .collect()
}

/// Checks that every `STUDIO_*` name of `env` is a setting the server knows and that every value
/// is one its setting can take, as `studio serve` would load them; returns the configuration.
fn assert_settings(env: &BTreeMap<String, String>, whence: &str) -> Config {
    let (config, ignored) = Config::from_sources(
        None,
        env.iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    )
    .unwrap_or_else(|e| panic!("{whence}: the server would refuse this environment: {e:#}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("{whence}: {e:#}"));
    assert!(
        ignored.is_empty(),
        "{whence} sets STUDIO_* variables that name no setting: {ignored:?}"
    );
    config
}

#[test]
fn compose_file_resolves_to_two_nodes_on_one_database_and_one_bucket() {
    let config = resolved_compose();
    let services = config["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, SERVICES.iter().copied().collect(), "services");

    // PostgreSQL 15 on a volume, healthy once it accepts connections.
    let postgres = &services["postgres"];
    assert!(
        text(&postgres["image"]).starts_with("postgres:15"),
        "{}",
        postgres["image"]
    );
    assert!(healthcheck(postgres, "postgres").contains("pg_isready"));
    assert!(
        postgres["volumes"]
            .to_string()
            .contains("/var/lib/postgresql/data"),
        "postgres keeps its data in a volume"
    );
    let pg_env = environment(postgres);

    // MinIO on a volume, with a health check, and a one-shot service that makes the bucket.
    let minio = &services["minio"];
    assert!(text(&minio["image"]).starts_with("minio/minio:"));
    assert!(minio["volumes"].to_string().contains(":/data"));
    healthcheck(minio, "minio");
    let minio_env = environment(minio);
    let bucket_job = &services["minio-bucket"];
    assert_eq!(
        bucket_job["depends_on"]["minio"]["condition"], "service_healthy",
        "the bucket is made once MinIO is up"
    );
    let bucket_command = format!("{} {}", bucket_job["entrypoint"], bucket_job["command"]);
    assert!(bucket_command.contains("mc mb"), "{bucket_command}");

    let mut databases = BTreeSet::new();
    let mut stores = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (name, service) in services {
        for (host, _, protocol) in published_ports(service) {
            assert!(
                host_ports.insert((host, protocol.clone())),
                "host port {host}/{protocol} published twice"
            );
        }
        if !NODES.contains(&name.as_str()) {
            continue;
        }
        // Built from the repository's Dockerfile.
        let context = text(&service["build"]["context"]);
        assert_eq!(
            Path::new(&context).canonicalize().unwrap(),
            root().canonicalize().unwrap(),
            "{name} is built from the Dockerfile at the top"
        );
        // Started once its database and store are ready.
        let depends = &service["depends_on"];
        assert_eq!(
            depends["postgres"]["condition"], "service_healthy",
            "{name}"
        );
        assert_eq!(depends["minio"]["condition"], "service_healthy", "{name}");
        assert_eq!(
            depends["minio-bucket"]["condition"], "service_completed_successfully",
            "{name}"
        );
        assert!(
            healthcheck(service, name).contains("/api/healthz"),
            "{name} is healthy when /api/healthz says so"
        );

        let env = environment(service);
        let settings = assert_settings(&env, &format!("docker-compose.yml, service {name}"));
        // Docker waits long enough for a graceful stop before it kills.
        let grace = text(&service["stop_grace_period"]);
        let grace: u64 = grace
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: stop_grace_period {grace} in seconds"));
        assert!(
            grace > settings.shutdown_timeout_secs,
            "{name}: stop_grace_period {grace}s must exceed shutdown_timeout_secs"
        );

        // Every node on the same PostgreSQL database, with the credentials it was given.
        let database = settings.database_url();
        let url = url::Url::parse(&database).unwrap();
        assert_eq!(url.scheme(), "postgres", "{name}");
        assert_eq!(url.host_str(), Some("postgres"), "{name}");
        assert_eq!(url.username(), pg_env["POSTGRES_USER"], "{name}");
        assert_eq!(url.password(), Some(pg_env["POSTGRES_PASSWORD"].as_str()));
        assert_eq!(url.path(), format!("/{}", pg_env["POSTGRES_DB"]), "{name}");
        databases.insert(database);

        // Every node on the same bucket of that MinIO, path-style, with its root credentials.
        let store = env["STUDIO_STORAGE__URL"].clone();
        let bucket = store
            .strip_prefix("s3://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{name}: STUDIO_STORAGE__URL {store} is not s3://BUCKET"));
        assert!(
            bucket_command.contains(&format!("/{bucket}")),
            "{name}'s bucket {bucket} is the one minio-bucket makes: {bucket_command}"
        );
        stores.insert(store);
        assert_eq!(env["STUDIO_STORAGE__FORCE_PATH_STYLE"], "true", "{name}");
        assert_eq!(env["AWS_ACCESS_KEY_ID"], minio_env["MINIO_ROOT_USER"]);
        assert_eq!(
            env["AWS_SECRET_ACCESS_KEY"],
            minio_env["MINIO_ROOT_PASSWORD"]
        );
        assert!(!env["AWS_REGION"].is_empty(), "{name}");
        assert_eq!(
            url::Url::parse(&env["AWS_ENDPOINT_URL"])
                .unwrap()
                .host_str(),
            Some("minio"),
            "{name}"
        );
        assert!(
            settings.public_url.is_some(),
            "{name} sets STUDIO_PUBLIC_URL"
        );
    }
    assert_eq!(
        databases.len(),
        1,
        "one database for all nodes: {databases:?}"
    );
    assert_eq!(stores.len(), 1, "one bucket for all nodes: {stores:?}");

    // Node 1 takes HTTP, RTMP, SRT and WebRTC on their usual ports; node 2 answers HTTP on 8081.
    let node1 = published_ports(&services["studio-1"]);
    for port in [
        (8080, 8080, "tcp"),
        (1935, 1935, "tcp"),
        (2935, 2935, "udp"),
        (8189, 8189, "udp"),
    ] {
        assert!(
            node1.iter().any(|(h, t, p)| (*h, *t, p.as_str()) == port),
            "studio-1 publishes {port:?}: {node1:?}"
        );
    }
    let node2 = published_ports(&services["studio-2"]);
    assert!(
        node2
            .iter()
            .any(|(h, t, p)| (*h, *t, p.as_str()) == (8081, 8080, "tcp")),
        "studio-2 publishes its HTTP on 8081: {node2:?}"
    );
    // WebRTC peers are told the port the node binds: each node's is published unchanged.
    for (name, ports) in [("studio-1", &node1), ("studio-2", &node2)] {
        let env = environment(&services[name]);
        let bound: u16 = env.get("STUDIO_WEBRTC_ADDR").map_or(8189, |addr| {
            addr.rsplit(':').next().unwrap().parse().unwrap()
        });
        assert!(
            ports
                .iter()
                .any(|(h, t, p)| (*h, *t, p.as_str()) == (bound, bound, "udp")),
            "{name} publishes its WebRTC port {bound}/udp unchanged: {ports:?}"
        );
        assert!(
            env.contains_key("STUDIO_WEBRTC__PUBLIC_IPS"),
            "{name} tells peers the host's address"
        );
    }
    assert!(config["volumes"].get("postgres-data").is_some());
    assert!(config["volumes"].get("minio-data").is_some());
}

/// The Dockerfile's stages: (base image, instructions joined across line continuations).
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        // Comments (and the syntax directive) and blank lines, also inside a continuation.
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for instruction in instructions {
        if let Some(from) = instruction.strip_prefix("FROM ") {
            let image = from.split_whitespace().next().unwrap().to_string();
            stages.push((image, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(instruction);
        }
    }
    stages
}

/// The packages `apt-get install` installs in a stage.
fn apt_installs(stage: &[String]) -> BTreeSet<String> {
    let mut packages = BTreeSet::new();
    for instruction in stage {
        for command in instruction.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(at) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                packages.extend(
                    words[at + 2..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                );
            }
        }
    }
    packages
}

/// The Debian package that ships a shared library, by Debian's naming of library packages:
/// `libavcodec.so.59` is in `libavcodec59`, `libfoo2.so.1` in `libfoo2-1`.
fn debian_package(soname: &str) -> String {
    let (stem, version) = soname.split_once(".so.").unwrap();
    let stem = stem.to_ascii_lowercase().replace('_', "-");
    if stem.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{stem}-{version}")
    } else {
        format!("{stem}{version}")
    }
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_with_the_libraries_it_links() {
    let stages = dockerfile_stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (builder_image, builder) = &stages[0];
    let (runtime_image, runtime) = &stages[1];
    assert_eq!(
        builder_image, "rust:1.95-bookworm",
        "the toolchain of the project"
    );
    assert_eq!(runtime_image, "debian:bookworm-slim");
    assert!(
        builder
            .iter()
            .any(|i| i.contains("cargo build --release --locked -p studio-api --bin studio")),
        "{builder:?}"
    );
    // The builder installs the FFmpeg development libraries scripts/build-deps installs.
    let build_deps = read("scripts/build-deps");
    let libs = build_deps
        .lines()
        .find_map(|line| line.trim().strip_prefix("for lib in "))
        .and_then(|rest| rest.strip_suffix("; do"))
        .expect("scripts/build-deps lists FFmpeg's libraries");
    let builder_packages = apt_installs(builder);
    for lib in libs.split_whitespace() {
        assert!(
            builder_packages.contains(&format!("{lib}-dev")),
            "the builder installs {lib}-dev: {builder_packages:?}"
        );
    }
    for package in ["clang", "pkg-config"] {
        assert!(builder_packages.contains(package), "builder: {package}");
    }

    // The runtime stage has every library the binary links that the base image lacks.
    let runtime_packages = apt_installs(runtime);
    let readelf = run(
        Command::new("readelf").args(["-d", env!("CARGO_BIN_EXE_studio")]),
        "readelf -d studio",
    );
    let needed: Vec<&str> = readelf
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| line.split('[').nth(1)?.strip_suffix(']'))
        .collect();
    // In debian:bookworm-slim already (libc6, libgcc-s1, libstdc++6).
    let in_base = |soname: &str| {
        soname.starts_with("ld-linux")
            || [
                "libc.so.",
                "libm.so.",
                "libgcc_s.so.",
                "libpthread.so.",
                "libdl.so.",
                "librt.so.",
                "libstdc++.so.",
            ]
            .iter()
            .any(|prefix| soname.starts_with(prefix))
    };
    let linked: Vec<String> = needed
        .iter()
        .filter(|soname| !in_base(soname))
        .map(|soname| debian_package(soname))
        .collect();
    assert!(
        linked.iter().any(|p| p.starts_with("libavcodec")),
        "the binary links FFmpeg: {needed:?}"
    );
    for package in &linked {
        assert!(
            runtime_packages.contains(package),
            "the runtime stage installs {package}, which the binary links: {runtime_packages:?}"
        );
    }
    assert!(runtime_packages.contains("ca-certificates"));

    let instruction = |keyword: &str| -> Vec<&String> {
        runtime
            .iter()
            .filter(|i| i.starts_with(&format!("{keyword} ")))
            .collect()
    };
    // Not root.
    let user = instruction("USER");
    assert_eq!(user.len(), 1, "{user:?}");
    assert!(!matches!(user[0].trim(), "USER root" | "USER 0"));
    // The ports the server listens on.
    let expose = instruction("EXPOSE");
    let ports: BTreeSet<&str> = expose
        .iter()
        .flat_map(|i| i.split_whitespace().skip(1))
        .collect();
    assert_eq!(
        ports,
        ["8080", "1935", "2935/udp", "8189/udp"]
            .into_iter()
            .collect(),
        "EXPOSE"
    );
    // The health check asks /api/healthz of the port CMD listens on, with a tool the image has.
    let health = instruction("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("http://127.0.0.1:8080/api/healthz"));
    assert!(health[0].contains(" curl ") && runtime_packages.contains("curl"));
    assert_eq!(instruction("ENTRYPOINT"), [r#"ENTRYPOINT ["studio"]"#]);
    assert_eq!(
        instruction("CMD"),
        [r#"CMD ["serve", "--http-addr", "0.0.0.0:8080"]"#]
    );
    // The data directory is a volume, named by a setting the server knows.
    let mut env = BTreeMap::new();
    for i in instruction("ENV") {
        let (name, value) = i["ENV ".len()..].split_once('=').expect("ENV NAME=VALUE");
        env.insert(name.trim().to_string(), value.trim().to_string());
    }
    let settings = assert_settings(&env, "Dockerfile");
    let volume = instruction("VOLUME");
    assert_eq!(
        volume,
        [&format!("VOLUME {}", settings.data_dir.display())],
        "the data directory is a volume"
    );
    let help = run(
        Command::new(env!("CARGO_BIN_EXE_studio")).args(["serve", "--help"]),
        "studio serve --help",
    );
    assert!(help.contains("--http-addr"), "CMD's flag exists");
}

#[test]
fn dockerignore_keeps_build_outputs_and_data_out_of_the_context() {
    let ignore = read(".dockerignore");
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for pattern in ["target/", "**/node_modules/", "data/", ".git"] {
        assert!(patterns.contains(pattern), "{pattern} in .dockerignore");
    }
}
