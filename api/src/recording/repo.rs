//! Rows of recordings in progress (`recordings`, with their segments in the session's index,
//! `sessions::segments`): what a recording needs to be finished by any node, written as its
//! segments arrive.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use studio_media_core::hls::playlist::Variant;

use super::Recording;
use crate::db::{self, Database, Tx};
use crate::sessions::segments;

/// The recording's entry in its master playlist, as stored; bandwidths are measured when the
/// recording is packaged.
#[derive(Debug, Serialize, Deserialize)]
struct StoredVariant {
    resolution: Option<(u32, u32)>,
    codecs: Vec<String>,
    frame_rate: Option<f64>,
}

/// Begins the recording of session `session_id` (its first segment is indexed in the same
/// transaction).
pub(super) async fn begin(
    tx: &mut Tx,
    project_id: &str,
    session_id: &str,
    variant: &Variant,
    now: i64,
) -> Result<(), sqlx::Error> {
    let variant = StoredVariant {
        resolution: variant.resolution,
        codecs: variant.codecs.clone(),
        frame_rate: variant.frame_rate,
    };
    sqlx::query(
        "INSERT INTO recordings (session_id, project_id, variant, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(session_id)
    .bind(project_id)
    .bind(db::to_json(&variant))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The persisted recording of `session_id`: its variant and its segments in order.
pub(super) async fn load(
    db: &Database,
    session_id: &str,
) -> Result<Option<Recording>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT project_id, variant FROM recordings WHERE session_id = $1")
        .bind(session_id)
        .fetch_optional(db.reader())
        .await?
    else {
        return Ok(None);
    };
    let project_id: String = row.try_get("project_id")?;
    let stored: StoredVariant =
        db::get_json(&row, "variant")?.ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "variant".into(),
            source: "NULL variant".into(),
        })?;
    let segments = segments::all(db.reader(), &project_id, session_id).await?;
    let variant = Variant {
        uri: "source/index.m3u8".into(),
        bandwidth: 0,
        average_bandwidth: None,
        resolution: stored.resolution,
        codecs: stored.codecs,
        frame_rate: stored.frame_rate,
    };
    Ok(Some(Recording { segments, variant }))
}

/// Removes the recording of `session_id`: its asset is finished. The session's segment index
/// stays (clips are cut from it).
pub(super) async fn forget(tx: &mut Tx, session_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recordings WHERE session_id = $1")
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Recordings of sessions that ended, silent since `cutoff`, that have no `recording` task:
/// their node died between ending the session and spawning the task (or before it ended it).
pub(super) async fn without_task(
    db: &Database,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT r.project_id, r.session_id FROM recordings r JOIN sessions s ON s.id = r.session_id \
         WHERE s.ended_at IS NOT NULL AND s.last_seen < $1 \
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.project_id = r.project_id AND t.type = 'recording' AND t.unique_key = r.session_id) \
         LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|row| Ok((row.try_get("project_id")?, row.try_get("session_id")?)))
    .collect()
}

/// Sessions still open that saw no segment, and began, before `cutoff`: their stream's node
/// stopped feeding them. With their stream, to leave alone those live on this node.
pub(super) async fn silent_open_sessions(
    db: &Database,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT project_id, id, stream_id FROM sessions WHERE ended_at IS NULL AND last_seen < $1 AND created_at < $2 LIMIT $3",
    )
    .bind(cutoff)
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("project_id")?,
            row.try_get("id")?,
            row.try_get("stream_id")?,
        ))
    })
    .collect()
}

/// Ends session `session_id` if it is still open and silent since `cutoff`; true if it did.
pub(super) async fn end_silent_session(
    db: &Database,
    project_id: &str,
    session_id: &str,
    cutoff: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE sessions SET ended_at = $1, ingest_rate = 0 WHERE project_id = $2 AND id = $3 AND ended_at IS NULL AND last_seen < $4",
    )
    .bind(now)
    .bind(project_id)
    .bind(session_id)
    .bind(cutoff)
    .execute(db.writer())
    .await?;
    Ok(ended.rows_affected() == 1)
}

/// A recording asset that nothing will finish.
#[derive(Debug)]
pub(super) struct Orphaned {
    pub project_id: String,
    pub id: String,
    /// Why its task failed, when it did.
    pub task_error: Option<String>,
}

/// Recording assets still `waiting` or `processing`, unchanged since `cutoff`, that nothing
/// will finish: their task failed or was cancelled (and its node died before failing the
/// asset), or they have neither a task nor a recording to make one from (their node died
/// before recordings were kept as they arrive).
pub(super) async fn orphaned_assets(
    db: &Database,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<Orphaned>, sqlx::Error> {
    sqlx::query(
        "SELECT a.project_id, a.id, t.error_message FROM assets a \
         LEFT JOIN tasks t ON t.project_id = a.project_id AND t.type = 'recording' AND t.unique_key = a.id \
         WHERE a.phase IN ('waiting', 'processing') AND a.updated_at < $1 \
         AND a.source_type = 'recording' AND a.deleted = 0 \
         AND ((t.id IS NULL AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.session_id = a.id)) \
              OR t.phase IN ('failed', 'cancelled')) \
         LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|row| {
        Ok(Orphaned {
            project_id: row.try_get("project_id")?,
            id: row.try_get("id")?,
            task_error: row.try_get("error_message")?,
        })
    })
    .collect()
}

/// Where the asset of a recording stands, deleted ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AssetState {
    Missing,
    Unfinished,
    Finished,
    Deleted,
}

pub(super) async fn asset_state(
    db: &Database,
    project_id: &str,
    id: &str,
) -> Result<AssetState, sqlx::Error> {
    let row = sqlx::query("SELECT phase, deleted FROM assets WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    let Some(row) = row else {
        return Ok(AssetState::Missing);
    };
    if db::get_bool(&row, "deleted")? {
        return Ok(AssetState::Deleted);
    }
    let phase: String = row.try_get("phase")?;
    Ok(match phase.as_str() {
        "waiting" | "processing" => AssetState::Unfinished,
        _ => AssetState::Finished,
    })
}

/// Forgets the recording of `session_id` outside any other change (its asset was finished or
/// deleted meanwhile).
pub(super) async fn discard(db: &Database, session_id: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    forget(&mut tx, session_id).await?;
    tx.commit().await
}
