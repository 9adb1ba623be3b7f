//! What a misbehaving or hostile publisher cannot do to the node: run ahead of real time, hold
//! unbounded memory, stall other streams; and what the node does when it cannot store, or is
//! told to stop.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use studio_tests::publisher::{H264Frames, RtmpPublisher};
use studio_tests::{Backend, TestApp, eventually, on_both_databases};

use crate::live::publish;

on_both_databases!(
    a_burst_neither_runs_ahead_of_real_time_nor_stalls_other_streams,
    frames_too_large_for_a_segment_end_only_that_publish,
    a_stream_whose_segments_cannot_be_stored_is_not_live,
    stopping_ends_live_sessions_and_finishes_their_recordings,
);

fn stream_key(stream: &Value) -> &str {
    stream["streamKey"].as_str().unwrap()
}

async fn session_of(app: &TestApp, stream_id: &str) -> Option<Value> {
    let sessions = app.get(&format!("/stream/{stream_id}/sessions")).await.json;
    sessions.as_array()?.first().cloned()
}

/// The media sequence numbers of a live playlist, polled: when each new segment appeared.
async fn watch_playlist(app: &TestApp, playback_id: &str, for_: Duration) -> Vec<(Instant, u64)> {
    let url = format!("{}/hls/{playback_id}/source/index.m3u8", app.base);
    let deadline = Instant::now() + for_;
    let mut seen: Vec<(Instant, u64)> = Vec::new();
    while Instant::now() < deadline {
        if let Ok(response) = app.http.get(&url).send().await
            && let Ok(text) = response.text().await
        {
            let segments = text.lines().filter(|l| l.ends_with(".ts")).count() as u64;
            let sequence = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                .and_then(|n| n.trim().parse::<u64>().ok());
            if let Some(sequence) = sequence {
                let last = sequence + segments;
                if seen.last().is_none_or(|&(_, n)| n < last) {
                    seen.push((Instant::now(), last));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// A publisher bursting keyframes stamped 2 s apart, as fast as the connection takes them, once
/// claimed 6,000 s of media in 5 s and left 3,000 segment files; and since one task forwarded
/// every session's packets, it stalled every other stream of the node meanwhile. Now it is paced
/// to at most 10 s ahead of real time, and another tenant's stream keeps its pace.
async fn a_burst_neither_runs_ahead_of_real_time_nor_stalls_other_streams(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let neighbour = app.other_tenant("neighbour").await;
    let calm = app
        .call(
            Some(&neighbour.key),
            reqwest::Method::POST,
            "/stream",
            Some(json!({"name": "calm", "profiles": []})),
        )
        .await
        .json;
    let mut encoder = publish(&app.rtmp_url(stream_key(&calm)), 14);
    let calm_playback = calm["playbackId"].as_str().unwrap().to_string();
    let live = eventually(Duration::from_secs(15), || async {
        let playlist = format!("{}/hls/{calm_playback}/source/index.m3u8", app.base);
        let response = app.http.get(&playlist).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(live.is_some(), "the calm stream plays");

    let bursty = app
        .create_stream(json!({"name": "bursty", "profiles": []}))
        .await;
    let frames = H264Frames::get().await;
    let mut burst = RtmpPublisher::publish(app.config.rtmp_addr, stream_key(&bursty))
        .await
        .expect("the bursty publisher is accepted");
    let burst_for = Duration::from_secs(6);
    let bursting = tokio::spawn(async move {
        let started = Instant::now();
        burst.video(frames.config.clone(), 0).await.unwrap();
        let mut sent = 0u32;
        while started.elapsed() < burst_for && sent < 3_000 {
            let left = burst_for.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, burst.video(frames.keyframe.clone(), sent * 2_000))
                .await
            {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        (sent, burst)
    });
    let calm_progress = watch_playlist(&app, &calm_playback, burst_for).await;
    let (sent, _burst) = bursting.await.unwrap();
    println!("the burst got {sent} keyframes through in {burst_for:?}");

    // The bursty session holds at most real time plus the allowed lead of media.
    let bursty_id = bursty["id"].as_str().unwrap();
    let session = session_of(&app, bursty_id).await.expect("a session");
    let claimed = session["sourceSegmentsDuration"].as_f64().unwrap_or(0.0);
    assert!(
        claimed <= burst_for.as_secs_f64() + 10.0 + 4.0,
        "{claimed} s of media in {burst_for:?}"
    );
    let bursty_dir = app
        .config
        .data_dir
        .join("media/hls")
        .join(bursty["playbackId"].as_str().unwrap())
        .join("source");
    let files = std::fs::read_dir(&bursty_dir).map_or(0, |d| d.count());
    assert!(files < 20, "{files} files for {claimed} s of media");

    // The calm stream kept producing segments on time (about every 2 s) through the burst.
    let gaps: Vec<Duration> = calm_progress
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0))
        .collect();
    assert!(
        calm_progress.len() >= 2,
        "the calm stream advanced: {calm_progress:?}"
    );
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(3_500),
        "the calm stream stalled for {worst:?}"
    );
    let _ = encoder.kill().await;
}

/// Frames of 4 MiB at 30 fps: the open segment passes `ingest.max_segment_bytes` (32 MiB) after
/// a few frames and the publish is ended, its memory returned; it used to grow to 256 MiB per
/// segment, and 459 MiB of RSS for one publisher.
async fn frames_too_large_for_a_segment_end_only_that_publish(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app
        .create_stream(json!({"name": "huge", "profiles": []}))
        .await;
    let frames = H264Frames::get().await;
    let mut publisher = RtmpPublisher::publish(app.config.rtmp_addr, stream_key(&stream))
        .await
        .unwrap();
    publisher.video(frames.config.clone(), 0).await.unwrap();
    let big = frames.keyframe_of_size(4 * 1024 * 1024);
    let mut sent = 0u32;
    for i in 0..30u32 {
        match tokio::time::timeout(Duration::from_secs(5), publisher.video(big.clone(), i * 33))
            .await
        {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    assert!(
        publisher.closed_within(Duration::from_secs(5)).await,
        "the server ends the publish ({sent} frames sent)"
    );
    assert!(sent < 30, "all 30 frames of 4 MiB were taken");
    let state = &app.server.as_ref().unwrap().state;
    let returned = eventually(Duration::from_secs(5), || async {
        (state.ingest_limits().memory.used() == 0).then_some(())
    })
    .await;
    assert!(returned.is_some(), "the publish's memory is returned");
    // Nothing over the limit was written.
    let dir = app.config.data_dir.join("media/hls");
    for entry in walk(&dir) {
        let size = std::fs::metadata(&entry).unwrap().len();
        assert!(
            size <= 40 * 1024 * 1024,
            "{} is {size} bytes",
            entry.display()
        );
    }
    let stream_id = stream["id"].as_str().unwrap();
    let idle = eventually(Duration::from_secs(5), || async {
        let stream = app.get(&format!("/stream/{stream_id}")).await.json;
        (stream["isActive"] == false).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the stream is idle again");

    // The node still ingests.
    let other = app
        .create_stream(json!({"name": "fine", "profiles": []}))
        .await;
    let mut fine = RtmpPublisher::publish(app.config.rtmp_addr, stream_key(&other))
        .await
        .unwrap();
    fine.video(frames.config.clone(), 0).await.unwrap();
    for i in 0..3 {
        fine.video(frames.keyframe.clone(), i * 2_000)
            .await
            .unwrap();
    }
    let other_id = other["id"].as_str().unwrap().to_string();
    let active = eventually(Duration::from_secs(10), || async {
        let stream = app.get(&format!("/stream/{other_id}")).await.json;
        (stream["isActive"] == true).then_some(())
    })
    .await;
    assert!(active.is_some(), "a normal publish goes live");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// With a media directory that cannot be written, a publish used to turn the stream `isActive`
/// (and fire `stream.started`) while every segment write failed and `/hls` answered 404. Now a
/// segment counts only once stored, and a publish whose segments cannot be stored is ended.
async fn a_stream_whose_segments_cannot_be_stored_is_not_live(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stream = app
        .create_stream(json!({"name": "nowhere", "profiles": []}))
        .await;
    // Root ignores permissions: a file where the store needs a directory stops every write.
    let hls = app.config.data_dir.join("media/hls");
    let _ = std::fs::remove_dir_all(&hls);
    std::fs::create_dir_all(hls.parent().unwrap()).unwrap();
    std::fs::write(&hls, b"not a directory").unwrap();

    let mut encoder = publish(&app.rtmp_url(stream_key(&stream)), 20);
    let stream_id = stream["id"].as_str().unwrap();
    let started = Instant::now();
    let mut ever_active = false;
    let exited = loop {
        let s = app.get(&format!("/stream/{stream_id}")).await.json;
        ever_active |= s["isActive"] == true;
        if let Ok(Some(status)) = encoder.try_wait() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(15) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !ever_active,
        "a stream whose segments are not stored was reported live"
    );
    let status = exited.expect("the publisher is disconnected well before its 20 s end");
    assert!(!status.success());
    // Sessions without a segment are not listed (as in Studio); none has one.
    if let Some(session) = session_of(&app, stream_id).await {
        assert_eq!(session["sourceSegments"], 0, "{session}");
    }
}

/// Stopping the server (what SIGTERM does) used to close the database under the live sessions:
/// the stream stayed `isActive`, the session open and the recording lost. Now the sessions end
/// first, their recordings are processed, and only then does the server stop.
async fn stopping_ends_live_sessions_and_finishes_their_recordings(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let stream = app
        .create_stream(json!({"name": "recorded", "record": true, "profiles": []}))
        .await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let _encoder = publish(&app.rtmp_url(stream_key(&stream)), 60);
    let recorded = eventually(Duration::from_secs(20), || async {
        let session = session_of(&app, &stream_id).await?;
        (session["sourceSegments"].as_u64()? >= 3).then_some(session)
    })
    .await
    .expect("the publish records a few segments");
    let session_id = recorded["id"].as_str().unwrap().to_string();

    let asked = Instant::now();
    app.stop().await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");

    app.start().await;
    let stream = app.get(&format!("/stream/{stream_id}")).await.json;
    assert_eq!(stream["isActive"], false, "{stream}");
    let session = app.get(&format!("/session/{session_id}")).await.json;
    assert_eq!(session["recordingStatus"], "ready", "{session}");
    let asset = app.get(&format!("/asset/{session_id}")).await.json;
    assert_eq!(asset["status"]["phase"], "ready", "{asset}");
    let segments = session["sourceSegments"].as_u64().unwrap();
    assert!(segments >= 3, "{session}");
}
