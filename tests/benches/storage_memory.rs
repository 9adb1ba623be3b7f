//! Memory of moving a 1 GiB object through the media store, on the local directory and on S3:
//! writing it (`put_file`, multipart on S3) and serving it over HTTP as an MP4, whole and by a
//! 512 MiB range, with the real server. Each phase reports how far it raised the peak RSS of the
//! process above the RSS it started from (Linux: `/proc/self/clear_refs` resets the peak), and the
//! run fails when any phase passes the limit of the issue (32 MiB).
//!
//!     bench/storage-memory   (starts s3s-fs; bench/README.md has results)

use std::time::Instant;

use studio_tests::{Backend, Storage, TempDir, TestApp};

const OBJECT_BYTES: u64 = 1024 * 1024 * 1024;
const LIMIT_BYTES: u64 = 32 * 1024 * 1024;

/// A kernel figure of this process from `/proc/self/status`, in bytes (`VmRSS`, `VmHWM`).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Runs `phase` and returns how far the peak RSS rose above the RSS at its start.
async fn peak_rise<F: std::future::Future<Output = ()>>(phase: F) -> u64 {
    // "5" resets the peak (VmHWM) to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    let before = proc_status("VmRSS");
    phase.await;
    proc_status("VmHWM").saturating_sub(before)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Downloads `url` chunk by chunk, returning the bytes received.
async fn download(http: &reqwest::Client, url: &str, range: Option<&str>) -> u64 {
    let mut request = http.get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let mut response = request.send().await.expect("requesting the MP4");
    assert!(response.status().is_success(), "{}", response.status());
    let mut received = 0;
    while let Some(chunk) = response.chunk().await.expect("reading the MP4") {
        received += chunk.len() as u64;
    }
    received
}

async fn run(storage: Storage, scratch: &TempDir) -> bool {
    let app = TestApp::spawn_on(Backend::Sqlite, storage, |_| {}).await;
    let stream = app.create_stream(serde_json::json!({"name": "big"})).await;
    let pid = stream["playbackId"].as_str().unwrap().to_string();
    let key = format!("hls/{pid}/static720p0.mp4");
    let file = scratch.0.join("big.mp4");
    let store = app.server.as_ref().unwrap().state.media_store();
    let url = format!("{}/hls/{pid}/static720p0.mp4", app.base);

    let started = Instant::now();
    let write =
        peak_rise(async { store.put_file(&key, &file).await.expect("storing the file") }).await;
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let whole = peak_rise(async {
        assert_eq!(download(&app.http, &url, None).await, OBJECT_BYTES);
    })
    .await;
    let whole_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let ranged = peak_rise(async {
        let got = download(&app.http, &url, Some("bytes=268435456-805306367")).await;
        assert_eq!(got, 512 * 1024 * 1024);
    })
    .await;
    let ranged_s = started.elapsed().as_secs_f64();
    let name = match storage {
        Storage::LocalDir => "local directory",
        Storage::S3 => "S3 (s3s-fs)",
    };
    let mut ok = true;
    for (phase, rise, secs) in [
        ("write 1 GiB (put_file)", write, write_s),
        ("serve 1 GiB MP4 (GET)", whole, whole_s),
        ("serve 512 MiB range", ranged, ranged_s),
    ] {
        let verdict = if rise < LIMIT_BYTES { "ok" } else { "OVER" };
        ok &= rise < LIMIT_BYTES;
        println!(
            "| {name} | {phase} | {:.1} MiB | {secs:.1} s | {verdict} |",
            mib(rise)
        );
    }
    ok
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scratch = TempDir::new();
    // Written in 1 MiB pieces: the file itself never sits in this process's memory.
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(scratch.0.join("big.mp4")).expect("creating the file"),
        );
        let piece: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..OBJECT_BYTES / piece.len() as u64 {
            out.write_all(&piece).expect("writing the file");
        }
        out.flush().expect("writing the file");
    }
    println!("| store | phase | peak RSS rise | time | < 32 MiB |");
    println!("|---|---|---|---|---|");
    let mut ok = run(Storage::LocalDir, &scratch).await;
    ok &= run(Storage::S3, &scratch).await;
    if !ok {
        eprintln!("a phase raised the peak RSS by 32 MiB or more");
        std::process::exit(1);
    }
}
