//! Session rows, always read within a project.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::Session;
use super::stats::Counts;
use crate::db::{self, Database, Tx};
use crate::error::ApiResult;
use crate::http::list::{FieldKind, ListRequest, ListSpec, PageInfo, Sql, field};
use crate::streams::model::Stream;

const COLUMNS: &str = "id, project_id, user_id, stream_id, name, playback_id, created_at, last_seen, record, profiles, \
    recording_spec, source_segments, transcoded_segments, source_segments_duration, transcoded_segments_duration, \
    source_bytes, transcoded_bytes, ingest_rate, outgoing_rate";

/// Studio's filter and order whitelist for sessions.
pub const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("parentId", "stream_id", FieldKind::Text),
        field("userId", "user_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
        field("record", "record", FieldKind::Bool),
        field("lastSeen", "last_seen", FieldKind::Number),
        field("createdAt", "created_at", FieldKind::Number),
        field("sourceSegments", "source_segments", FieldKind::Number),
        field(
            "transcodedSegments",
            "transcoded_segments",
            FieldKind::Number,
        ),
        field(
            "sourceSegmentsDuration",
            "source_segments_duration",
            FieldKind::Number,
        ),
        field(
            "transcodedSegmentsDuration",
            "transcoded_segments_duration",
            FieldKind::Number,
        ),
        field("sourceBytes", "source_bytes", FieldKind::Number),
        field("transcodedBytes", "transcoded_bytes", FieldKind::Number),
        field("ingestRate", "ingest_rate", FieldKind::Number),
        field("outgoingRate", "outgoing_rate", FieldKind::Number),
    ],
    default_order: &[("last_seen", true), ("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: row.try_get("id")?,
        kind: "session".into(),
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        parent_id: row.try_get("stream_id")?,
        name: row.try_get("name")?,
        playback_id: row.try_get("playback_id")?,
        created_at: row.try_get("created_at")?,
        last_seen: row.try_get("last_seen")?,
        source_segments: row.try_get("source_segments")?,
        transcoded_segments: row.try_get("transcoded_segments")?,
        source_segments_duration: row.try_get("source_segments_duration")?,
        transcoded_segments_duration: row.try_get("transcoded_segments_duration")?,
        source_bytes: row.try_get("source_bytes")?,
        transcoded_bytes: row.try_get("transcoded_bytes")?,
        ingest_rate: row.try_get("ingest_rate")?,
        outgoing_rate: row.try_get("outgoing_rate")?,
        is_healthy: None,
        issues: None,
        record: db::get_bool(row, "record")?,
        profiles: db::get_json(row, "profiles")?.unwrap_or_default(),
        recording_spec: db::get_json(row, "recording_spec")?,
        recording_status: None,
        recording_url: None,
        mp4_url: None,
    })
}

/// Opens a session of `stream`, copying the settings it publishes with.
pub async fn insert(tx: &mut Tx, id: &str, stream: &Stream, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, project_id, user_id, stream_id, name, playback_id, created_at, record, profiles, recording_spec) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(&stream.project_id)
    .bind(&stream.user_id)
    .bind(&stream.id)
    .bind(&stream.name)
    .bind(&stream.playback_id)
    .bind(now)
    .bind(stream.record as i64)
    .bind(db::to_json(&stream.profiles))
    .bind(db::to_opt_json(&stream.recording_spec))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which counters a segment adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// A segment as the encoder sent it: `sourceSegments`, `sourceSegmentsDuration`,
    /// `sourceBytes`, `ingestRate`.
    Source,
    /// A source segment once transcoded, all its renditions together: `transcodedSegments`,
    /// `transcodedSegmentsDuration`, `transcodedBytes`, `outgoingRate`.
    Transcoded,
}

/// One segment, as the statistics count it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentStats {
    pub kind: SegmentKind,
    pub duration_s: f64,
    pub bytes: i64,
}

impl SegmentStats {
    pub fn new(kind: SegmentKind, duration_ms: i64, bytes: u64) -> SegmentStats {
        SegmentStats {
            kind,
            duration_s: duration_ms.max(0) as f64 / 1000.0,
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        }
    }
}

/// Adds counted segments of one kind to the statistics of a session and of its stream, and
/// moves their `lastSeen` forward (never back: batches may be written out of order).
pub async fn add_counts(
    tx: &mut Tx,
    project_id: &str,
    session_id: &str,
    stream_id: &str,
    kind: SegmentKind,
    counts: &Counts,
    last_seen: i64,
) -> Result<(), sqlx::Error> {
    if counts.segments == 0 {
        return Ok(());
    }
    let set = match kind {
        SegmentKind::Source => {
            "source_segments = source_segments + $1, source_segments_duration = source_segments_duration + $2, \
             source_bytes = source_bytes + $3, ingest_rate = $4"
        }
        SegmentKind::Transcoded => {
            "transcoded_segments = transcoded_segments + $1, transcoded_segments_duration = transcoded_segments_duration + $2, \
             transcoded_bytes = transcoded_bytes + $3, outgoing_rate = $4"
        }
    };
    for (table, id) in [("sessions", session_id), ("streams", stream_id)] {
        let sql = format!(
            "UPDATE {table} SET {set}, last_seen = CASE WHEN last_seen < $5 THEN $5 ELSE last_seen END \
             WHERE project_id = $6 AND id = $7"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(counts.segments)
            .bind(counts.duration_s)
            .bind(counts.bytes)
            .bind(counts.last_rate)
            .bind(last_seen)
            .bind(project_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Marks the session over.
pub async fn end(
    tx: &mut Tx,
    project_id: &str,
    session_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET ended_at = $1, ingest_rate = 0 WHERE project_id = $2 AND id = $3",
    )
    .bind(now)
    .bind(project_id)
    .bind(session_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE streams SET ingest_rate = 0 WHERE project_id = $1 AND id = (SELECT stream_id FROM sessions WHERE project_id = $2 AND id = $3)")
        .bind(project_id)
        .bind(project_id)
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn get(db: &Database, project_id: &str, id: &str) -> ApiResult<Option<Session>> {
    get_in(db.reader(), project_id, id).await
}

/// Like [`get`], on any executor (e.g. inside a transaction).
pub async fn get_in<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Session>> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE project_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A page of the project's sessions, of one stream when `stream_id` is given; `with_media_only`
/// keeps sessions that delivered at least one segment (Studio's rule for a stream's sessions).
pub async fn list(
    db: &Database,
    project_id: &str,
    stream_id: Option<&str>,
    with_media_only: bool,
    req: &ListRequest,
) -> ApiResult<(Vec<Session>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(project_id);
    if let Some(stream_id) = stream_id {
        scope.push(" AND stream_id = ").bind(stream_id);
    }
    if with_media_only {
        scope.push(" AND last_seen > 0 AND source_segments_duration > 0");
    }
    let (rows, page) = req.fetch(db, COLUMNS, "sessions", scope).await?;
    Ok((
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?,
        page,
    ))
}
