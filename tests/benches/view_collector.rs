//! How many view hits a node's collector absorbs: hits are handed to it at a fixed rate (as the
//! HLS handler does, one `try_send` each) for 1,000 viewers of 100 playback IDs, and the run passes
//! when none was dropped and every segment's playtime reached the rollups. Prints the rate, the
//! time `record` takes per hit, and how long after the last hit the rollups had it all.
//!
//!     cargo bench -p studio-tests --bench view_collector [-- HITS_PER_SECOND]

use std::time::{Duration, Instant};

use studio_api::viewership::{Hit, Media};
use studio_tests::{Backend, TestApp};

const SECONDS: u64 = 5;
const PLAYBACK_IDS: usize = 100;
const VIEWERS: usize = 1_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let app = TestApp::spawn(Backend::Sqlite).await;
    let state = app.server.as_ref().unwrap().state.clone();
    let views = state.views();
    // Every playlist is "served" once, so segment durations are known (2 s each).
    for p in 0..PLAYBACK_IDS {
        views.learn_playlist(
            &format!("pid{p}"),
            "source",
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n0.ts\n",
        );
    }
    let total = rate * SECONDS;
    let batch = rate / 100;
    let started = Instant::now();
    let mut recording = Duration::ZERO;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while sent < total {
        tick.tick().await;
        let at = studio_api::clock::now_ms();
        let begun = Instant::now();
        for _ in 0..batch {
            let viewer = (sent as usize) % VIEWERS;
            views.record(Hit {
                project_id: app.project_id.clone(),
                playback_id: format!("pid{}", viewer % PLAYBACK_IDS),
                creator_id: String::new(),
                viewer: studio_api::viewership::collector::viewer_digest(&[&viewer.to_le_bytes()]),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36".into(),
                country: String::new(),
                media: Media::Segment {
                    path: "source/0.ts".into(),
                },
                at,
            });
            sent += 1;
        }
        recording += begun.elapsed();
    }
    let sending = started.elapsed();
    let expected_ms = (total * 2_000) as i64;
    let drained = Instant::now();
    let counted = loop {
        let reply = app.get("/data/views/query").await;
        let playtime_ms = reply.json[0]["playtimeMins"].as_f64().unwrap_or(0.0) * 60_000.0;
        if playtime_ms.round() as i64 >= expected_ms || drained.elapsed() > Duration::from_secs(60)
        {
            break (
                playtime_ms.round() as i64,
                reply.json[0]["viewCount"].clone(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "| hits/s asked | hits/s sent | dropped | views | playtime counted | record() per hit | all in the rollups after the last hit |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {rate} | {:.0} | {} | {} | {:.1} % | {:.0} ns | {:.2} s |",
        total as f64 / sending.as_secs_f64(),
        views.dropped(),
        counted.1,
        100.0 * counted.0 as f64 / expected_ms as f64,
        recording.as_nanos() as f64 / total as f64,
        drained.elapsed().as_secs_f64(),
    );
}
