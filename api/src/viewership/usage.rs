//! Usage: minutes transcoded and stored, for `/data/usage/query` (delivered minutes come from the
//! view rollups).

use sqlx::Row;

use crate::db::Database;

/// Assets read at most for one answer (their durations are summed here, not in SQL).
const MAX_ASSETS: i64 = 200_000;

/// (transcoded minutes between `from` and `to`, stored minutes at `to`) of the project:
/// transcoded are live sessions' renditions and assets processed in the range; stored are the
/// durations of the assets ready and not deleted at `to`. `creator_id` does not narrow these.
pub async fn transcoded_and_stored(
    db: &Database,
    project_id: &str,
    _creator_id: Option<&str>,
    from: i64,
    to: i64,
) -> Result<(f64, f64), sqlx::Error> {
    let live = sqlx::query(
        "SELECT COALESCE(SUM(transcoded_segments_duration), 0.0) AS seconds FROM sessions \
         WHERE project_id = $1 AND created_at >= $2 AND created_at < $3",
    )
    .bind(project_id)
    .bind(from)
    .bind(to)
    .fetch_one(db.reader())
    .await?
    .try_get::<f64, _>("seconds")?;
    let assets = sqlx::query(
        "SELECT created_at, video_spec FROM assets WHERE project_id = $1 AND phase = 'ready' \
         AND created_at < $2 AND (deleted = 0 OR deleted_at >= $2) ORDER BY created_at DESC LIMIT $3",
    )
    .bind(project_id)
    .bind(to)
    .bind(MAX_ASSETS)
    .fetch_all(db.reader())
    .await?;
    let (mut processed, mut stored) = (0.0, 0.0);
    for row in &assets {
        let duration = row
            .try_get::<Option<String>, _>("video_spec")?
            .and_then(|spec| serde_json::from_str::<crate::assets::VideoSpec>(&spec).ok())
            .map(|spec| spec.duration)
            .unwrap_or(0.0);
        stored += duration;
        if row.try_get::<i64, _>("created_at")? >= from {
            processed += duration;
        }
    }
    Ok(((live + processed) / 60.0, stored / 60.0))
}
