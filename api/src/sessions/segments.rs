//! The segment index of sessions (`session_segments`): every source segment a session stored,
//! recorded or not, in order, with the wall-clock time of its first frame. Recordings are made
//! from it, and clips are cut from it, of a live session or of a past one. One small insert per
//! segment, written by the node that ingests the session.

use sqlx::Row;

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::db::{self, Tx};

/// Segments indexed per session: a day of 2 s segments. Later segments are neither recorded nor
/// clipped.
pub const MAX_SEGMENTS: i64 = 43_200;

/// One stored source segment of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedSegment {
    /// Its object in the media store.
    pub key: String,
    /// Unix ms of its first frame; unknown for segments indexed by an older version.
    pub start_ms: Option<i64>,
    pub duration_s: f64,
    /// It does not continue the segment before it.
    pub discontinuity: bool,
}

/// Adds segment number `seq` of session `session_id`.
pub async fn add(
    tx: &mut Tx,
    project_id: &str,
    session_id: &str,
    seq: i64,
    segment: &IndexedSegment,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO session_segments (session_id, project_id, seq, object_key, start_ms, duration, discontinuity) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(session_id)
    .bind(project_id)
    .bind(seq)
    .bind(&segment.key)
    .bind(segment.start_ms)
    .bind(segment.duration_s)
    .bind(segment.discontinuity as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every segment of the session, in order.
pub async fn all(
    reader: &AnyPool,
    project_id: &str,
    session_id: &str,
) -> Result<Vec<IndexedSegment>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT object_key, start_ms, duration, discontinuity FROM session_segments \
         WHERE project_id = $1 AND session_id = $2 ORDER BY seq",
    )
    .bind(project_id)
    .bind(session_id)
    .fetch_all(reader)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The segments of the session that hold media between `from_ms` and `to_ms` (wall clock), in
/// order: the one being shown at `from_ms` first.
pub async fn between(
    reader: &AnyPool,
    project_id: &str,
    session_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<IndexedSegment>, sqlx::Error> {
    // A segment lasts at most a minute (the segmenter's bound): one starting a minute before
    // `from_ms` is the earliest that can reach it.
    let rows = sqlx::query(
        "SELECT object_key, start_ms, duration, discontinuity FROM session_segments \
         WHERE project_id = $1 AND session_id = $2 AND start_ms >= $3 AND start_ms < $4 ORDER BY seq",
    )
    .bind(project_id)
    .bind(session_id)
    .bind(from_ms - 60_000)
    .bind(to_ms)
    .fetch_all(reader)
    .await?;
    let segments = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(segments
        .into_iter()
        .filter(|s| {
            s.start_ms
                .is_some_and(|start| start + (s.duration_s * 1000.0).ceil() as i64 > from_ms)
        })
        .collect())
}

/// The wall-clock span the session's indexed segments cover, if any has a known time.
pub async fn span(
    reader: &AnyPool,
    project_id: &str,
    session_id: &str,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT MIN(start_ms) AS first, MAX(start_ms + CAST(duration * 1000 AS BIGINT)) AS last \
         FROM session_segments WHERE project_id = $1 AND session_id = $2 AND start_ms IS NOT NULL",
    )
    .bind(project_id)
    .bind(session_id)
    .fetch_one(reader)
    .await?;
    let first: Option<i64> = row.try_get("first")?;
    let last: Option<i64> = row.try_get("last")?;
    Ok(first.zip(last))
}

fn from_row(row: &AnyRow) -> Result<IndexedSegment, sqlx::Error> {
    Ok(IndexedSegment {
        key: row.try_get("object_key")?,
        start_ms: row.try_get("start_ms")?,
        duration_s: row.try_get("duration")?,
        discontinuity: db::get_bool(row, "discontinuity")?,
    })
}
