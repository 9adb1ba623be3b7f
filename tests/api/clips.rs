//! Clips end to end: ffmpeg publishes over RTMP, a user reads the times of the live playlist's
//! `EXT-X-PROGRAM-DATE-TIME` tags (as players do) and clips a stretch of the live stream, the
//! moments just passed (a clip whose end is still to come), and a stretch of the past session's
//! recording. Each clip becomes an asset that plays (ffmpeg decodes its HLS and MP4) and lasts as
//! long as asked; the lists of clips, the errors and the quota are Studio's.

use std::time::Duration;

use serde_json::{Value, json};
use studio_media_core::hls::playlist::parse_program_date;
use studio_tests::{
    Backend, Storage, TestApp, assert_decodes_cleanly, eventually, on_both_databases,
};

use crate::live::publish;
use crate::recording::ffprobe_duration;

on_both_databases!(clips_of_live_and_past_sessions_play_and_last_as_long_as_asked);

/// The clip test with media in S3 (the s3s-fs server of scripts/test): the segments are cut
/// from the bucket and the clip's files written to it.
mod on_s3_storage {
    use studio_tests::{Backend, Storage};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clips_of_live_and_past_sessions_play_and_last_as_long_as_asked_postgres() {
        super::clips_on(Backend::Postgres, Storage::S3).await
    }
}

/// The wall-clock times (unix ms) of the segments a media playlist lists, in order.
async fn program_dates(url: &str) -> Vec<i64> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(|date| parse_program_date(date).unwrap_or_else(|| panic!("a date: {date}")))
        .collect()
}

/// Waits for the clip asset to finish; it must be ready, play, and last `seconds` (within the
/// 1 s the API promises; the cut keeps the length asked for to a frame or two).
async fn assert_clip(app: &TestApp, id: &str, seconds: f64) -> Value {
    let asset = eventually(Duration::from_secs(120), || async {
        let asset = app.get(&format!("/asset/{id}")).await.json;
        matches!(asset["status"]["phase"].as_str(), Some("ready" | "failed")).then_some(asset)
    })
    .await
    .expect("the clip finishes");
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let hls = asset["playbackUrl"].as_str().unwrap();
    assert_decodes_cleanly(hls).await;
    let mp4 = asset["downloadUrl"].as_str().expect("a clip has an MP4");
    assert_decodes_cleanly(mp4).await;
    let duration = ffprobe_duration(mp4).await;
    assert!(
        (duration - seconds).abs() <= 0.3,
        "the clip lasts {duration} s, {seconds} s were asked for"
    );
    let spec = asset["videoSpec"]["duration"].as_f64().unwrap();
    assert!((spec - seconds).abs() <= 0.3, "videoSpec.duration {spec}");
    asset
}

async fn clips_of_live_and_past_sessions_play_and_last_as_long_as_asked(backend: Backend) {
    clips_on(backend, Storage::LocalDir).await
}

async fn clips_on(backend: Backend, storage: Storage) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let stream = app
        .create_stream(json!({"name": "clipped", "record": true}))
        .await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);

    // The live playlist tells the time of every segment.
    let live_playlist = format!("{}/hls/{pid}/source/index.m3u8", app.base);
    let dates = eventually(Duration::from_secs(20), || async {
        let dates = program_dates(&live_playlist).await;
        (dates.len() >= 4).then_some(dates)
    })
    .await
    .expect("the live playlist lists segments with their times");
    assert!(dates.windows(2).all(|w| w[1] > w[0]), "{dates:?}");

    // A stretch of the live session, inside what was already published.
    let start = dates[1] + 400;
    let live_clip = app
        .post(
            "/clip",
            json!({"playbackId": pid, "startTime": start, "endTime": start + 3_000, "name": "the goal"}),
        )
        .await;
    assert_eq!(live_clip.status, 200, "{}", live_clip.text);
    let session_id = live_clip.json["asset"]["source"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        live_clip.json["asset"]["source"],
        json!({"type": "clip", "playbackId": pid, "sessionId": session_id})
    );
    assert_eq!(live_clip.json["asset"]["name"], "the goal");
    assert_eq!(live_clip.json["asset"]["status"]["phase"], "waiting");
    let task_id = live_clip.json["task"]["id"].as_str().unwrap();
    let task = app.get(&format!("/task/{task_id}")).await.json;
    assert_eq!(task["type"], "clip", "{task}");
    assert_eq!(
        task["params"]["clip"]["clipStrategy"],
        json!({"startTime": start, "endTime": start + 3_000, "playbackId": pid})
    );
    assert_eq!(task["requesterId"].as_str().map(str::len), Some(64));

    assert_clip(&app, live_clip.json["asset"]["id"].as_str().unwrap(), 3.0).await;

    // The moments just passed and those to come (a "clip the last seconds" button): the clip
    // waits for the media to reach its end. The default name names the clip's playback id.
    let now = *program_dates(&live_playlist).await.last().unwrap();
    let recent = app
        .post(
            "/clip",
            json!({"playbackId": pid, "startTime": now - 1_000, "endTime": now + 3_000}),
        )
        .await;
    assert_eq!(recent.status, 200, "{}", recent.text);
    let recent_pid = recent.json["asset"]["playbackId"].as_str().unwrap();
    assert_eq!(
        recent.json["asset"]["name"].as_str().unwrap(),
        format!("clip-{recent_pid}")
    );

    // Five clips in progress per requester and playback id; the sixth is refused.
    let mut quota = Vec::new();
    for _ in 0..4 {
        let clip = app
            .post(
                "/clip",
                json!({"playbackId": pid, "startTime": now - 500, "endTime": now + 2_000}),
            )
            .await;
        assert_eq!(clip.status, 200, "{}", clip.text);
        quota.push(clip.json["asset"]["id"].as_str().unwrap().to_string());
    }
    app.post(
        "/clip",
        json!({"playbackId": pid, "startTime": now - 500, "endTime": now + 2_000}),
    )
    .await
    .assert_error(403, "Too many clips are being processed.");

    assert_clip(&app, recent.json["asset"]["id"].as_str().unwrap(), 4.0).await;
    assert!(ffmpeg.wait().await.unwrap().success());

    // The past session: its recording's playlist carries the same times.
    let recording = eventually(Duration::from_secs(60), || async {
        let asset = app.get(&format!("/asset/{session_id}")).await.json;
        (asset["status"]["phase"] == "ready").then_some(asset)
    })
    .await
    .expect("the recording is ready");
    let recorded_playlist = recording["playbackUrl"]
        .as_str()
        .unwrap()
        .replace("index.m3u8", "source/index.m3u8");
    let recorded = program_dates(&recorded_playlist).await;
    assert!(recorded.len() >= 7, "{recorded:?}");
    assert_eq!(
        &recorded[..dates.len()],
        &dates[..],
        "the recording keeps the times the live playlist showed"
    );
    let start = recorded[5] + 250;
    let past = app
        .post(
            "/clip",
            json!({"playbackId": pid, "sessionId": session_id, "startTime": start, "endTime": start + 2_500}),
        )
        .await;
    assert_eq!(past.status, 200, "{}", past.text);
    let past_id = past.json["asset"]["id"].as_str().unwrap().to_string();
    assert_clip(&app, &past_id, 2.5).await;

    // Every clip is listed with its stream, its session and the session's recording.
    let ids = |list: &Value| -> Vec<String> {
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let of_stream = app.get(&format!("/stream/{stream_id}/clips")).await;
    assert_eq!(of_stream.status, 200, "{}", of_stream.text);
    assert_eq!(of_stream.json.as_array().unwrap().len(), 7);
    assert_eq!(of_stream.json[0]["id"], past_id.as_str(), "newest first");
    assert!(ids(&of_stream.json).contains(&quota[0]));
    for path in [
        format!("/stream/{pid}/clips"),
        format!("/session/{session_id}/clips"),
        format!("/asset/{session_id}/clips"),
    ] {
        assert_eq!(
            ids(&app.get(&path).await.json),
            ids(&of_stream.json),
            "{path}"
        );
    }
    assert_eq!(
        app.get(&format!("/asset/{past_id}/clips")).await.json,
        json!([])
    );

    // Clear errors.
    app.post(
        "/clip",
        json!({"playbackId": pid, "startTime": start, "endTime": start}),
    )
    .await
    .assert_error(422, "endTime must be after startTime");
    app.post("/clip", json!({"playbackId": pid}))
        .await
        .assert_error(422, "startTime");
    app.post(
        "/clip",
        json!({"playbackId": "nosuchplayback", "startTime": start, "endTime": start + 1_000}),
    )
    .await
    .assert_error(404, "playback id");
    app.post(
        "/clip",
        json!({"playbackId": pid, "sessionId": "nosuchsession", "startTime": start, "endTime": start + 1_000}),
    )
    .await
    .assert_error(404, "session");
    app.post(
        "/clip",
        json!({"playbackId": pid, "sessionId": session_id, "startTime": start - 3_600_000, "endTime": start - 3_000_000}),
    )
    .await
    .assert_error(422, "outside");

    // Another tenant can neither clip this stream nor see its clips.
    let other = app.other_tenant("mallory").await;
    let call = |method, path: String, body| {
        let key = other.key.clone();
        let app = &app;
        async move { app.call(Some(&key), method, &path, body).await }
    };
    call(
        reqwest::Method::POST,
        "/clip".into(),
        Some(json!({"playbackId": pid, "startTime": start, "endTime": start + 1_000})),
    )
    .await
    .assert_error(404, "playback id");
    for path in [
        format!("/stream/{stream_id}/clips"),
        format!("/session/{session_id}/clips"),
        format!("/asset/{session_id}/clips"),
    ] {
        call(reqwest::Method::GET, path, None)
            .await
            .assert_error(404, "not found");
    }
}
