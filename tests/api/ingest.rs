//! Ingest beyond RTMP with H.264 + AAC (which `live.rs` covers): ffmpeg publishing MPEG-TS over
//! SRT, and streams with only audio or only video, end to end through sessions and HLS.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use studio_tests::{Backend, TestApp, eventually, on_both_databases};
use tokio::process::{Child, Command};

on_both_databases!(
    an_srt_publish_becomes_a_session_that_plays,
    refused_srt_publishers_create_nothing,
    audio_only_and_video_only_streams_play,
);

/// What ffmpeg sends.
#[derive(Clone, Copy)]
struct Tracks {
    video: bool,
    audio: bool,
}

const AUDIO_AND_VIDEO: Tracks = Tracks {
    video: true,
    audio: true,
};

/// ffmpeg publishing `seconds` of 640x360 H.264 (1 s GOP) and/or 48 kHz AAC in real time, as
/// FLV to an `rtmp://` URL or as MPEG-TS to an `srt://` URL.
fn publish(url: &str, tracks: Tracks, seconds: u32) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"]);
    if tracks.video {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"]);
    }
    if tracks.audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args(["-t", &seconds.to_string()]);
    if tracks.video {
        cmd.args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
        ]);
    }
    if tracks.audio {
        cmd.args(["-c:a", "aac"]);
    }
    let container = if url.starts_with("srt://") {
        "mpegts"
    } else {
        "flv"
    };
    cmd.args(["-f", container, url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running ffmpeg (scripts/test-deps installs it)")
}

async fn is_active(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/stream/{id}")).await.json["isActive"].clone()
}

/// The one session of stream `id` once it has ended (its playlist closed).
async fn ended_session(app: &TestApp, id: &str, playback_id: &str) -> Value {
    let idle = eventually(Duration::from_secs(5), || async {
        (is_active(app, id).await == false).then_some(())
    })
    .await;
    assert!(
        idle.is_some(),
        "isActive did not turn false within 5 s of the encoder leaving"
    );
    let media = format!("{}/hls/{playback_id}/source/index.m3u8", app.base);
    let closed = eventually(Duration::from_secs(5), || async {
        let text = app
            .http
            .get(&media)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("#EXT-X-ENDLIST").then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the playlist is closed when the session ends"
    );
    let sessions = app.get(&format!("/stream/{id}/sessions")).await.json;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions[0].clone()
}

/// ffprobe's reading of the master playlist: its duration and the codec of each stream.
async fn probe_master(app: &TestApp, playback_id: &str) -> (f64, Vec<String>) {
    let url = format!("{}/hls/{playback_id}/index.m3u8", app.base);
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name",
            "-of",
            "json",
            &url,
        ])
        .output()
        .await
        .unwrap();
    let probed: Value = serde_json::from_slice(&probe.stdout)
        .unwrap_or_else(|_| panic!("ffprobe: {}", String::from_utf8_lossy(&probe.stderr)));
    let duration = probed["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    let mut codecs: Vec<String> = probed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap_or("").to_string())
        .collect();
    codecs.sort();
    codecs.dedup();
    (duration, codecs)
}

/// ffmpeg publishes H.264 + AAC over SRT: the stream goes live, a second publisher is refused,
/// the session records what was sent, and players read it back over HLS.
async fn an_srt_publish_becomes_a_session_that_plays(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app.create_stream(json!({"name": "srt cam"})).await;
    let id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let key = stream["streamKey"].as_str().unwrap().to_string();

    let ffmpeg = publish(&app.srt_url(&key), AUDIO_AND_VIDEO, 6);
    let live = eventually(Duration::from_secs(5), || async {
        (is_active(&app, &id).await == true).then_some(())
    })
    .await;
    assert!(live.is_some(), "isActive did not turn true");
    // A second publisher is refused while the first is live, over SRT (in the access-control
    // stream ID form) as over RTMP.
    let second_srt = app.srt_url(&format!("#!::r={key},m=publish"));
    for url in [second_srt, app.rtmp_url(&key)] {
        let second = publish(&url, AUDIO_AND_VIDEO, 2)
            .wait_with_output()
            .await
            .unwrap();
        assert!(
            !second.status.success(),
            "a second publisher must be refused ({url})"
        );
    }
    let out = ffmpeg.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the publisher streamed to the end: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let session = ended_session(&app, &id, &pid).await;
    let duration = session["sourceSegmentsDuration"].as_f64().unwrap();
    assert!(
        (duration - 6.0).abs() <= 0.5,
        "6 s published, {duration} s recorded"
    );
    assert!(
        session["sourceSegments"].as_i64().unwrap() >= 3,
        "{session}"
    );
    assert!(
        session["sourceBytes"].as_i64().unwrap() > 50_000,
        "{session}"
    );

    let (probed, codecs) = probe_master(&app, &pid).await;
    assert!(
        (probed - 6.0).abs() <= 0.5,
        "ffprobe reads {probed} s of 6 s published"
    );
    assert_eq!(codecs, ["aac", "h264"]);
    let decode = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            &format!("{}/hls/{pid}/index.m3u8", app.base),
            "-f",
            "null",
            "-",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "decoding reports errors: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
}

/// Unknown, deleted and suspended keys are refused over SRT before anything is created, and so
/// is a caller that wants to read rather than publish.
async fn refused_srt_publishers_create_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let suspended = app.create_stream(json!({"name": "suspended"})).await;
    assert_eq!(
        app.patch(
            &format!("/stream/{}", suspended["id"].as_str().unwrap()),
            json!({"suspended": true})
        )
        .await
        .status,
        204
    );
    let deleted = app.create_stream(json!({"name": "deleted"})).await;
    assert_eq!(
        app.delete(&format!("/stream/{}", deleted["id"].as_str().unwrap()))
            .await
            .status,
        204
    );
    let good = app.create_stream(json!({"name": "good"})).await;
    let reader = format!("#!::r={},m=request", good["streamKey"].as_str().unwrap());
    for stream_id in [
        "0000-0000-0000-0000",
        suspended["streamKey"].as_str().unwrap(),
        deleted["streamKey"].as_str().unwrap(),
        &reader,
    ] {
        let out = publish(&app.srt_url(stream_id), AUDIO_AND_VIDEO, 2)
            .wait_with_output()
            .await
            .unwrap();
        assert!(
            !out.status.success(),
            "stream ID {stream_id} must be refused"
        );
    }
    assert_eq!(
        app.get("/session").await.json,
        json!([]),
        "a refused publish creates no session"
    );
    assert_eq!(is_active(&app, good["id"].as_str().unwrap()).await, false);
}

/// A stream with only audio (over RTMP) and one with only video (over SRT) each become a session
/// of the published length whose HLS holds just that track.
async fn audio_only_and_video_only_streams_play(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            "audio only",
            Tracks {
                video: false,
                audio: true,
            },
            "rtmp",
            vec!["aac"],
        ),
        (
            "video only",
            Tracks {
                video: true,
                audio: false,
            },
            "srt",
            vec!["h264"],
        ),
    ];
    for (name, tracks, protocol, expected_codecs) in cases {
        let stream = app.create_stream(json!({"name": name})).await;
        let id = stream["id"].as_str().unwrap().to_string();
        let pid = stream["playbackId"].as_str().unwrap().to_string();
        let key = stream["streamKey"].as_str().unwrap();
        let url = if protocol == "srt" {
            app.srt_url(key)
        } else {
            app.rtmp_url(key)
        };
        let out = publish(&url, tracks, 5).wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let session = ended_session(&app, &id, &pid).await;
        let duration = session["sourceSegmentsDuration"].as_f64().unwrap();
        assert!(
            (duration - 5.0).abs() <= 0.5,
            "{name}: 5 s published, {duration} s recorded"
        );
        let (probed, codecs) = probe_master(&app, &pid).await;
        assert!(
            (probed - 5.0).abs() <= 0.5,
            "{name}: ffprobe reads {probed} s of 5 s published"
        );
        assert_eq!(codecs, expected_codecs, "{name}");
    }
}
