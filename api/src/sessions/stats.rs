//! Session statistics, counted per segment and written in batches.
//!
//! Every stored segment adds to its session's and its stream's statistics. Written one
//! transaction per segment, 200 streams cutting their segments together queued for SQLite's single
//! writer for seconds (bench/README.md). So segments are counted in memory here and written for
//! all sessions of the node in one transaction per [`FLUSH_INTERVAL`]. What must be seen at once is
//! still written at once, by the live pipeline itself: a stream's first segment (it makes the
//! stream live, with `stream.started`), and whatever is still counted here when a playlist is
//! about to be closed or a session ends ([`SessionStats::write_now`], [`SessionStats::take`]): a
//! client that sees a playlist end reads complete statistics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::repo::{self, SegmentKind, SegmentStats};
use crate::app::AppState;
use crate::db::{Database, Tx};

/// How often the counted segments of every session are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Segments of one kind counted since the last write.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub segments: i64,
    pub duration_s: f64,
    pub bytes: i64,
    /// Bytes per second of the last segment (`ingestRate`, `outgoingRate`).
    pub last_rate: f64,
}

impl Counts {
    /// The counts of one segment.
    pub fn of(segment: SegmentStats) -> Counts {
        let mut counts = Counts::default();
        counts.add(segment);
        counts
    }

    fn add(&mut self, segment: SegmentStats) {
        self.segments += 1;
        self.duration_s += segment.duration_s;
        self.bytes = self.bytes.saturating_add(segment.bytes);
        self.last_rate = if segment.duration_s > 0.0 {
            segment.bytes as f64 / segment.duration_s
        } else {
            0.0
        };
    }

    fn merge(&mut self, later: &Counts) {
        self.segments += later.segments;
        self.duration_s += later.duration_s;
        self.bytes = self.bytes.saturating_add(later.bytes);
        if later.segments > 0 {
            self.last_rate = later.last_rate;
        }
    }
}

/// What one session counted since its statistics were last written.
#[derive(Debug, Clone)]
pub struct Pending {
    project_id: String,
    stream_id: String,
    source: Counts,
    transcoded: Counts,
    last_seen: i64,
}

impl Pending {
    /// Adds these counts to the session's and its stream's statistics.
    pub async fn write(&self, tx: &mut Tx, session_id: &str) -> Result<(), sqlx::Error> {
        for (kind, counts) in [
            (SegmentKind::Source, &self.source),
            (SegmentKind::Transcoded, &self.transcoded),
        ] {
            repo::add_counts(
                tx,
                &self.project_id,
                session_id,
                &self.stream_id,
                kind,
                counts,
                self.last_seen,
            )
            .await?;
        }
        Ok(())
    }

    fn merge(&mut self, later: &Pending) {
        self.source.merge(&later.source);
        self.transcoded.merge(&later.transcoded);
        self.last_seen = self.last_seen.max(later.last_seen);
    }
}

/// The segments this node counted and has not written yet, by session.
#[derive(Debug, Default)]
pub struct SessionStats {
    pending: Mutex<HashMap<String, Pending>>,
}

impl SessionStats {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one segment of a session, to be written with the next batch.
    pub fn add(
        &self,
        project_id: &str,
        session_id: &str,
        stream_id: &str,
        segment: SegmentStats,
        now: i64,
    ) {
        let mut pending = self.pending();
        let entry = pending
            .entry(session_id.to_string())
            .or_insert_with(|| Pending {
                project_id: project_id.to_string(),
                stream_id: stream_id.to_string(),
                source: Counts::default(),
                transcoded: Counts::default(),
                last_seen: now,
            });
        match segment.kind {
            SegmentKind::Source => entry.source.add(segment),
            SegmentKind::Transcoded => entry.transcoded.add(segment),
        }
        entry.last_seen = entry.last_seen.max(now);
    }

    /// What a session counted and was not written yet, taken out of the batch (its end writes
    /// it, in the same transaction).
    pub fn take(&self, session_id: &str) -> Option<Pending> {
        self.pending().remove(session_id)
    }

    /// Writes what one session counted now, before something a client watches for (a playlist's
    /// end) shows the session as done. On failure the counts go back into the batch.
    pub async fn write_now(&self, db: &Database, session_id: &str) -> anyhow::Result<()> {
        let Some(pending) = self.take(session_id) else {
            return Ok(());
        };
        let batch = HashMap::from([(session_id.to_string(), pending)]);
        if let Err(err) = write_all(db, &batch).await {
            self.restore(batch);
            return Err(err);
        }
        Ok(())
    }

    /// Writes everything counted, for every session, in one transaction. On failure the counts
    /// go back into the batch for the next attempt.
    pub async fn flush(&self, db: &Database) -> anyhow::Result<usize> {
        let batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return Ok(0);
        }
        match write_all(db, &batch).await {
            Ok(()) => Ok(batch.len()),
            Err(err) => {
                self.restore(batch);
                Err(err)
            }
        }
    }

    /// Puts counts that could not be written back, before what was counted since.
    fn restore(&self, batch: HashMap<String, Pending>) {
        let mut pending = self.pending();
        for (session_id, mut earlier) in batch {
            if let Some(later) = pending.remove(&session_id) {
                earlier.merge(&later);
            }
            pending.insert(session_id, earlier);
        }
    }
}

async fn write_all(db: &Database, batch: &HashMap<String, Pending>) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    for (session_id, pending) in batch {
        pending.write(&mut tx, session_id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes the batch every [`FLUSH_INTERVAL`] until `shutdown`; the server writes what is left
/// once the sessions have ended.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match state.session_stats().flush(state.db()).await {
            Ok(written) => {
                metrics::histogram!("studio_session_stats_batch_sessions").record(written as f64)
            }
            Err(err) => {
                tracing::error!(
                    error = format!("{err:#}"),
                    "writing session statistics failed; retried with the next batch"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(kind: SegmentKind, ms: i64, bytes: u64) -> SegmentStats {
        SegmentStats::new(kind, ms, bytes)
    }

    #[test]
    fn segments_add_up_per_session_and_kind() {
        let stats = SessionStats::default();
        stats.add(
            "p",
            "s1",
            "st",
            segment(SegmentKind::Source, 2000, 1000),
            10,
        );
        stats.add(
            "p",
            "s1",
            "st",
            segment(SegmentKind::Source, 1000, 2000),
            30,
        );
        stats.add(
            "p",
            "s1",
            "st",
            segment(SegmentKind::Transcoded, 2000, 500),
            20,
        );
        stats.add("p", "s2", "st2", segment(SegmentKind::Source, 2000, 10), 40);
        let s1 = stats.take("s1").unwrap();
        assert_eq!(
            s1.source,
            Counts {
                segments: 2,
                duration_s: 3.0,
                bytes: 3000,
                last_rate: 2000.0
            }
        );
        assert_eq!(s1.transcoded.segments, 1);
        assert_eq!(s1.last_seen, 30);
        assert!(stats.take("s1").is_none(), "taken out");
        assert!(stats.take("s2").is_some());
    }

    #[test]
    fn a_failed_write_keeps_the_counts_for_the_next() {
        let stats = SessionStats::default();
        stats.add(
            "p",
            "s1",
            "st",
            segment(SegmentKind::Source, 2000, 1000),
            10,
        );
        let unwritten = std::mem::take(&mut *stats.pending());
        stats.add(
            "p",
            "s1",
            "st",
            segment(SegmentKind::Source, 2000, 3000),
            20,
        );
        stats.restore(unwritten);
        let s1 = stats.take("s1").unwrap();
        assert_eq!(s1.source.segments, 2);
        assert_eq!(s1.source.bytes, 4000);
        assert_eq!(s1.source.last_rate, 1500.0, "the later segment's rate");
        assert_eq!(s1.last_seen, 20);
    }
}
