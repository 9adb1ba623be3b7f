//! The HTTP edge: what the server does with requests and connections before any handler runs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use studio_api::http::server::HEADER_READ_TIMEOUT;
use studio_tests::{Backend, Reply, TestApp, on_both_databases};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_databases!(two_authorization_headers_are_refused);

async fn two_authorization_headers_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.other_tenant("bob").await;
    // Both orders, both keys valid: which one counts would depend on who reads the request.
    for (first, second) in [(&app.key, &other.key), (&other.key, &app.key)] {
        for path in ["/stream", "/playback/anything"] {
            let reply = Reply::from(
                app.http
                    .get(app.url(path))
                    .header("authorization", format!("Bearer {first}"))
                    .header("authorization", format!("Bearer {second}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            reply.assert_error(400, "one Authorization header");
        }
    }
    // One header still works.
    assert_eq!(app.get("/stream").await.status, StatusCode::OK);
}

/// The bound: connections that trickle headers or sit idle are closed within 30 s.
const _: () = assert!(HEADER_READ_TIMEOUT.as_secs() <= 30);

/// Waits until the server closes `stream` (EOF or reset), reading and discarding what it sends;
/// returns how long that took, or `None` if it is still open after `limit`.
async fn closed_within(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Reads one HTTP/1.1 response with a `content-length` off `stream`.
async fn read_response(stream: &mut tokio::net::tcp::OwnedReadHalf) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("reading a response");
        assert!(n > 0, "the server closed before answering");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// A client that sends a request head one byte a second, one that connects and sends nothing,
/// and one that sits idle after a request are all disconnected after the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.server.as_ref().unwrap().addr;
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(3);

    let trickler = async {
        let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        let writer = tokio::spawn(async move {
            let head = b"GET /api/healthz HTTP/1.1\r\nHost: studio\r\nX-Padding: ";
            write.write_all(head).await.unwrap();
            // Never finishes the head; stops when the server hangs up.
            while write.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let closed = closed_within(&mut read, limit).await;
        writer.abort();
        closed
    };
    let silent = async {
        let (mut read, _write) = TcpStream::connect(addr).await.unwrap().into_split();
        closed_within(&mut read, limit).await
    };
    let idle_after_request = async {
        let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        write
            .write_all(b"GET /api/healthz HTTP/1.1\r\nHost: studio\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut read).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        closed_within(&mut read, limit).await
    };
    // A connection that keeps sending requests is kept as long as it does.
    let busy = async {
        let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        let started = Instant::now();
        while started.elapsed() < limit {
            write
                .write_all(b"GET /api/healthz HTTP/1.1\r\nHost: studio\r\n\r\n")
                .await
                .unwrap();
            let response = read_response(&mut read).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let (trickler, silent, idle, ()) = tokio::join!(trickler, silent, idle_after_request, busy);
    for (what, closed) in [
        ("trickling its headers", trickler),
        ("silent", silent),
        ("idle after a request", idle),
    ] {
        let after =
            closed.unwrap_or_else(|| panic!("a connection {what} is still open after {limit:?}"));
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "a connection {what} was closed after {after:?}, before the header-read timeout"
        );
    }
}
