//! Logging that a flood cannot turn into a flood of log lines.
//!
//! Anyone on the internet can open connections or send garbage datagrams to an ingest port, and
//! every refusal is worth a line, but not thousands a second. A [`LogLimiter`] lets a burst of
//! lines through per window and counts the rest; the next line let through says how many were
//! left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `burst` lines through per `window`.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting `burst` lines through every `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            state: Mutex::new(Window {
                started: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if a line may be logged now, `n` being how many were left out before it;
    /// `None` if this one is left out.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window)
        {
            state.started = Some(now);
            state.passed = 0;
        }
        if state.passed < self.burst {
            state.passed += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted() {
        let limiter = LogLimiter::new(3, Duration::from_millis(100));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(limiter.allow(), None);
        }
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(limiter.allow(), Some(1000), "the next line reports the gap");
        assert_eq!(limiter.allow(), Some(0));
    }
}
