//! Recording end to end: ffmpeg publishes over RTMP to a stream with `record: true`, and the
//! session becomes an asset with a playable VOD playlist and an MP4 whose length matches what
//! was published, announced by `recording.*` webhooks within seconds of the encoder leaving.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::receiver::Receiver;
use studio_tests::{
    Backend, Storage, TestApp, assert_decodes_cleanly, eventually, on_both_databases,
};
use tokio::process::Command;

use crate::live::publish;

/// The recording test with media in S3 (the s3s-fs server of scripts/test): segments, the VOD
/// playlist and the MP4 (served by ranges) all come from the bucket.
mod on_s3_storage {
    use studio_tests::{Backend, Storage};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recorded_session_becomes_a_playable_asset_postgres() {
        super::a_recorded_session_becomes_a_playable_asset_on(Backend::Postgres, Storage::S3).await
    }
}

on_both_databases!(
    a_recorded_session_becomes_a_playable_asset,
    unrecorded_sessions_make_no_asset,
    a_recording_that_cannot_be_made_fails_with_its_reason
);

const PUBLISHED_S: f64 = 6.0;

pub(crate) async fn ffprobe_duration(url: &str) -> f64 {
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
        .unwrap_or_else(|_| panic!("ffprobe: {}", String::from_utf8_lossy(&probe.stderr)))
}

async fn ffprobe_codecs(url: &str) -> String {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate",
            "-of",
            "default=nw=1",
            url,
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&probe.stdout).into_owned()
}

async fn a_recorded_session_becomes_a_playable_asset(backend: Backend) {
    a_recorded_session_becomes_a_playable_asset_on(backend, Storage::LocalDir).await
}

/// [`a_recorded_session_becomes_a_playable_asset`] with media in the given store.
pub(crate) async fn a_recorded_session_becomes_a_playable_asset_on(
    backend: Backend,
    storage: Storage,
) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let receiver = Receiver::start().await;
    let events = ["recording.started", "recording.waiting", "recording.ready"];
    let hook = app
        .post(
            "/webhook",
            json!({"name": "rec", "url": receiver.url(), "events": events}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.text);
    let stream = app
        .create_stream(json!({"name": "recorded", "record": true}))
        .await;
    let stream_id = stream["id"].as_str().unwrap().to_string();

    let mut ffmpeg = publish(
        &app.rtmp_url(stream["streamKey"].as_str().unwrap()),
        PUBLISHED_S as u32,
    );
    let started = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        started.first().map(|r| r.json()["event"].clone()),
        Some(json!("recording.started"))
    );
    let session_id = started[0].json()["payload"]["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // While live, the session is recording and has no asset yet.
    let live = app.get(&format!("/session/{session_id}")).await.json;
    assert_eq!(live["record"], true);
    assert_eq!(live["recordingStatus"], "waiting");
    assert!(live.get("mp4Url").is_none(), "{live}");
    assert_eq!(app.get(&format!("/asset/{session_id}")).await.status, 404);

    assert!(
        ffmpeg.wait().await.unwrap().success(),
        "the publisher streamed to the end"
    );
    let disconnected = Instant::now();
    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    let names: Vec<Value> = got.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(names, events.iter().map(|e| json!(e)).collect::<Vec<_>>());
    let ready_after = got[2].at.saturating_duration_since(disconnected);
    assert!(
        ready_after < Duration::from_secs(15),
        "recording.ready {ready_after:?} after the encoder left"
    );
    println!("recording.ready arrived {ready_after:?} after the encoder disconnected");

    let waiting = got[1].json();
    assert_eq!(waiting["stream"]["id"], stream_id.as_str());
    assert_eq!(waiting["payload"]["session"]["id"], session_id.as_str());
    assert_eq!(
        waiting["payload"]["session"]["assetId"],
        session_id.as_str()
    );
    let ready = got[2].json();
    let recording_url = ready["payload"]["recordingUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let mp4_url = ready["payload"]["mp4Url"].as_str().unwrap().to_string();
    assert_eq!(ready["payload"]["session"]["recordingStatus"], "ready");
    assert_eq!(ready["payload"]["session"]["mp4Url"], mp4_url.as_str());

    // The session tells where its recording is.
    let session = app.get(&format!("/session/{session_id}")).await.json;
    assert_eq!(session["recordingStatus"], "ready", "{session}");
    assert_eq!(session["recordingUrl"], recording_url.as_str());
    assert_eq!(session["mp4Url"], mp4_url.as_str());
    let listed = app.get(&format!("/stream/{stream_id}/sessions")).await.json;
    assert_eq!(listed[0]["recordingStatus"], "ready");
    assert_eq!(listed[0]["mp4Url"], mp4_url.as_str());

    // The asset: id = session id, Studio's fields.
    let asset = app.get(&format!("/asset/{session_id}")).await;
    assert_eq!(asset.status, 200, "{}", asset.text);
    let asset = asset.json;
    assert_eq!(
        asset["source"],
        json!({"type": "recording", "sessionId": session_id})
    );
    assert_eq!(asset["status"]["phase"], "ready");
    assert!(asset["status"]["updatedAt"].as_i64().unwrap() > 0);
    let asset_pid = asset["playbackId"].as_str().unwrap().to_string();
    assert_eq!(asset_pid.len(), 16);
    assert_ne!(asset_pid, stream["playbackId"].as_str().unwrap());
    assert_eq!(asset["playbackUrl"], recording_url.as_str());
    assert_eq!(asset["downloadUrl"], mp4_url.as_str());
    assert_eq!(
        recording_url,
        format!("{}/hls/{asset_pid}/index.m3u8", app.base)
    );
    assert!(asset["size"].as_i64().unwrap() > 50_000, "{asset}");
    assert_eq!(asset["videoSpec"]["format"], "mp4");
    let spec_duration = asset["videoSpec"]["duration"].as_f64().unwrap();
    assert!(
        (spec_duration - PUBLISHED_S).abs() <= 0.5,
        "videoSpec.duration {spec_duration}"
    );
    assert!(
        asset["videoSpec"].get("tracks").is_none(),
        "tracks only with details=1"
    );
    assert!(asset.get("files").is_none(), "files are write-only");
    let detailed = app
        .get(&format!("/asset/{session_id}?details=1"))
        .await
        .json;
    let tracks = detailed["videoSpec"]["tracks"].as_array().unwrap();
    let video = tracks.iter().find(|t| t["type"] == "video").unwrap();
    assert_eq!(
        (
            video["codec"].clone(),
            video["width"].clone(),
            video["height"].clone()
        ),
        (json!("h264"), json!(640), json!(360))
    );
    assert!(
        (video["fps"].as_f64().unwrap() - 30.0).abs() < 0.5,
        "{video}"
    );
    let audio = tracks.iter().find(|t| t["type"] == "audio").unwrap();
    assert_eq!(
        (audio["codec"].clone(), audio["sampleRate"].clone()),
        (json!("aac"), json!(48000))
    );
    let list = app.get("/asset").await.json;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], session_id.as_str());
    let by_pid = app
        .get(&format!("/asset?playbackId={asset_pid}"))
        .await
        .json;
    assert_eq!(by_pid.as_array().unwrap().len(), 1);
    let filtered = app
        .get(&format!(
            "/asset?filters={}",
            studio_tests::urlencode(r#"[{"id":"phase","value":"failed"}]"#)
        ))
        .await
        .json;
    assert_eq!(filtered, json!([]));

    // The MP4: as long as what was published, decodable, seekable.
    let duration = ffprobe_duration(&mp4_url).await;
    assert!(
        (duration - PUBLISHED_S).abs() <= 0.5,
        "the MP4 lasts {duration} s of {PUBLISHED_S} s published"
    );
    let codecs = ffprobe_codecs(&mp4_url).await;
    assert!(
        codecs.contains("codec_name=h264")
            && codecs.contains("width=640")
            && codecs.contains("codec_name=aac"),
        "{codecs}"
    );
    assert_decodes_cleanly(&mp4_url).await;
    let whole = app.http.get(&mp4_url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let size = whole.bytes().await.unwrap().len();
    assert_eq!(size as i64, asset["size"].as_i64().unwrap());
    let part = app
        .http
        .get(&mp4_url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap().len(), 100);

    // The VOD playlist: complete, closed, playable.
    let media_url = format!("{}/hls/{asset_pid}/source/index.m3u8", app.base);
    let playlist = app
        .http
        .get(&media_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD")
            && playlist.trim_end().ends_with("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    let listed_s: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse::<f64>().unwrap())
        .sum();
    assert!(
        (listed_s - PUBLISHED_S).abs() <= 0.5,
        "the playlist lists {listed_s} s"
    );
    let duration = ffprobe_duration(&recording_url).await;
    assert!(
        (duration - PUBLISHED_S).abs() <= 0.5,
        "the VOD playlist plays {duration} s"
    );
    assert_decodes_cleanly(&recording_url).await;

    // Playback info: the asset's playback id is VOD (MP4 first), the session id a recording.
    let info = app
        .call(None, Method::GET, &format!("/playback/{asset_pid}"), None)
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.json["type"], "vod");
    assert_eq!(info.json["meta"]["playbackPolicy"], Value::Null);
    let sources = info.json["meta"]["source"].as_array().unwrap();
    assert_eq!(
        (sources[0]["hrn"].clone(), sources[0]["url"].clone()),
        (json!("MP4"), json!(mp4_url))
    );
    assert_eq!(sources[0]["type"], "html5/video/mp4");
    assert_eq!(sources[0]["height"], 360);
    assert_eq!(
        (sources[1]["hrn"].clone(), sources[1]["url"].clone()),
        (json!("HLS (TS)"), json!(recording_url))
    );
    let info = app
        .call(None, Method::GET, &format!("/playback/{session_id}"), None)
        .await;
    assert_eq!(info.json["type"], "recording", "{}", info.text);
    assert_eq!(
        info.json["meta"]["source"],
        json!([{"hrn": "HLS (TS)", "type": "html5/application/vnd.apple.mpegurl", "url": recording_url}])
    );

    // The official SDKs read the recording asset and the recorded session without validation errors.
    let env = [("STUDIO_RECORDING_SESSION_ID", session_id.as_str())];
    for (program, script) in [
        ("node".into(), "tests/sdk/js/conformance.mjs"),
        (crate::clients::python(), "tests/sdk/python/conformance.py"),
    ] {
        let out = crate::clients::run_client_with(&app, program, &[script], &app.key, &env).await;
        assert!(
            out.contains(", 0 failed")
                && out.contains("ok session.get (recorded)")
                && out.contains("ok asset.get (recording)")
                && (out.contains("ok stream.createClip") || out.contains("ok stream.create_clip")),
            "{out}"
        );
    }

    // Assets are private to their project.
    let other = app.other_tenant("mallory").await;
    app.call(
        Some(&other.key),
        Method::GET,
        &format!("/asset/{session_id}"),
        None,
    )
    .await
    .assert_error(404, "not found");
    assert_eq!(
        app.call(Some(&other.key), Method::GET, "/asset", None)
            .await
            .json,
        json!([])
    );
    // The recording was made by an internal job, not one of the project's tasks (the SDKs'
    // clips are).
    let tasks = app.get("/task").await.json;
    let types: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["type"])
        .collect();
    assert_eq!(types, vec![&json!("clip"); 2], "{tasks}");
    crate::live::assert_media_in_the_store(&app, &asset_pid, &["index.m3u8", "source/index.m3u8"])
        .await;
}

/// A recording whose node died before making it (its session was left ended with a recording
/// and no job), and whose segments are no longer in the store: another pass of recovery spawns
/// its job, the job fails for good, and the asset fails with the reason, announced by
/// `asset.failed`. The job never shows among the project's tasks.
async fn a_recording_that_cannot_be_made_fails_with_its_reason(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.stream_idle_after_secs = 2).await;
    let receiver = Receiver::start().await;
    app.post(
        "/webhook",
        json!({"name": "failures", "url": receiver.url(), "events": ["asset.failed"]}),
    )
    .await;
    let stream = app.create_stream(json!({"name": "plain"})).await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 2);
    assert!(ffmpeg.wait().await.unwrap().success());
    let session_id = eventually(Duration::from_secs(5), || async {
        let list = app.get(&format!("/stream/{stream_id}/sessions")).await.json;
        list[0]["id"].as_str().map(str::to_string)
    })
    .await
    .expect("a session");
    // What a node leaves when it dies right after the session ended: the recording's rows,
    // no asset and no job; and a store that lost the segments since.
    let db = app.server.as_ref().unwrap().state.db().clone();
    sqlx::query(
        "INSERT INTO recordings (session_id, project_id, variant, created_at) VALUES ($1, $2, $3, 0)",
    )
    .bind(&session_id)
    .bind(&app.project_id)
    .bind(r#"{"resolution":[640,360],"codecs":["avc1.42c01e"],"frame_rate":30.0}"#)
    .execute(db.writer())
    .await
    .unwrap();
    // (The session's segments are indexed, recorded or not; they now point where nothing is.)
    sqlx::query(
        "UPDATE session_segments SET object_key = 'vanished/' || object_key WHERE session_id = $1",
    )
    .bind(&session_id)
    .execute(db.writer())
    .await
    .unwrap();

    let asset = eventually(Duration::from_secs(30), || async {
        let asset = app.get(&format!("/asset/{session_id}")).await.json;
        (asset["status"]["phase"] == "failed").then_some(asset)
    })
    .await
    .expect("the recording fails");
    assert_eq!(
        asset["status"]["errorMessage"],
        "none of the session's segments could be read from the media store",
        "{asset}"
    );
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1, "asset.failed is delivered");
    let failed = delivered[0].json();
    assert_eq!(failed["event"], "asset.failed");
    assert_eq!(
        failed["payload"]["asset"]["id"],
        session_id.as_str(),
        "{failed}"
    );
    assert_eq!(app.get("/task").await.json, json!([]));
}

async fn unrecorded_sessions_make_no_asset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "plain"})).await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 3);
    assert!(ffmpeg.wait().await.unwrap().success());
    let sessions = eventually(Duration::from_secs(5), || async {
        let list = app.get(&format!("/stream/{stream_id}/sessions")).await.json;
        (list.as_array().is_some_and(|l| !l.is_empty())
            && app.get(&format!("/stream/{stream_id}")).await.json["isActive"] == false)
            .then_some(list)
    })
    .await
    .expect("a session");
    let session = &sessions[0];
    for field in ["recordingStatus", "recordingUrl", "mp4Url"] {
        assert!(
            session.get(field).is_none(),
            "{field} on an unrecorded session: {session}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get("/asset").await.json, json!([]));
    assert_eq!(
        app.get(&format!("/asset/{}", session["id"].as_str().unwrap()))
            .await
            .status,
        404
    );
}

/// Two nodes on one PostgreSQL database: the second node, which finishes the work of dead
/// nodes, leaves alone a recorded session live on the first, and its recording, made by the
/// first, holds everything published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_leaves_a_live_recording_alone() {
    let app = TestApp::spawn_with(Backend::Postgres, |c| c.stream_idle_after_secs = 4).await;
    let node_b = app.second_node(|_| {}).await;
    let stream = app
        .create_stream(json!({"name": "recorded", "record": true}))
        .await;
    let published_s = 12.0;
    let mut ffmpeg = publish(
        &app.rtmp_url(stream["streamKey"].as_str().unwrap()),
        published_s as u32,
    );
    assert!(ffmpeg.wait().await.unwrap().success());
    let stream_id = stream["id"].as_str().unwrap();
    let session_id = eventually(Duration::from_secs(5), || async {
        let sessions = app.get(&format!("/stream/{stream_id}/sessions")).await.json;
        sessions[0]["id"].as_str().map(str::to_string)
    })
    .await
    .expect("a session");
    let asset = eventually(Duration::from_secs(30), || async {
        let asset = app.get(&format!("/asset/{session_id}")).await.json;
        (asset["status"]["phase"] == "ready").then_some(asset)
    })
    .await
    .expect("the recording is ready");
    let duration = ffprobe_duration(asset["downloadUrl"].as_str().unwrap()).await;
    assert!(
        (duration - published_s).abs() <= 0.5,
        "the recording lasts {duration} s of {published_s} s published"
    );
    node_b.stop().await.unwrap();
}
