//! The playback gate with real clients: playback JWTs signed by `signAccessJwt` of the official
//! `@livepeer/react` package and by PyJWT, played by ffprobe and by hls.js in headless Chromium;
//! every way a JWT can fail; access keys judged by the project's webhook (a receiver on loopback
//! that allows, refuses or says nothing); `allowedOrigins`. A live stream is published for real,
//! so what the gate lets through plays.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::{Backend, Reply, TestApp, eventually, on_both_databases, workspace_root};
use tokio::process::Command;

use studio_tests::receiver::Received;

use super::clients::python;
use super::live::publish;

on_both_databases!(
    the_jwt_gate_admits_signed_viewers_only,
    the_webhook_gate_asks_the_projects_webhook,
    gated_assets_open_with_a_jwt_only,
);

/// A GET of a playback URL with extra headers, no API key.
async fn fetch(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = app.http.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::from(request.send().await.expect("the server answers")).await
}

/// `signAccessJwt` of `@livepeer/react/crypto` (tests/player/sign-jwt.mjs).
pub(crate) async fn sign_with_livepeer_react(key: &Value, playback_id: &str) -> String {
    let out = Command::new("node")
        .args([
            "tests/player/sign-jwt.mjs",
            key["privateKey"].as_str().unwrap(),
            key["publicKey"].as_str().unwrap(),
            playback_id,
        ])
        .current_dir(workspace_root())
        .output()
        .await
        .expect("running node (scripts/test-deps installs it and tests/player's node_modules)");
    assert!(
        out.status.success(),
        "sign-jwt.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// PyJWT (tests/sdk/python/sign_jwt.py): `claims` with relative times as "+N"/"-N" strings.
async fn sign_with_pyjwt(private_key: &str, claims: Value, algorithm: &str) -> String {
    let out = Command::new(python())
        .args([
            "tests/sdk/python/sign_jwt.py",
            private_key,
            &claims.to_string(),
            algorithm,
        ])
        .current_dir(workspace_root())
        .output()
        .await
        .expect("running the venv's Python (scripts/test-deps makes it)");
    assert!(
        out.status.success(),
        "sign_jwt.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The width and height ffprobe reads first from `url`, as a player does (master, media
/// playlist, first segment): `"640,360"`, or `""` when it reads nothing.
async fn ffprobe_size(url: &str) -> (String, String) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .await
        .expect("running ffprobe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().map(str::trim).find(|l| !l.is_empty());
    (
        first.unwrap_or("").to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The first URI line of a playlist.
fn first_uri(playlist: &str) -> &str {
    playlist
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no URI in {playlist}"))
}

/// Publishes to a new stream with `policy` and waits until its master and media playlists and a
/// segment exist (fetched with `credential`, a query string).
async fn live_gated_stream(
    app: &TestApp,
    policy: Value,
    seconds: u32,
    credential: &str,
) -> (Value, tokio::process::Child, String) {
    let stream = app
        .create_stream(json!({"name": "gated", "playbackPolicy": policy}))
        .await;
    let encoder = publish(
        &app.rtmp_url(stream["streamKey"].as_str().unwrap()),
        seconds,
    );
    let master = format!(
        "{}/hls/{}/index.m3u8",
        app.base,
        stream["playbackId"].as_str().unwrap()
    );
    let ready = eventually(Duration::from_secs(20), || async {
        let reply = fetch(app, &format!("{master}?{credential}"), &[]).await;
        if reply.status != 200 {
            return None;
        }
        let media = fetch(app, &media_url(&master, first_uri(&reply.text)), &[]).await;
        (media.status == 200 && media.text.contains("#EXTINF")).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the gated stream did not become playable");
    (stream, encoder, master)
}

/// A URI of a playlist at `base_url`, made absolute.
fn media_url(base_url: &str, uri: &str) -> String {
    let dir = &base_url[..base_url.rfind('/').unwrap() + 1];
    format!("{dir}{uri}")
}

async fn the_jwt_gate_admits_signed_viewers_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.post("/access-control/signing-key", json!({})).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let key = created.json;
    let key_id = key["id"].as_str().unwrap().to_string();

    // Wait for the stream with a token minted up front (the stream's playback ID is needed
    // first, so the token is made by the loop's first try).
    let stream = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let token = sign_with_livepeer_react(&key, &pid).await;
    let mut encoder = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 45);
    let master = format!("{}/hls/{pid}/index.m3u8", app.base);
    let with_jwt = format!("{master}?jwt={token}");
    let ready = eventually(Duration::from_secs(20), || async {
        let reply = fetch(&app, &with_jwt, &[]).await;
        (reply.status == 200).then_some(())?;
        let media = fetch(&app, &media_url(&master, first_uri(&reply.text)), &[]).await;
        (media.status == 200 && media.text.contains("#EXTINF")).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the gated stream did not become playable");

    // No credential: 401 with a Studio error body a browser page can read.
    let refused = fetch(&app, &master, &[("origin", "https://app.example.com")]).await;
    refused.assert_error(401, "playback JWT");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );

    // signAccessJwt's token opens the master playlist; every URI in it carries a grant, and so
    // do the media playlist's segment URIs, which open with it alone.
    let reply = fetch(&app, &with_jwt, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("private, no-cache"));
    let media_uri = first_uri(&reply.text).to_string();
    assert!(media_uri.contains("?grant="), "{}", reply.text);
    let media = fetch(&app, &media_url(&master, &media_uri), &[]).await;
    assert_eq!(media.status, 200, "{}", media.text);
    let segment_uri = first_uri(&media.text).to_string();
    assert!(segment_uri.contains(".ts?grant="), "{}", media.text);
    let segment_url = media_url(&media_url(&master, &media_uri), &segment_uri);
    let segment = fetch(&app, &segment_url, &[]).await;
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("content-type"), Some("video/mp2t"));
    assert!(
        segment
            .header("cache-control")
            .unwrap()
            .starts_with("private"),
        "gated media is not for shared caches"
    );
    // The header and the cookie work as the query does.
    assert_eq!(
        fetch(&app, &master, &[("livepeer-jwt", &token)])
            .await
            .status,
        200
    );
    let cookie = format!("theme=dark; Livepeer-Jwt={token}");
    assert_eq!(
        fetch(&app, &master, &[("cookie", &cookie)]).await.status,
        200
    );
    // A grant altered, or used for other content, is refused.
    let tampered = segment_url.replace("grant=", "grant=x");
    fetch(&app, &tampered, &[]).await.assert_error(403, "grant");
    // Beside a credential (a cookie, say), a bad grant gives way to the credential.
    assert_eq!(
        fetch(&app, &format!("{tampered}&jwt={token}"), &[])
            .await
            .status,
        200
    );
    let other = app
        .create_stream(json!({"name": "other", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let grant = &segment_url[segment_url.find("grant=").unwrap()..];
    let elsewhere = format!(
        "{}/hls/{}/index.m3u8?{grant}",
        app.base,
        other["playbackId"].as_str().unwrap()
    );
    fetch(&app, &elsewhere, &[])
        .await
        .assert_error(403, "another playback ID");

    // Real players: ffprobe follows master, media playlist and segment with the grant...
    let (size, stderr) = ffprobe_size(&with_jwt).await;
    assert_eq!(size, "640,360", "ffprobe with ?jwt=: {stderr}");
    let (size, _) = ffprobe_size(&master).await;
    assert_eq!(size, "", "ffprobe without a token reads nothing");
    // ...and hls.js in headless Chromium plays it from another origin.
    let player = Command::new("node")
        .args(["tests/player/play.mjs", &with_jwt])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let played = tokio::time::timeout(Duration::from_secs(45), player)
        .await
        .expect("play.mjs did not finish within 45 s")
        .expect("running node tests/player/play.mjs");
    assert!(
        played.status.success(),
        "hls.js did not play the gated stream:\n{}\n{}",
        String::from_utf8_lossy(&played.stdout),
        String::from_utf8_lossy(&played.stderr)
    );

    // Every way a token fails: 403 with the reason.
    let private = key["privateKey"].as_str().unwrap();
    let public = key["publicKey"].as_str().unwrap();
    let claims =
        |sub: &str, exp: &str| json!({"sub": sub, "pub": public, "exp": exp, "action": "pull"});
    let expect_refusal = |token: String, fragment: &'static str| {
        let url = format!("{master}?jwt={token}");
        let app = &app;
        async move { fetch(app, &url, &[]).await.assert_error(403, fragment) }
    };
    expect_refusal(
        sign_with_pyjwt(private, claims(&pid, "-60"), "ES256").await,
        "expired",
    )
    .await;
    expect_refusal(
        sign_with_pyjwt(private, claims("someone-elses-id", "+600"), "ES256").await,
        "another playback ID",
    )
    .await;
    expect_refusal(
        sign_with_pyjwt(private, claims(&pid, "+691200"), "ES256").await,
        "more than 7 days",
    )
    .await;
    expect_refusal(
        sign_with_pyjwt(
            private,
            json!({"sub": pid, "pub": public, "exp": "+600", "nbf": "+300"}),
            "ES256",
        )
        .await,
        "not valid yet",
    )
    .await;
    expect_refusal(
        sign_with_pyjwt("a shared secret", claims(&pid, "+600"), "HS256").await,
        "ES256",
    )
    .await;
    expect_refusal("not-a-jwt".into(), "not a JWT").await;
    // A key of another project, whether named as itself or as ours (a forged signature).
    let other_project = app.other_project("elsewhere").await;
    let foreign = app
        .call(
            Some(&other_project.key),
            Method::POST,
            "/access-control/signing-key",
            Some(json!({})),
        )
        .await
        .json;
    let foreign_private = foreign["privateKey"].as_str().unwrap();
    expect_refusal(
        sign_with_pyjwt(
            foreign_private,
            json!({"sub": pid, "pub": foreign["publicKey"], "exp": "+600"}),
            "ES256",
        )
        .await,
        "not a signing key of this content's project",
    )
    .await;
    expect_refusal(
        sign_with_pyjwt(foreign_private, claims(&pid, "+600"), "ES256").await,
        "signature does not verify",
    )
    .await;

    // PyJWT's own token with the claims signAccessJwt uses is as good.
    let pyjwt = sign_with_pyjwt(private, claims(&pid, "+600"), "ES256").await;
    assert_eq!(
        fetch(&app, &format!("{master}?jwt={pyjwt}"), &[])
            .await
            .status,
        200
    );

    // The key's use is recorded.
    let seen = eventually(Duration::from_secs(5), || async {
        let reply = app
            .get(&format!("/access-control/signing-key/{key_id}"))
            .await;
        reply.json["lastSeen"].as_i64()
    })
    .await;
    assert!(seen.is_some(), "lastSeen of the signing key is set");

    // Disabling the key stops its tokens and the grants they gave, at once; enabling brings
    // them back; deleting stops them for good.
    let patched = app
        .patch(
            &format!("/access-control/signing-key/{key_id}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    fetch(&app, &with_jwt, &[])
        .await
        .assert_error(403, "disabled");
    fetch(&app, &segment_url, &[])
        .await
        .assert_error(403, "disabled");
    app.patch(
        &format!("/access-control/signing-key/{key_id}"),
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(fetch(&app, &segment_url, &[]).await.status, 200);
    assert_eq!(
        app.delete(&format!("/access-control/signing-key/{key_id}"))
            .await
            .status,
        204
    );
    fetch(&app, &with_jwt, &[])
        .await
        .assert_error(403, "not a signing key");
    fetch(&app, &segment_url, &[])
        .await
        .assert_error(403, "not a signing key");

    // allowedOrigins: browser pages elsewhere are refused whatever they hold.
    let second = app
        .post("/access-control/signing-key", json!({}))
        .await
        .json;
    let token = sign_with_livepeer_react(&second, &pid).await;
    let with_jwt = format!("{master}?jwt={token}");
    let patched = app
        .patch(
            &format!("/stream/{}", stream["id"].as_str().unwrap()),
            json!({"playbackPolicy": {"type": "jwt", "allowedOrigins": ["https://app.example.com"]}}),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let from_elsewhere = fetch(&app, &with_jwt, &[("origin", "https://evil.example")]).await;
    from_elsewhere.assert_error(403, "https://evil.example");
    assert_eq!(
        from_elsewhere.header("access-control-allow-origin"),
        Some("https://evil.example"),
        "the page can read why"
    );
    let by_referer = fetch(
        &app,
        &with_jwt,
        &[("referer", "https://evil.example/watch")],
    )
    .await;
    assert_eq!(by_referer.status, 403);
    assert_eq!(
        fetch(&app, &with_jwt, &[("origin", "https://app.example.com")])
            .await
            .status,
        200
    );
    assert_eq!(
        fetch(&app, &with_jwt, &[]).await.status,
        200,
        "not a browser"
    );
    encoder.kill().await.ok();
}

/// What the access webhook receiver saw and how it answers.
#[derive(Default)]
struct Gatekeeper {
    requests: Vec<Received>,
    /// Access keys it refuses from now on.
    revoked: HashSet<String>,
}

/// A project's access webhook on loopback: allows keys starting with `good`, takes 8 s over
/// `slow`, refuses the rest (and revoked keys).
async fn start_gatekeeper() -> (String, Arc<Mutex<Gatekeeper>>) {
    let shared = Arc::new(Mutex::new(Gatekeeper::default()));
    let state = shared.clone();
    let app = axum::Router::new().route(
        "/gate",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let key = json["accessKey"].as_str().unwrap_or("").to_string();
                    let revoked = {
                        let mut state = state.lock().unwrap();
                        state.requests.push(Received {
                            headers,
                            body: body.clone(),
                            at: Instant::now(),
                        });
                        state.revoked.contains(&key)
                    };
                    if key == "slow" {
                        tokio::time::sleep(Duration::from_secs(8)).await;
                    }
                    if key.starts_with("good") && !revoked || key == "slow" {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::FORBIDDEN
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/gate"), shared)
}

async fn the_webhook_gate_asks_the_projects_webhook(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (url, gatekeeper) = start_gatekeeper().await;
    let webhook = app
        .post(
            "/webhook",
            json!({"name": "gate", "url": url, "events": ["playback.accessControl"]}),
        )
        .await;
    assert_eq!(webhook.status, 200, "{}", webhook.text);
    let secret = webhook.json["sharedSecret"].as_str().unwrap().to_string();
    let policy = json!({
        "type": "webhook",
        "webhookId": webhook.json["id"],
        "webhookContext": {"plan": "gold"},
        "refreshInterval": 2,
    });
    let (_stream, mut encoder, master) =
        live_gated_stream(&app, policy, 40, "accessKey=good-1").await;
    let asked = gatekeeper.lock().unwrap().requests.len();
    assert!(asked >= 1);

    // What the webhook is asked, signed with its shared secret.
    {
        let state = gatekeeper.lock().unwrap();
        let asked = &state.requests[0];
        let body = asked.json();
        assert_eq!(body["accessKey"], "good-1");
        assert_eq!(body["context"], json!({"plan": "gold"}));
        assert!(body["timestamp"].as_i64().is_some(), "{body}");
        assert!(
            asked.signature_valid(&secret),
            "Livepeer-Signature verifies"
        );
    }

    // No key: 401. Keys the webhook refuses: 403. A webhook that does not answer: 403 in
    // about its deadline, not a hung request.
    fetch(&app, &master, &[])
        .await
        .assert_error(401, "access key");
    fetch(&app, &format!("{master}?accessKey=nope"), &[])
        .await
        .assert_error(403, "refused");
    let started = Instant::now();
    fetch(&app, &format!("{master}?accessKey=slow"), &[])
        .await
        .assert_error(403, "did not answer");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );

    // An approved key plays with ffprobe, by query, header or cookie; the decision is cached.
    let (size, stderr) = ffprobe_size(&format!("{master}?accessKey=good-2")).await;
    assert_eq!(size, "640,360", "ffprobe with ?accessKey=: {stderr}");
    let before = gatekeeper.lock().unwrap().requests.len();
    assert_eq!(
        fetch(&app, &master, &[("livepeer-access-key", "good-2")])
            .await
            .status,
        200
    );
    assert_eq!(
        fetch(&app, &master, &[("cookie", "Livepeer-Access-Key=good-2")])
            .await
            .status,
        200
    );
    assert_eq!(gatekeeper.lock().unwrap().requests.len(), before, "cached");

    // After the refresh interval the webhook is asked again: a key revoked meanwhile stops
    // playing, grants included.
    let reply = fetch(&app, &format!("{master}?accessKey=good-3"), &[]).await;
    assert_eq!(reply.status, 200);
    let media = media_url(&master, first_uri(&reply.text));
    assert_eq!(fetch(&app, &media, &[]).await.status, 200);
    gatekeeper.lock().unwrap().revoked.insert("good-3".into());
    assert_eq!(
        fetch(&app, &media, &[]).await.status,
        200,
        "within the interval"
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    fetch(&app, &media, &[]).await.assert_error(403, "refused");

    encoder.kill().await.ok();
}

/// Two nodes on one PostgreSQL database: a grant node A wrote is honoured by node B, and a key
/// disabled through node A stops admitting on node B within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_stops_playback_on_every_node_within_a_second() {
    const BOUND: Duration = Duration::from_secs(1);
    let app = TestApp::spawn(Backend::Postgres).await;
    let node_b = app.second_node(|_| {}).await;
    let b = format!("http://{}", node_b.addr);

    let key = app
        .post("/access-control/signing-key", json!({}))
        .await
        .json;
    let key_id = key["id"].as_str().unwrap().to_string();
    let stream = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let pid = stream["playbackId"].as_str().unwrap();
    let token = sign_with_livepeer_react(&key, pid).await;
    // Nothing is published: a request the gate lets through finds no playlist (404); one it
    // stops is refused (403).
    let on_b = format!("{b}/hls/{pid}/index.m3u8?jwt={token}");
    let admitted = eventually(Duration::from_secs(3), || async {
        (fetch(&app, &on_b, &[]).await.status == 404).then_some(())
    })
    .await;
    assert!(admitted.is_some(), "node B admits the token");
    fetch(&app, &on_b, &[])
        .await
        .assert_error(404, "no such playlist");

    // A grant made by node A opens node B's media (it only checks it).
    let grant = {
        let gate = app.server.as_ref().unwrap().state.gate();
        let viewer = studio_api::access_control::Credentials {
            jwt: Some(token.clone()),
            ..Default::default()
        };
        let policy: studio_api::streams::model::PlaybackPolicy =
            serde_json::from_value(json!({"type": "jwt"})).unwrap();
        let content = studio_api::access_control::Content {
            project_id: &app.project_id,
            playback_id: pid,
            policy: Some(&policy),
        };
        match gate.admit(&content, &viewer).await.expect("admitted") {
            studio_api::access_control::Admission::Granted { grant, .. } => grant,
            other => panic!("{other:?}"),
        }
    };
    let segment_on_b = format!("{b}/hls/{pid}/source/0.ts?grant={grant}");
    fetch(&app, &segment_on_b, &[])
        .await
        .assert_error(404, "no such playlist");

    let patched = app
        .patch(
            &format!("/access-control/signing-key/{key_id}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let disabled_at = Instant::now();
    let refused = eventually(Duration::from_secs(5), || async {
        let token = fetch(&app, &on_b, &[]).await.status;
        let grant = fetch(&app, &segment_on_b, &[]).await.status;
        (token == 403 && grant == 403).then(|| disabled_at.elapsed())
    })
    .await
    .expect("node B refuses the disabled key's token and grants");
    assert!(refused <= BOUND, "node B refused only after {refused:?}");
    fetch(&app, &on_b, &[]).await.assert_error(403, "disabled");
    node_b.stop().await.unwrap();
}

/// A gated asset: its MP4 (byte ranges), HLS ladder and thumbnails open with a JWT only, and the
/// thumbnail index carries grants to its pictures. Recordings and clips are assets too, served
/// by the same paths.
async fn gated_assets_open_with_a_jwt_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = studio_tests::TempDir::new();
    let file = super::vod::source_file(&dir.0).await;
    let key = app
        .post("/access-control/signing-key", json!({}))
        .await
        .json;
    let requested = app
        .post(
            "/asset/request-upload",
            json!({"name": "paid", "staticMp4": true, "playbackPolicy": {"type": "jwt"}}),
        )
        .await;
    assert_eq!(requested.status, 200, "{}", requested.text);
    let put = app
        .http
        .put(requested.json["url"].as_str().unwrap())
        .body(std::fs::read(&file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let asset = super::vod::finished(&app, requested.json["asset"]["id"].as_str().unwrap()).await;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let pid = asset["playbackId"].as_str().unwrap();

    let info = app.get(&format!("/playback/{pid}")).await.json;
    assert_eq!(
        info["meta"]["playbackPolicy"],
        json!({"type": "jwt"}),
        "{info}"
    );
    let source = |hrn: &str| {
        info["meta"]["source"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["hrn"] == hrn)
            .unwrap_or_else(|| panic!("no {hrn} in {info}"))["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (mp4, hls, vtt) = (source("MP4"), source("HLS (TS)"), source("Thumbnails"));
    let token = sign_with_livepeer_react(&key, pid).await;
    for url in [&mp4, &hls, &vtt] {
        fetch(&app, url, &[])
            .await
            .assert_error(401, "playback JWT");
    }

    // The MP4: byte ranges with the token, ffprobe reads its length.
    let ranged = fetch(
        &app,
        &format!("{mp4}?jwt={token}"),
        &[("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.header("content-length"), Some("100"));
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("{mp4}?jwt={token}"))
        .output()
        .await
        .unwrap();
    let duration: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    assert!(
        (duration - 6.0).abs() < 0.5,
        "the gated MP4 lasts {duration} s"
    );

    // The HLS ladder decodes end to end from the token in the master URL.
    studio_tests::assert_decodes_cleanly(&format!("{hls}?jwt={token}")).await;

    // The thumbnail index lists pictures with grants; a picture opens with its grant.
    let index = fetch(&app, &format!("{vtt}?jwt={token}"), &[]).await;
    assert_eq!(index.status, 200);
    let picture = index
        .text
        .lines()
        .find(|l| l.contains(".jpg"))
        .unwrap_or_else(|| panic!("no picture in {}", index.text));
    assert!(picture.contains(".jpg?grant="), "{picture}");
    let jpeg = fetch(&app, &media_url(&vtt, picture), &[]).await;
    assert_eq!(jpeg.status, 200);
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    let bare = picture.split('?').next().unwrap();
    fetch(&app, &media_url(&vtt, bare), &[])
        .await
        .assert_error(401, "playback JWT");
}
