//! `rtmp-load`: many RTMP publishers from one light process, for density benchmarks.
//!
//!     rtmp-load CLIP.flv HOST:PORT STARTS_PER_SECOND < stream-keys
//!
//! Publishes the FLV clip once, in real time, to every stream key read from standard input (one
//! a line), starting publishers at a steady rate, and prints a JSON report when all are done.
//! One ffmpeg process per stream costs the machine more than the server it measures: 500 of
//! them take two cores by themselves, where this takes a fraction of one.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use studio_tests::publisher::{FlvTag, RtmpPublisher, flv_tags};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, clip, addr, rate] = &args[..] else {
        anyhow::bail!("usage: rtmp-load CLIP.flv HOST:PORT STARTS_PER_SECOND < stream-keys");
    };
    let tags: Arc<Vec<FlvTag>> = Arc::new(flv_tags(&std::fs::read(clip)?));
    let addr: SocketAddr = addr.parse()?;
    let rate: f64 = rate.parse()?;
    let keys: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter(|line| !line.trim().is_empty())
        .collect();
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for (i, key) in keys.into_iter().enumerate() {
        tokio::time::sleep_until(
            (started + Duration::from_secs_f64(i as f64 / rate.max(0.001))).into(),
        )
        .await;
        let tags = tags.clone();
        publishers.spawn(async move { publish(addr, &key, &tags).await });
    }
    let mut ok = 0;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(result) = publishers.join_next().await {
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(err)) => *failed.entry(format!("{err:#}")).or_default() += 1,
            Err(join) => *failed.entry(join.to_string()).or_default() += 1,
        }
    }
    let report = serde_json::json!({
        "published": ok,
        "failed": failed.values().sum::<usize>(),
        "failures": failed,
        "wall_s": started.elapsed().as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}

/// One publish of the whole clip in real time, as `ffmpeg -re -c copy` would send it.
async fn publish(addr: SocketAddr, key: &str, tags: &[FlvTag]) -> anyhow::Result<()> {
    let mut publisher = RtmpPublisher::publish(addr, key).await?;
    let began = Instant::now();
    for tag in tags {
        let due = began + Duration::from_millis(u64::from(tag.timestamp_ms));
        tokio::time::sleep_until(due.into()).await;
        publisher.tag(tag).await?;
    }
    Ok(())
}
