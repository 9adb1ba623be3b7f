//! Helpers shared by media-core's integration tests: scratch directories, segmenting packets
//! like live ingest does, and collecting what an ingest server reports for one publish.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use studio_media_core::Packet;
use studio_media_core::ingest::{EndReason, IngestEvent, IngestProtocol};
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Runs the ffmpeg CLI (quiet, overwriting) and fails the test with its stderr if it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (scripts/test-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffmpeg decodes the file without a word.
pub fn assert_decodes_cleanly(path: &Path) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How long ffprobe says the file lasts (s).
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {}: {text:?}", path.display()))
}

/// A scratch directory, removed when dropped (kept when `KEEP` is set, for a look at the files).
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after the test and this process.
    pub fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("studio-media-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Cuts packets into segments with the default segmenter, the last one included.
pub fn segment(packets: &[Packet]) -> Vec<Segment> {
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut segments: Vec<Segment> = packets
        .iter()
        .filter_map(|p| segmenter.push(p.clone()).expect("segmentable"))
        .collect();
    segments.extend(segmenter.finish());
    segments
}

/// Everything one publish produced.
#[derive(Default)]
pub struct Published {
    pub key: Option<String>,
    pub packets: Vec<Packet>,
    pub ended: Option<EndReason>,
}

/// Collects events until `Ended` (or the deadline). The publish must have been granted as
/// `stream-1` over `protocol`.
pub async fn collect(
    events: &mut mpsc::Receiver<IngestEvent>,
    within: Duration,
    protocol: IngestProtocol,
) -> Published {
    let mut out = Published::default();
    let deadline = Instant::now() + within;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match event {
            IngestEvent::Started {
                stream_key,
                grant,
                protocol: got,
                mut packets,
                ..
            } => {
                assert_eq!(grant.stream_id, "stream-1");
                assert_eq!(got, protocol);
                out.key = Some(stream_key);
                // The publish's own queue ends when the publish does.
                while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, packets.recv()).await
                {
                    out.packets.push(packet);
                }
            }
            IngestEvent::Ended { reason, .. } => {
                out.ended = Some(reason);
                break;
            }
        }
    }
    out
}

/// Waits for an encoder process to exit.
pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    timeout(within, child.wait())
        .await
        .expect("ffmpeg exits in time")
        .expect("wait")
}
