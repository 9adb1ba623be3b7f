//! The HTTP server: accepts TCP connections and serves the router on each over HTTP/1.1, with a
//! deadline no client can stretch, and a bounded graceful shutdown.
//!
//! A client has [`HEADER_READ_TIMEOUT`] to send a complete request head, counted from the moment
//! the connection is accepted and again from the end of each response: hyper's header-read timer
//! restarts whenever an HTTP/1 connection goes back to waiting for a request. So one deadline
//! closes both the connection that trickles its headers and the one that connects (or finishes a
//! request) and then sits idle. Handlers are bounded separately, by the request timeout.
//!
//! Only HTTP/1.1 is served (no HTTP/2 prior knowledge): hyper has no header or idle deadline for
//! HTTP/2 connections, and players, SDKs and the proxies in front of this server all speak
//! HTTP/1.1 to it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How long a client may take to send a request head, and how long a connection may sit idle
/// before its first request or between two.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// After an accept error other than a client giving up (out of file descriptors, typically),
/// wait this long before accepting again rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` turns true (or its sender is dropped). Then it
/// stops accepting, lets every connection finish the request it is serving (idle ones close at
/// once), and after `drain` closes those still open. Never fails: the `io::Result` is that of
/// `axum::serve`, which this replaces.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Connections watch this to start their graceful shutdown.
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(
                        builder.clone(),
                        stream,
                        peer,
                        app.clone(),
                        closing_rx.clone(),
                    ));
                }
                Err(err) if is_client_error(&err) => {}
                Err(err) => {
                    tracing::error!(error = %err, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reaps finished connections so the set holds only open ones.
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = ended
                    && err.is_panic()
                {
                    tracing::error!(error = %err, "serving an HTTP connection panicked");
                }
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still busy after the drain deadline; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection(
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut closing: watch::Receiver<bool>,
) {
    // Every request carries the client's address (`ClientAddr`), as axum's own server does.
    let service = TowerToHyperService::new(app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut closing) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // Clients that time out, reset or send garbage: theirs to fix, not an error of ours.
        tracing::debug!(error = %err, "HTTP connection ended with an error");
    }
}

/// Resolves when `switch` turns true or its sender is gone.
async fn stopped(switch: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; it is dropped here, before any other await.
    let _ = switch.wait_for(|on| *on).await;
}

/// Accept errors caused by one client (it left before we accepted), not by the server.
fn is_client_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// A server whose `/slow` answers after `delay`, and the switch that stops it.
    async fn start(
        delay: Duration,
        drain: Duration,
    ) -> (
        String,
        watch::Sender<bool>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "done"
            }),
        );
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, app, stop_rx, drain));
        (base, stop, server)
    }

    #[tokio::test]
    async fn shutdown_lets_requests_in_flight_finish() {
        let (base, stop, server) = start(Duration::from_millis(300), Duration::from_secs(5)).await;
        let request = tokio::spawn(reqwest::get(format!("{base}/slow")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        let response = request
            .await
            .unwrap()
            .expect("the request in flight is answered");
        assert_eq!(response.text().await.unwrap(), "done");
        server.await.unwrap().unwrap();
        assert!(
            reqwest::get(format!("{base}/slow")).await.is_err(),
            "no new connection is accepted"
        );
    }

    #[tokio::test]
    async fn shutdown_is_bounded_by_the_drain_deadline() {
        let (base, stop, server) = start(Duration::from_secs(60), Duration::from_millis(200)).await;
        let request = tokio::spawn(reqwest::get(format!("{base}/slow")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops at the drain deadline")
            .unwrap()
            .unwrap();
        assert!(
            request.await.unwrap().is_err(),
            "the request cut at the deadline gets no answer"
        );
    }
}
