//! CPU cost of the playback gate per request, in-process (no HTTP, no store): `admit` for public
//! content, for gated content with the grant players send with every segment, and with a JWT on
//! every request (a cookie; its verification cached). Prints ns per call; bench/README.md has the
//! results and the end-to-end ratio (bench/playback_gate.py).
//!
//!     cargo bench -p studio-tests --bench playback_gate

use std::time::Instant;

use serde_json::json;
use studio_api::access_control::{Admission, Content, Credentials};
use studio_api::streams::model::PlaybackPolicy;
use studio_tests::{Backend, TestApp, workspace_root};

const CALLS: u32 = 200_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app
        .post("/access-control/signing-key", json!({}))
        .await
        .json;
    let stream = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let out = std::process::Command::new("node")
        .args([
            "tests/player/sign-jwt.mjs",
            key["privateKey"].as_str().unwrap(),
            key["publicKey"].as_str().unwrap(),
            &pid,
        ])
        .current_dir(workspace_root())
        .output()
        .expect("node (scripts/test-deps installs it)");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let gate = app.server.as_ref().unwrap().state.gate();
    let jwt_policy: PlaybackPolicy = serde_json::from_value(json!({"type": "jwt"})).unwrap();
    let public = Content {
        project_id: &app.project_id,
        playback_id: &pid,
        policy: None,
    };
    let gated = Content {
        policy: Some(&jwt_policy),
        ..public
    };
    let with_jwt = Credentials {
        jwt: Some(token),
        ..Default::default()
    };
    let grant = match gate.admit(&gated, &with_jwt).await.unwrap() {
        Admission::Granted { grant, .. } => grant,
        Admission::Open => panic!("the gated content was open"),
    };
    let with_grant = Credentials {
        grant: Some(grant),
        ..Default::default()
    };
    let nobody = Credentials::default();
    let cases: [(&str, &Content, &Credentials); 3] = [
        ("public", &public, &nobody),
        ("grant", &gated, &with_grant),
        ("jwt (cached)", &gated, &with_jwt),
    ];
    println!("| admit | ns per call |");
    println!("|---|---|");
    for (name, content, credentials) in cases {
        for _ in 0..1_000 {
            gate.admit(content, credentials).await.unwrap();
        }
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(gate.admit(content, credentials).await.unwrap());
        }
        let ns = started.elapsed().as_nanos() as f64 / CALLS as f64;
        println!("| {name} | {ns:.0} |");
    }
}
