//! Live ingest end to end: ffmpeg publishes over RTMP with a stream key, and the API tells the
//! truth about it (sessions, statistics, `isActive`, webhooks), within seconds.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::receiver::Receiver;
use studio_tests::{
    Backend, Storage, TestApp, assert_decodes_cleanly, eventually, on_both_databases,
};
use tokio::process::{Child, Command};

/// The live HLS tests (source and renditions) with media in S3 (the s3s-fs server of scripts/test).
mod on_s3_storage {
    use studio_tests::{Backend, Storage};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_source_plays_over_hls_postgres() {
        super::the_source_plays_over_hls_on(Backend::Postgres, Storage::S3).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_source_plays_over_hls_sqlite() {
        super::the_source_plays_over_hls_on(Backend::Sqlite, Storage::S3).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renditions_of_the_profiles_play_over_hls_postgres() {
        super::renditions_of_the_profiles_play_over_hls_on(Backend::Postgres, Storage::S3).await
    }
}

on_both_databases!(
    a_publish_becomes_a_truthful_session,
    refused_publishers_create_nothing,
    terminate_and_suspend_cut_the_encoder,
    streams_of_a_vanished_node_turn_idle,
    the_source_plays_over_hls,
    renditions_of_the_profiles_play_over_hls,
    a_reconnect_continues_the_playlists,
);

/// ffmpeg publishing `seconds` of 640x360 H.264 (1 s GOP, 4:2:0 as encoders send it) + AAC in
/// real time.
pub(crate) fn publish(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
        ])
        .args(["-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running ffmpeg (scripts/test-deps installs it)")
}

async fn stream_field(app: &TestApp, id: &str, field: &str) -> Value {
    app.get(&format!("/stream/{id}")).await.json[field].clone()
}

async fn a_publish_becomes_a_truthful_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let hook = app.post("/webhook", json!({"name": "h", "url": receiver.url(), "events": ["stream.started", "stream.idle"]})).await;
    assert_eq!(hook.status, 200);
    let stream = app.create_stream(json!({"name": "cam"})).await;
    let id = stream["id"].as_str().unwrap().to_string();
    let key = stream["streamKey"].as_str().unwrap();

    let started = Instant::now();
    let mut ffmpeg = publish(&app.rtmp_url(key), 6);
    // The first ~2 s segment completes about 2 s in; isActive must follow within 1 s of it.
    let live = eventually(Duration::from_secs(5), || async {
        (stream_field(&app, &id, "isActive").await == true).then_some(())
    })
    .await;
    assert!(live.is_some(), "isActive did not turn true");
    let became_live = started.elapsed();
    assert!(
        became_live < Duration::from_millis(3_500),
        "live after {became_live:?}"
    );
    let info = app
        .call(
            None,
            Method::GET,
            &format!("/playback/{}", stream["playbackId"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(info.json["meta"]["live"], 1);
    // A second publisher is refused while the first is live.
    let second = publish(&app.rtmp_url(key), 2)
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        !second.status.success(),
        "a second publisher must be refused"
    );

    let status = ffmpeg.wait().await.unwrap();
    assert!(status.success(), "the publisher streamed to the end");
    let ended = Instant::now();
    let idle = eventually(Duration::from_secs(5), || async {
        (stream_field(&app, &id, "isActive").await == false).then_some(())
    })
    .await;
    assert!(
        idle.is_some(),
        "isActive did not turn false within 5 s of the encoder leaving"
    );
    assert!(ended.elapsed() < Duration::from_secs(5));

    let sessions = app.get(&format!("/stream/{id}/sessions")).await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    let sessions = sessions.json.as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session["parentId"], id.as_str());
    assert_eq!(session["playbackId"], stream["playbackId"]);
    let duration = session["sourceSegmentsDuration"].as_f64().unwrap();
    assert!(
        (duration - 6.0).abs() <= 0.5,
        "6 s published, {duration} s recorded"
    );
    assert!(session["sourceSegments"].as_i64().unwrap() >= 3);
    assert!(session["sourceBytes"].as_i64().unwrap() > 50_000);
    let one = app
        .get(&format!("/session/{}", session["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json["sourceSegments"], session["sourceSegments"]);
    let listed = app.get(&format!("/session?parentId={id}")).await.json;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let totals = app.get(&format!("/stream/{id}")).await.json;
    assert_eq!(totals["sourceSegments"], session["sourceSegments"]);
    assert!(totals["lastSeen"].as_i64().unwrap() > 0);

    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let events: Vec<Value> = got.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events, vec![json!("stream.started"), json!("stream.idle")]);
    // Sessions are private to the project.
    let other = app.other_tenant("mallory").await;
    let peek = app
        .call(
            Some(&other.key),
            Method::GET,
            &format!("/session/{}", session["id"].as_str().unwrap()),
            None,
        )
        .await;
    peek.assert_error(404, "not found");
    assert_eq!(
        app.call(Some(&other.key), Method::GET, "/session", None)
            .await
            .json,
        json!([])
    );
}

async fn refused_publishers_create_nothing(backend: Backend) {
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
    for key in [
        "0000-0000-0000-0000",
        suspended["streamKey"].as_str().unwrap(),
        deleted["streamKey"].as_str().unwrap(),
    ] {
        let out = publish(&app.rtmp_url(key), 2)
            .wait_with_output()
            .await
            .unwrap();
        assert!(!out.status.success(), "key {key} must be refused");
    }
    assert_eq!(
        app.get("/session").await.json,
        json!([]),
        "a refused publish creates no session"
    );
    assert_eq!(
        stream_field(&app, suspended["id"].as_str().unwrap(), "isActive").await,
        false
    );
}

async fn terminate_and_suspend_cut_the_encoder(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for action in ["terminate", "suspend"] {
        let stream = app.create_stream(json!({"name": action})).await;
        let id = stream["id"].as_str().unwrap().to_string();
        let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 30);
        let live = eventually(Duration::from_secs(6), || async {
            (stream_field(&app, &id, "isActive").await == true).then_some(())
        })
        .await;
        assert!(live.is_some(), "{action}: the stream went live");
        let asked = Instant::now();
        let reply = match action {
            "terminate" => app.delete(&format!("/stream/{id}/terminate")).await,
            _ => {
                app.patch(&format!("/stream/{id}"), json!({"suspended": true}))
                    .await
            }
        };
        assert_eq!(reply.status, 204, "{}", reply.text);
        let exited = tokio::time::timeout(Duration::from_secs(3), ffmpeg.wait()).await;
        assert!(exited.is_ok(), "{action}: the encoder was not disconnected");
        // ffmpeg notices the closed socket on its next write; the server cut it at once.
        assert!(asked.elapsed() < Duration::from_secs(3));
        assert_eq!(stream_field(&app, &id, "isActive").await, false);
        if action == "terminate" {
            // Unlike suspension, terminate lets the encoder come back at once.
            let mut again = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 3);
            let live = eventually(Duration::from_secs(6), || async {
                (stream_field(&app, &id, "isActive").await == true).then_some(())
            })
            .await;
            assert!(live.is_some(), "a terminated stream can publish again");
            assert!(again.wait().await.unwrap().success());
        }
    }
}

/// A stream reported live by an ingest node that then vanished (here: the admin `setactive`, as
/// another node would call it, and no segments after) turns idle once no segment came for
/// `stream_idle_after_secs`, with `stream.idle`.
async fn streams_of_a_vanished_node_turn_idle(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.stream_idle_after_secs = 1).await;
    let receiver = Receiver::start().await;
    app.post(
        "/webhook",
        json!({"name": "h", "url": receiver.url(), "events": ["stream.idle"]}),
    )
    .await;
    let stream = app.create_stream(json!({"name": "orphan"})).await;
    let id = stream["id"].as_str().unwrap().to_string();
    let reply = app
        .call(
            Some(&app.admin_key),
            Method::PUT,
            &format!("/stream/{id}/setactive"),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(stream_field(&app, &id, "isActive").await, true);
    let idle = eventually(Duration::from_secs(5), || async {
        (stream_field(&app, &id, "isActive").await == false).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the orphaned stream stays live");
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].json()["event"], "stream.idle");
    assert_eq!(got[0].json()["stream"]["id"], id.as_str());
}

/// The published source is served as HLS while live and after: players (ffprobe and ffmpeg here)
/// read the master playlist, the media playlist and every segment over HTTP.
async fn the_source_plays_over_hls(backend: Backend) {
    the_source_plays_over_hls_on(backend, Storage::LocalDir).await
}

/// [`the_source_plays_over_hls`] with media in the given store.
pub(crate) async fn the_source_plays_over_hls_on(backend: Backend, storage: Storage) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let stream = app.create_stream(json!({"name": "hls"})).await;
    let id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let master_url = format!("{}/hls/{pid}/index.m3u8", app.base);
    let media_url = format!("{}/hls/{pid}/source/index.m3u8", app.base);
    let fetch = |url: String| {
        let http = app.http.clone();
        async move {
            http.get(url)
                .header("origin", "https://player.example")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        fetch(master_url.clone()).await.status(),
        404,
        "nothing to play before the stream goes live"
    );

    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 6);
    let live = eventually(Duration::from_secs(5), || async {
        (stream_field(&app, &id, "isActive").await == true).then_some(())
    })
    .await;
    assert!(live.is_some());
    let master = fetch(master_url.clone()).await;
    assert_eq!(master.status(), 200);
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(master.headers()["cache-control"], "no-cache");
    // Any origin may play; it is echoed so that cookie-carried playback tokens can work later.
    assert_eq!(
        master.headers()["access-control-allow-origin"],
        "https://player.example"
    );
    let master = master.text().await.unwrap();
    assert!(master.starts_with("#EXTM3U"), "{master}");
    assert!(
        master.contains("#EXT-X-STREAM-INF:") && master.contains("RESOLUTION=640x360"),
        "{master}"
    );
    assert!(
        master.contains("avc1.42") || master.contains("avc1.4d") || master.contains("avc1.64"),
        "4:2:0 H.264: {master}"
    );
    assert!(master.contains("mp4a.40.2"), "{master}");
    assert!(master.lines().any(|l| l == "source/index.m3u8"), "{master}");

    let playlist = fetch(media_url.clone()).await.text().await.unwrap();
    assert!(
        playlist.contains("#EXTINF:") && !playlist.contains("#EXT-X-ENDLIST"),
        "live playlist: {playlist}"
    );
    let first = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap()
        .to_string();
    let segment = fetch(format!("{}/hls/{pid}/source/{first}", app.base)).await;
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.headers()["content-type"], "video/mp2t");
    assert_eq!(
        segment.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(segment.bytes().await.unwrap()[0], 0x47, "MPEG-TS sync byte");

    assert!(ffmpeg.wait().await.unwrap().success());
    let ended = eventually(Duration::from_secs(5), || async {
        let text = fetch(media_url.clone()).await.text().await.unwrap();
        text.contains("#EXT-X-ENDLIST").then_some(text)
    })
    .await;
    assert!(
        ended.is_some(),
        "the playlist is closed when the session ends"
    );

    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            &master_url,
        ])
        .output()
        .await
        .unwrap();
    let duration: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    assert!(
        (duration - 6.0).abs() <= 0.5,
        "ffprobe reads {duration} s of 6 s published ({})",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_decodes_cleanly(&master_url).await;

    // Gated streams are refused without a credential (tests/api/playback_gate.rs has the
    // rest), unknown ids are not found.
    let gated = app
        .create_stream(json!({"name": "gated", "playbackPolicy": {"type": "jwt"}}))
        .await;
    let refused = fetch(format!(
        "{}/hls/{}/index.m3u8",
        app.base,
        gated["playbackId"].as_str().unwrap()
    ))
    .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        fetch(format!("{}/hls/nope/index.m3u8", app.base))
            .await
            .status(),
        404
    );
    assert_eq!(
        fetch(format!("{}/hls/{pid}/source/..%2F..%2Fstudio.db", app.base))
            .await
            .status(),
        404
    );
    assert_media_in_the_store(&app, &pid, &["source/index.m3u8", "index.m3u8"]).await;
}

/// Where the media of `playback_id` went: on S3 storage, into the bucket below the configured
/// prefix (with each `expected` file and segments) and nothing into the local data directory.
pub(crate) async fn assert_media_in_the_store(app: &TestApp, playback_id: &str, expected: &[&str]) {
    let local = app.config.data_dir.join("media");
    let Some(bucket) = &app.s3_bucket else {
        assert!(local.join("hls").join(playback_id).is_dir());
        return;
    };
    let keys = studio_tests::TestS3::from_env().keys(bucket).await;
    for file in expected {
        let key = format!("media/hls/{playback_id}/{file}");
        assert!(keys.contains(&key), "{key} not in the bucket: {keys:?}");
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("media/hls/{playback_id}/")) && k.ends_with(".ts")),
        "no segment in the bucket: {keys:?}"
    );
    assert!(!local.exists(), "media written to the local directory too");
}

/// The `EXT-X-PROGRAM-DATE-TIME` (unix ms) and duration (ms) of each segment of a media
/// playlist, by segment number (`*_n.ts`).
fn program_dates(playlist: &str) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    let (mut date, mut duration) = (None, 0);
    for line in playlist.lines() {
        if let Some(text) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date = studio_media_core::hls::playlist::parse_program_date(text);
        } else if let Some(text) = line.strip_prefix("#EXTINF:") {
            duration = (text.trim_end_matches(',').parse::<f64>().unwrap() * 1000.0).round() as i64;
        } else if line.ends_with(".ts") {
            let number = line
                .trim_end_matches(".ts")
                .rsplit('_')
                .next()
                .unwrap()
                .to_string();
            let date = date
                .take()
                .unwrap_or_else(|| panic!("{line} has no program date: {playlist}"));
            out.push((number, date, duration));
        }
    }
    out
}

/// The stream's profiles become renditions beside the source: listed in the master playlist with
/// their sizes, each a playlist of its own that ffprobe reads with the right size, frame rate
/// and duration, and that decodes without errors. Profiles larger than the source are skipped.
async fn renditions_of_the_profiles_play_over_hls(backend: Backend) {
    renditions_of_the_profiles_play_over_hls_on(backend, Storage::LocalDir).await
}

/// [`renditions_of_the_profiles_play_over_hls`] with media in the given store.
pub(crate) async fn renditions_of_the_profiles_play_over_hls_on(
    backend: Backend,
    storage: Storage,
) {
    let app = TestApp::spawn_on(backend, storage, |_| {}).await;
    let profiles = json!([
        {"name": "240p", "width": 426, "height": 240, "bitrate": 300_000, "fps": 0},
        {"name": "180p15", "width": 320, "height": 180, "bitrate": 150_000, "fps": 15, "gop": "1.0", "profile": "H264Baseline"},
        {"name": "1080p", "width": 1920, "height": 1080, "bitrate": 6_000_000, "fps": 0},
    ]);
    let stream = app
        .create_stream(json!({"name": "ladder", "profiles": profiles}))
        .await;
    let id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let url = |path: &str| format!("{}/hls/{pid}/{path}", app.base);

    let published_at = studio_api::clock::now_ms();
    let mut ffmpeg = publish(&app.rtmp_url(stream["streamKey"].as_str().unwrap()), 6);
    assert!(ffmpeg.wait().await.unwrap().success());
    let mut dates = Vec::new();
    for rendition in ["source", "240p", "180p15"] {
        let closed = eventually(Duration::from_secs(15), || async {
            let reply = app
                .http
                .get(url(&format!("{rendition}/index.m3u8")))
                .send()
                .await
                .unwrap();
            let text = reply.text().await.unwrap();
            text.contains("#EXT-X-ENDLIST").then_some(text)
        })
        .await;
        let playlist = closed
            .unwrap_or_else(|| panic!("the {rendition} playlist is closed after the session"));
        // Continuous sequence numbers: segment n is named *_n.ts.
        let numbers: Vec<u64> = playlist
            .lines()
            .filter(|l| l.ends_with(".ts"))
            .map(|l| {
                l.trim_end_matches(".ts")
                    .rsplit('_')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(numbers.len() >= 3, "{playlist}");
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{rendition}: {numbers:?}"
        );
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
        dates.push(program_dates(&playlist));
    }
    // Every segment has its wall-clock time, within the publish, advancing by its duration, and
    // the same in every rendition (players switching renditions, and clips, rely on it).
    let finished_at = studio_api::clock::now_ms();
    let source = &dates[0];
    for (i, (_, date, duration)) in source.iter().enumerate() {
        assert!(*date >= published_at && *date <= finished_at, "{source:?}");
        if let Some((_, next, _)) = source.get(i + 1) {
            assert!((next - date - duration).abs() <= 5, "{source:?}");
        }
    }
    for rendition in &dates[1..] {
        for (name, date, _) in rendition {
            let same = source.iter().find(|(n, _, _)| n == name);
            assert_eq!(
                same.map(|s| s.1),
                Some(*date),
                "{name}: {rendition:?} vs {source:?}"
            );
        }
    }

    let master = app
        .http
        .get(url("index.m3u8"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let variants: Vec<&str> = master
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        variants,
        ["source/index.m3u8", "240p/index.m3u8", "180p15/index.m3u8"],
        "{master}"
    );
    assert!(
        master.contains("RESOLUTION=640x360")
            && master.contains("RESOLUTION=426x240")
            && master.contains("RESOLUTION=320x180"),
        "{master}"
    );
    assert!(
        master.contains("avc1.42c00c") || master.contains("avc1.42c00d"),
        "baseline at its level: {master}"
    );
    assert!(master.contains("FRAME-RATE=15.000"), "{master}");

    for (rendition, width, height, fps) in
        [("240p", 426, 240, "30/1"), ("180p15", 320, 180, "15/1")]
    {
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height,r_frame_rate:format=duration",
                "-of",
                "json",
            ])
            .arg(url(&format!("{rendition}/index.m3u8")))
            .output()
            .await
            .unwrap();
        let probed: Value = serde_json::from_slice(&probe.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&probe.stderr)));
        let video = &probed["streams"][0];
        assert_eq!(
            (video["width"].as_i64(), video["height"].as_i64()),
            (Some(width), Some(height)),
            "{rendition}"
        );
        assert_eq!(video["r_frame_rate"], fps, "{rendition}");
        let duration: f64 = probed["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (duration - 6.0).abs() <= 0.5,
            "{rendition}: {duration} s of 6 s published"
        );
        assert_decodes_cleanly(&url(&format!("{rendition}/index.m3u8"))).await;
    }

    let session = app.get(&format!("/stream/{id}/sessions")).await.json[0].clone();
    assert_eq!(
        session["transcodedSegments"], session["sourceSegments"],
        "{session}"
    );
    assert!(
        (session["transcodedSegmentsDuration"].as_f64().unwrap() - 6.0).abs() <= 0.5,
        "{session}"
    );
    assert!(
        session["transcodedBytes"].as_i64().unwrap() > 50_000,
        "{session}"
    );
}

/// An encoder that disconnects and comes back continues the same playlists: the segments of both
/// sessions are listed in order with continuous media sequence numbers, and
/// `EXT-X-DISCONTINUITY` where the second session begins, in the source and in the renditions.
async fn a_reconnect_continues_the_playlists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let profiles =
        json!([{"name": "180p", "width": 320, "height": 180, "bitrate": 150_000, "fps": 0}]);
    let stream = app
        .create_stream(json!({"name": "flaky", "profiles": profiles}))
        .await;
    let id = stream["id"].as_str().unwrap().to_string();
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let key = stream["streamKey"].as_str().unwrap().to_string();
    for _ in 0..2 {
        assert!(
            publish(&app.rtmp_url(&key), 4)
                .wait()
                .await
                .unwrap()
                .success(),
            "both publishes are accepted"
        );
    }
    let sessions = eventually(Duration::from_secs(5), || async {
        let list = app.get(&format!("/stream/{id}/sessions")).await.json;
        (list.as_array().map(Vec::len) == Some(2)).then_some(list)
    })
    .await;
    assert!(sessions.is_some(), "two sessions");

    for rendition in ["source", "180p"] {
        let url = format!("{}/hls/{pid}/{rendition}/index.m3u8", app.base);
        let playlist = eventually(Duration::from_secs(15), || async {
            let text = app
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            // Closed, and holding the second session's last segment.
            (text.contains("#EXT-X-ENDLIST") && text.matches("#EXTINF").count() >= 4)
                .then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("the {rendition} playlist holds both sessions"));
        assert_eq!(
            playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
            1,
            "{playlist}"
        );
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{playlist}");
        let total: f64 = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|d| d.trim_end_matches(',').parse::<f64>().unwrap())
            .sum();
        assert!(
            (total - 8.0).abs() <= 0.5,
            "{rendition}: {total} s listed of 2 x 4 s published: {playlist}"
        );
        // The session tags of the segment names change exactly at the discontinuity.
        let (before, after) = playlist.split_once("#EXT-X-DISCONTINUITY\n").unwrap();
        let tags = |text: &str| {
            text.lines()
                .filter(|l| l.ends_with(".ts"))
                .map(|l| l.split('_').next().unwrap().to_string())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (first, second) = (tags(before), tags(after));
        assert!(
            first.len() == 1 && second.len() == 1 && first != second,
            "{playlist}"
        );
    }
}
