//! Wall-clock time as the API shows it: integer milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the system clock is after 1970");
    since.as_millis() as i64
}
