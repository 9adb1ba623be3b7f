//! Asset rows. Reads for the API take the project; the only reads without one serve public
//! playback, which addresses content by playback id (or a recording by its session id).

use sqlx::any::AnyRow;
use sqlx::{Acquire, Any, Executor, Row};

use super::{Asset, AssetFile, AssetPhase, AssetSource, AssetStatus, VideoSpec};
use crate::db::{self, Database, Tx};
use crate::error::ApiResult;
use crate::http::list::{FieldKind, ListRequest, ListSpec, PageInfo, Sql, field};
use crate::ids;

const COLUMNS: &str = "id, project_id, user_id, name, playback_id, source, creator_id, playback_policy, \
    created_by_token_name, created_at, updated_at, phase, progress, error_message, size, video_spec, files, \
    hash, profiles, static_mp4";

/// Studio's filter and order whitelist for assets (the fields this server stores).
pub const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("createdAt", "created_at", FieldKind::Number),
        field("updatedAt", "updated_at", FieldKind::Number),
        field("userId", "user_id", FieldKind::Text),
        field("playbackId", "playback_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
        field("phase", "phase", FieldKind::Text),
        field("sourceUrl", "source_url", FieldKind::Text),
        field("sourceSessionId", "source_session_id", FieldKind::Text),
        field("sourceType", "source_type", FieldKind::Text),
    ],
    default_order: &[("updated_at", true), ("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<Asset, sqlx::Error> {
    let phase: String = row.try_get("phase")?;
    let phase = AssetPhase::parse(&phase).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "phase".into(),
        source: format!("unknown phase {phase:?}").into(),
    })?;
    let source: Option<AssetSource> = db::get_json(row, "source")?;
    Ok(Asset {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        playback_id: row.try_get("playback_id")?,
        playback_url: None,
        download_url: None,
        playback_policy: db::get_json(row, "playback_policy")?,
        source: source.ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "source".into(),
            source: "NULL source".into(),
        })?,
        creator_id: db::get_json(row, "creator_id")?,
        created_at: row.try_get("created_at")?,
        created_by_token_name: row.try_get("created_by_token_name")?,
        status: AssetStatus {
            phase,
            updated_at: row.try_get("updated_at")?,
            progress: row.try_get("progress")?,
            error_message: row.try_get("error_message")?,
        },
        size: row.try_get("size")?,
        video_spec: db::get_json(row, "video_spec")?,
        hash: db::get_json(row, "hash")?,
        profiles: db::get_json(row, "profiles")?,
        static_mp4: db::get_bool(row, "static_mp4")?,
        files: db::get_json(row, "files")?.unwrap_or_default(),
    })
}

/// Inserts `asset` with a fresh playback id (drawn here, registered across every playable
/// resource, redrawn on a collision).
pub async fn insert(tx: &mut Tx, asset: &mut Asset) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        asset.playback_id = ids::new_playback_id(&asset.id);
        let mut savepoint = tx.begin().await?;
        match insert_row(&mut savepoint, asset).await {
            Ok(()) => return savepoint.commit().await,
            Err(err) if db::is_unique_violation(&err) && attempt < 5 => {
                savepoint.rollback().await?;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn insert_row(conn: &mut sqlx::AnyConnection, a: &Asset) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO playback_ids (playback_id, resource_type, resource_id) VALUES ($1, 'asset', $2)")
        .bind(&a.playback_id)
        .bind(&a.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO assets (id, project_id, user_id, name, playback_id, source, source_type, source_session_id, source_url, \
         creator_id, playback_policy, created_by_token_name, created_at, updated_at, phase, progress, error_message, size, \
         video_spec, files, hash, profiles, static_mp4) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
    )
    .bind(&a.id)
    .bind(&a.project_id)
    .bind(&a.user_id)
    .bind(&a.name)
    .bind(&a.playback_id)
    .bind(db::to_json(&a.source))
    .bind(a.source.kind())
    .bind(a.source.session_id())
    .bind(a.source.url())
    .bind(db::to_opt_json(&a.creator_id))
    .bind(db::to_opt_json(&a.playback_policy))
    .bind(&a.created_by_token_name)
    .bind(a.created_at)
    .bind(a.status.updated_at)
    .bind(a.status.phase.as_str())
    .bind(a.status.progress)
    .bind(&a.status.error_message)
    .bind(a.size)
    .bind(db::to_opt_json(&a.video_spec))
    .bind(db::to_json(&a.files))
    .bind(db::to_opt_json(&a.hash))
    .bind(db::to_opt_json(&a.profiles))
    .bind(a.static_mp4 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The asset `id` of `project_id`, unless deleted.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Asset>> {
    let sql =
        format!("SELECT {COLUMNS} FROM assets WHERE project_id = $1 AND id = $2 AND deleted = 0");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Shortcut filters of `GET /asset` (beside `filters`).
#[derive(Debug, Default)]
pub struct Shortcuts<'a> {
    pub playback_id: Option<&'a str>,
    pub source_url: Option<&'a str>,
    pub phase: Option<&'a str>,
}

/// A page of the project's assets.
pub async fn list(
    db: &Database,
    project_id: &str,
    shortcuts: &Shortcuts<'_>,
    req: &ListRequest,
) -> ApiResult<(Vec<Asset>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(project_id);
    scope.push(" AND deleted = 0");
    for (column, value) in [
        ("playback_id", shortcuts.playback_id),
        ("source_url", shortcuts.source_url),
        ("phase", shortcuts.phase),
    ] {
        if let Some(value) = value {
            scope.push(&format!(" AND {column} = ")).bind(value);
        }
    }
    let (rows, page) = req.fetch(db, COLUMNS, "assets", scope).await?;
    Ok((
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?,
        page,
    ))
}

/// The recording assets of the project's sessions `session_ids` (a recording's id is its
/// session's), deleted ones included: a session reports them as `deleted`.
pub async fn recordings_of(
    db: &Database,
    project_id: &str,
    session_ids: &[&str],
) -> ApiResult<Vec<(Asset, bool)>> {
    if session_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS}, deleted FROM assets WHERE project_id = "
    ));
    sql.bind(project_id);
    sql.push(" AND source_type = 'recording' AND id IN (");
    for (i, id) in session_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(*id);
    }
    sql.push(")");
    let rows = sql.query().fetch_all(db.reader()).await?;
    Ok(rows
        .iter()
        .map(|row| Ok((from_row(row)?, db::get_bool(row, "deleted")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// Public playback reaches only assets of projects that still exist: a deleted project's
/// content is gone with it.
const OF_A_LIVE_PROJECT: &str = "project_id IN (SELECT id FROM projects WHERE deleted = 0)";

/// The asset with `playback_id`, in any project (playback is addressed by playback id alone).
pub async fn find_by_playback_id(db: &Database, playback_id: &str) -> ApiResult<Option<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM assets WHERE playback_id = $1 AND deleted = 0 AND {OF_A_LIVE_PROJECT}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(playback_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The recording of session `session_id`, in any project (public playback by session id).
pub async fn find_recording(db: &Database, session_id: &str) -> ApiResult<Option<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM assets WHERE id = $1 AND source_type = 'recording' AND deleted = 0 \
         AND {OF_A_LIVE_PROJECT}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(session_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Moves the asset to `phase` (with its progress and error message).
pub async fn set_phase(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    phase: AssetPhase,
    progress: Option<f64>,
    error_message: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE assets SET phase = $1, progress = $2, error_message = $3, updated_at = $4 WHERE project_id = $5 AND id = $6")
        .bind(phase.as_str())
        .bind(progress)
        .bind(error_message)
        .bind(now)
        .bind(project_id)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the finished media of the asset and makes it ready.
pub async fn set_ready(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    size: i64,
    video_spec: &VideoSpec,
    files: &[AssetFile],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assets SET phase = 'ready', progress = NULL, error_message = NULL, size = $1, video_spec = $2, files = $3, \
         updated_at = $4 WHERE project_id = $5 AND id = $6 AND deleted = 0",
    )
    .bind(size)
    .bind(db::to_json(video_spec))
    .bind(db::to_json(&files))
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The source of an asset still `uploading` arrived: it moves to `waiting`, with the source's
/// digests when known. False when it was no longer `uploading` (another upload got there first).
pub async fn source_arrived(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    hash: Option<&[super::Hash]>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE assets SET phase = 'waiting', hash = COALESCE($1, hash), updated_at = $2 \
         WHERE project_id = $3 AND id = $4 AND phase = 'uploading' AND deleted = 0",
    )
    .bind(hash.map(|h| db::to_json(&h)))
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records how far processing got (`processing`, `progress` from 0 to 1); never moves an asset
/// that is finished, deleted or further along.
pub async fn set_progress(
    db: &Database,
    project_id: &str,
    id: &str,
    progress: f64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assets SET phase = 'processing', progress = $1, updated_at = $2 \
         WHERE project_id = $3 AND id = $4 AND phase IN ('waiting', 'processing') AND deleted = 0 \
         AND (progress IS NULL OR progress <= $5)",
    )
    .bind(progress)
    .bind(now)
    .bind(project_id)
    .bind(id)
    .bind(progress)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Records the source's digests (of an imported file, known once downloaded).
pub async fn set_hash(
    db: &Database,
    project_id: &str,
    id: &str,
    hash: &[super::Hash],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE assets SET hash = $1 WHERE project_id = $2 AND id = $3")
        .bind(db::to_json(&hash))
        .bind(project_id)
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// An asset of the project imported from `url` that is still waiting or processing and was
/// created after `since`: importing the same URL again within that time answers it.
pub async fn recent_import(
    db: &Database,
    project_id: &str,
    url: &str,
    since: i64,
) -> ApiResult<Option<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM assets WHERE project_id = $1 AND source_url = $2 AND created_at >= $3 \
         AND phase IN ('waiting', 'processing') AND deleted = 0 ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(url)
        .bind(since)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The asset `id` of `project_id`, deleted or not.
pub async fn get_any<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> Result<Option<Asset>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM assets WHERE project_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks the asset deleted (`deleting` until its media is removed); false when it already was.
pub async fn mark_deleted(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE assets SET deleted = 1, deleted_at = $1, phase = 'deleting', updated_at = $2 \
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

/// A deleted asset whose media is gone.
pub async fn mark_purged(
    db: &Database,
    project_id: &str,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assets SET phase = 'deleted', updated_at = $1 WHERE project_id = $2 AND id = $3 AND deleted = 1",
    )
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// What `PATCH /asset/{id}` may change.
#[derive(Default)]
pub struct AssetChanges<'a> {
    pub name: Option<&'a str>,
    pub creator_id: Option<Option<&'a super::CreatorId>>,
    pub playback_policy: Option<Option<&'a crate::streams::model::PlaybackPolicy>>,
}

/// Applies `changes` to the asset.
pub async fn update(
    tx: &mut Tx,
    project_id: &str,
    id: &str,
    changes: &AssetChanges<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut sql = Sql::new("UPDATE assets SET updated_at = ");
    sql.bind(now);
    if let Some(name) = changes.name {
        sql.push(", name = ").bind(name);
    }
    if let Some(creator) = changes.creator_id {
        sql.push(", creator_id = ").bind(creator.map(db::to_json));
    }
    if let Some(policy) = changes.playback_policy {
        sql.push(", playback_policy = ")
            .bind(policy.map(db::to_json));
    }
    sql.push(" WHERE project_id = ")
        .bind(project_id)
        .push(" AND id = ")
        .bind(id)
        .push(" AND deleted = 0");
    sql.query().execute(&mut **tx).await?;
    Ok(())
}

/// What clips are listed of.
#[derive(Debug, Clone, Copy)]
pub enum ClipsOf<'a> {
    /// Every session of the stream with this id.
    Stream(&'a str),
    /// The session with this id.
    Session(&'a str),
}

/// The clips of a stream or session in the project, newest first (at most `limit`).
pub async fn clips(
    db: &Database,
    project_id: &str,
    of: ClipsOf<'_>,
    limit: i64,
) -> Result<Vec<Asset>, sqlx::Error> {
    // The stream's sessions are its clips' sessions (a clip names the session it was cut from).
    let (filter, id) = match of {
        ClipsOf::Stream(id) => (
            "source_session_id IN (SELECT id FROM sessions WHERE project_id = $1 AND stream_id = $2)",
            id,
        ),
        ClipsOf::Session(id) => ("source_session_id = $2", id),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM assets WHERE project_id = $1 AND deleted = 0 AND source_type = 'clip' \
         AND {filter} ORDER BY created_at DESC, id LIMIT $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .bind(limit)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(from_row)
        .collect()
}
