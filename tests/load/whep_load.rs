//! `whep-load`: many WHEP viewers of one stream from one light process, for the WebRTC viewer
//! benchmark (bench/webrtc_viewers.py).
//!
//!     whep-load WHEP_URL VIEWERS SECONDS
//!
//! Each viewer is a str0m peer on a UDP socket of its own: it posts an offer (H.264 video and
//! Opus audio, receive only), connects, and counts the video frames it receives (depacketized,
//! not decoded: browsers would decode, which would cost this machine more than the server it
//! measures). After SECONDS it prints one JSON line: viewers connected, frames per viewer
//! (min, median, max) and the viewers that froze (no frame for a second or more after their first).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::net::UdpSocket;

/// A frame gap at least this long counts as a freeze.
const FREEZE: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone)]
struct Viewer {
    connected: bool,
    frames: u64,
    longest_gap: Duration,
    error: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, viewers, seconds] = &args[..] else {
        anyhow::bail!("usage: whep-load WHEP_URL VIEWERS SECONDS");
    };
    let viewers: usize = viewers.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    let client = reqwest::Client::new();
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let mut tasks = tokio::task::JoinSet::new();
    let until = Instant::now() + duration;
    for _ in 0..viewers {
        let (client, url, crypto) = (client.clone(), url.clone(), crypto.clone());
        tasks.spawn(async move {
            watch(&client, &url, crypto, until)
                .await
                .unwrap_or_else(|err| Viewer {
                    error: Some(format!("{err:#}")),
                    ..Viewer::default()
                })
        });
        // Offers one after another, as viewers arrive, not all in the same millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result?);
    }
    let mut frames: Vec<u64> = results.iter().map(|v| v.frames).collect();
    frames.sort_unstable();
    let connected = results.iter().filter(|v| v.connected).count();
    let frozen = results
        .iter()
        .filter(|v| v.frames == 0 || v.longest_gap >= FREEZE)
        .count();
    let errors: Vec<&String> = results
        .iter()
        .filter_map(|v| v.error.as_ref())
        .take(3)
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "viewers": viewers,
            "connected": connected,
            "framesMin": frames.first(),
            "framesMedian": frames.get(frames.len() / 2),
            "framesMax": frames.last(),
            "frozen": frozen,
            "longestGapMs": results.iter().map(|v| v.longest_gap.as_millis() as u64).max(),
            "errors": errors,
        })
    );
    Ok(())
}

async fn watch(
    client: &reqwest::Client,
    url: &str,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    until: Instant,
) -> anyhow::Result<Viewer> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local: SocketAddr = socket.local_addr()?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(crypto)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
    let response = client
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "{status}: {text}");
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&text)?)?;

    let mut viewer = Viewer::default();
    let mut last_frame: Option<Instant> = None;
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = loop {
            match rtc.poll_output()? {
                Output::Timeout(at) => break at,
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => viewer.connected = true,
                Output::Event(Event::MediaData(data))
                    if data.params.spec().codec == str0m::format::Codec::H264 =>
                {
                    let now = Instant::now();
                    if let Some(last) = last_frame {
                        viewer.longest_gap = viewer.longest_gap.max(now - last);
                    }
                    last_frame = Some(now);
                    viewer.frames += 1;
                }
                Output::Event(_) => {}
            }
        };
        if Instant::now() >= until {
            break;
        }
        let wait = deadline
            .min(until)
            .saturating_duration_since(Instant::now());
        let input = match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((len, source))) => match buf[..len].try_into() {
                Ok(contents) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ),
                Err(_) => continue,
            },
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input)?;
    }
    Ok(viewer)
}
