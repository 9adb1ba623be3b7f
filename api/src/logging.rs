//! Logging set-up: text or JSON lines on stderr, filtered by `STUDIO_LOG`, with the libraries
//! that log per received packet held to a rate.
//!
//! srt-tokio and srt-protocol log a warning for every datagram they cannot use, so anyone who
//! can reach the SRT port could write thousands of lines a second into the logs. Their lines
//! pass at most [`NOISY_BURST`] per [`NOISY_WINDOW`]; the next line let through says how many
//! were left out.

use std::io::IsTerminal;
use std::time::Duration;

use studio_media_core::ingest::LogLimiter;
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Lines of the noisy libraries let through per window.
pub const NOISY_BURST: u32 = 20;
pub const NOISY_WINDOW: Duration = Duration::from_secs(10);

/// Targets that log per packet from the network. Lines bridged from the `log` crate carry their
/// module path as target.
const NOISY_TARGETS: &[&str] = &["srt_protocol", "srt_tokio"];

/// Installs the global subscriber.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("STUDIO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colour codes only for a terminal: log collectors (journald, Kubernetes) store them as text.
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let output = if json {
        output.json().boxed()
    } else {
        output.boxed()
    };
    tracing_subscriber::registry()
        .with(
            output
                .with_filter(RateLimitNoisy::default())
                .with_filter(filter),
        )
        .init();
}

/// Holds the [`NOISY_TARGETS`] to [`NOISY_BURST`] lines per [`NOISY_WINDOW`].
pub struct RateLimitNoisy {
    limiter: LogLimiter,
}

impl Default for RateLimitNoisy {
    fn default() -> Self {
        Self {
            limiter: LogLimiter::new(NOISY_BURST, NOISY_WINDOW),
        }
    }
}

fn noisy(meta: &Metadata<'_>) -> bool {
    NOISY_TARGETS
        .iter()
        .any(|target| meta.target().starts_with(target))
}

impl<S> Filter<S> for RateLimitNoisy {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        !(meta.is_event() && noisy(meta)) || self.limiter.allow().is_some()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Lines bridged from `log` share a few callsites whatever their target: decide per event.
        if noisy(meta) || meta.target() == "log" {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the output layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_srt_warnings_is_held_to_a_burst() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_filter(RateLimitNoisy::default()),
        );
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..2_900 {
                tracing::warn!(target: "srt_protocol::listener", packet = i, "garbage");
            }
            tracing::warn!(target: "studio_api::live", "our own lines are not limited");
            tracing::info!("neither are these");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let garbage = text.lines().filter(|l| l.contains("garbage")).count();
        assert_eq!(garbage, NOISY_BURST as usize, "{text}");
        assert!(text.contains("our own lines are not limited"));
        assert!(text.contains("neither are these"));
    }
}
