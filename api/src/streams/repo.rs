//! Stream rows. Every function takes the project: there is no way to read a stream without it.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::model::{Multistream, Stream};
use crate::db::{self, Database, Tx};
use crate::error::ApiResult;
use crate::http::list::{FieldKind, ListRequest, ListSpec, PageInfo, Sql, field};

const COLUMNS: &str = "id, project_id, user_id, name, stream_key, playback_id, parent_id, created_at, last_seen, \
    last_terminated_at, is_active, is_healthy, issues, suspended, record, creator_id, user_tags, playback_policy, \
    profiles, recording_spec, multistream, created_by_token_name, source_segments, transcoded_segments, \
    source_segments_duration, transcoded_segments_duration, source_bytes, transcoded_bytes, ingest_rate, outgoing_rate";

/// Studio's filter and order whitelist for streams.
pub const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("userId", "user_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
        field("playbackId", "playback_id", FieldKind::Text),
        field("parentId", "parent_id", FieldKind::Text),
        field("isActive", "is_active", FieldKind::Bool),
        field("record", "record", FieldKind::Bool),
        field("suspended", "suspended", FieldKind::Bool),
        field("isHealthy", "is_healthy", FieldKind::Bool),
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
    ],
    default_order: &[("last_seen", true), ("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<Stream, sqlx::Error> {
    Ok(Stream {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: "stream".into(),
        creator_id: db::get_json(row, "creator_id")?,
        user_tags: db::get_json(row, "user_tags")?,
        last_seen: row.try_get("last_seen")?,
        source_segments: row.try_get("source_segments")?,
        transcoded_segments: row.try_get("transcoded_segments")?,
        source_segments_duration: row.try_get("source_segments_duration")?,
        transcoded_segments_duration: row.try_get("transcoded_segments_duration")?,
        source_bytes: row.try_get("source_bytes")?,
        transcoded_bytes: row.try_get("transcoded_bytes")?,
        ingest_rate: row.try_get("ingest_rate")?,
        outgoing_rate: row.try_get("outgoing_rate")?,
        is_active: db::get_bool(row, "is_active")?,
        is_healthy: db::get_opt_bool(row, "is_healthy")?,
        issues: db::get_json(row, "issues")?,
        created_by_token_name: row.try_get("created_by_token_name")?,
        created_at: row.try_get("created_at")?,
        parent_id: row.try_get("parent_id")?,
        stream_key: Some(row.try_get("stream_key")?),
        playback_id: row.try_get("playback_id")?,
        playback_policy: db::get_json(row, "playback_policy")?,
        profiles: db::get_json(row, "profiles")?.unwrap_or_default(),
        project_id: row.try_get("project_id")?,
        record: db::get_bool(row, "record")?,
        recording_spec: db::get_json(row, "recording_spec")?,
        multistream: db::get_json(row, "multistream")?,
        suspended: db::get_bool(row, "suspended")?,
        last_terminated_at: row.try_get("last_terminated_at")?,
        user_id: row.try_get("user_id")?,
        renditions: serde_json::Map::new(),
    })
}

/// Inserts a new stream and registers its playback id. Fails with a unique violation when the
/// stream key or playback id is taken (the caller draws new ones).
pub async fn insert(conn: &mut sqlx::AnyConnection, s: &Stream) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO playback_ids (playback_id, resource_type, resource_id) VALUES ($1, 'stream', $2)")
        .bind(&s.playback_id)
        .bind(&s.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO streams (id, project_id, user_id, name, stream_key, playback_id, created_at, updated_at, \
         record, creator_id, user_tags, playback_policy, profiles, recording_spec, multistream, created_by_token_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.user_id)
    .bind(&s.name)
    .bind(s.stream_key.as_deref().unwrap_or_default())
    .bind(&s.playback_id)
    .bind(s.created_at)
    .bind(s.created_at)
    .bind(s.record as i64)
    .bind(db::to_opt_json(&s.creator_id))
    .bind(db::to_opt_json(&s.user_tags))
    .bind(db::to_opt_json(&s.playback_policy))
    .bind(db::to_json(&s.profiles))
    .bind(db::to_opt_json(&s.recording_spec))
    .bind(db::to_opt_json(&s.multistream))
    .bind(&s.created_by_token_name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stream `id` of `project_id`, unless deleted.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Stream>> {
    let sql =
        format!("SELECT {COLUMNS} FROM streams WHERE project_id = $1 AND id = $2 AND deleted = 0");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The stream of `project_id` with `playback_id`, unless deleted.
pub async fn get_by_playback_id<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    playback_id: &str,
) -> ApiResult<Option<Stream>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM streams WHERE project_id = $1 AND playback_id = $2 AND deleted = 0"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(playback_id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Like [`get`], inside a transaction, locking the row on PostgreSQL until the transaction ends.
pub async fn get_for_update(
    db: &Database,
    tx: &mut Tx,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Stream>> {
    let lock = if db.backend() == db::Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM streams WHERE project_id = $1 AND id = $2 AND deleted = 0{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A page of the project's streams, and the total when asked.
pub async fn list(
    db: &Database,
    project_id: &str,
    req: &ListRequest,
    active_only: bool,
) -> ApiResult<(Vec<Stream>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(project_id).push(" AND deleted = 0");
    if active_only {
        scope.push(" AND is_active = 1");
    }
    let (rows, page) = req.fetch(db, COLUMNS, "streams", scope).await?;
    let streams = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok((streams, page))
}

/// Writes the fields a PATCH may change.
pub async fn save_settings(tx: &mut Tx, s: &Stream, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE streams SET name = $1, record = $2, suspended = $3, creator_id = $4, user_tags = $5, \
         playback_policy = $6, profiles = $7, recording_spec = $8, multistream = $9, updated_at = $10 \
         WHERE project_id = $11 AND id = $12",
    )
    .bind(&s.name)
    .bind(s.record as i64)
    .bind(s.suspended as i64)
    .bind(db::to_opt_json(&s.creator_id))
    .bind(db::to_opt_json(&s.user_tags))
    .bind(db::to_opt_json(&s.playback_policy))
    .bind(db::to_json(&s.profiles))
    .bind(db::to_opt_json(&s.recording_spec))
    .bind(db::to_opt_json(&s.multistream))
    .bind(now)
    .bind(&s.project_id)
    .bind(&s.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the multistream references only.
pub async fn save_multistream(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    multistream: &Option<Multistream>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE streams SET multistream = $1, updated_at = $2 WHERE project_id = $3 AND id = $4",
    )
    .bind(db::to_opt_json(multistream))
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Soft-deletes a stream: it disappears from the API, its key and playback id stay reserved.
pub async fn soft_delete(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE streams SET deleted = 1, deleted_at = $1, is_active = 0, updated_at = $2 \
         WHERE project_id = $3 AND id = $4 AND deleted = 0",
    )
    .bind(now)
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a termination; returns false when the stream terminated less than `min_gap_ms` ago.
pub async fn mark_terminated(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    now: i64,
    min_gap_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE streams SET last_terminated_at = $1, is_active = 0, updated_at = $2 \
         WHERE project_id = $3 AND id = $4 AND deleted = 0 \
         AND (last_terminated_at IS NULL OR last_terminated_at <= $5)",
    )
    .bind(now)
    .bind(now)
    .bind(project_id)
    .bind(id)
    .bind(now - min_gap_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets `isActive` (and `lastSeen`), returning whether the value changed.
pub async fn set_active(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    active: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE streams SET is_active = $1, last_seen = $2, updated_at = $3 \
         WHERE project_id = $4 AND id = $5 AND deleted = 0 AND is_active <> $6",
    )
    .bind(active as i64)
    .bind(now)
    .bind(now)
    .bind(project_id)
    .bind(id)
    .bind(active as i64)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The live stream with `playback_id`, in any project (playback is addressed by playback id alone).
pub async fn find_by_playback_id(db: &Database, playback_id: &str) -> ApiResult<Option<Stream>> {
    // A deleted project's streams are gone with it.
    let sql = format!(
        "SELECT {COLUMNS} FROM streams WHERE playback_id = $1 AND deleted = 0 \
         AND project_id IN (SELECT id FROM projects WHERE deleted = 0)"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(playback_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Streams of the project that reference multistream target `target_id`.
pub async fn referencing_target(
    tx: &mut Tx,
    project_id: &str,
    target_id: &str,
) -> ApiResult<Vec<Stream>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM streams WHERE project_id = $1 AND deleted = 0 AND multistream LIKE $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(format!("%{target_id}%"))
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?)
}
