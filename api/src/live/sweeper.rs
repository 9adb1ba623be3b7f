//! Keeps `isActive` truthful when a node dies mid-stream: a stream marked live whose last segment
//! is older than `stream_idle_after_secs`, and that has no publisher on this node, is made idle
//! (with `stream.idle`) and its open session is closed. A live publisher refreshes `lastSeen`
//! with every segment, and the segmenter never lets a segment run past 30 s.
//!
//! Each pass also ends this node's publishes that the API ended on another node: the node that
//! answers a terminate, a suspend or a delete (of the stream or of its project) disconnects its
//! own publishers at once; the others learn it from the stream's row within a pass.
//!
//! Every few passes it also runs `recording::recovery`, which finishes the sessions and
//! recordings such a node left (the first pass comes right after start-up), and now and then
//! removes expired TUS uploads (`assets::tus::expire`).

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use crate::app::AppState;
use crate::clock::now_ms;
use crate::events::{self, EventType, NewEvent};
use crate::streams;

const EVERY: Duration = Duration::from_secs(1);
/// Streams handled per pass.
const BATCH: i64 = 100;
/// Passes between two runs of the recovery of abandoned sessions and recordings.
const RECOVER_EVERY: u64 = 5;
/// Passes between two removals of expired TUS uploads.
const EXPIRE_UPLOADS_EVERY: u64 = 60;

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    for pass in 0u64.. {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(err) = sweep(&state).await {
            tracing::error!(
                error = format!("{err:#}"),
                "sweeping abandoned live streams failed"
            );
        }
        if let Err(err) = end_publishes_ended_elsewhere(&state).await {
            tracing::error!(
                error = format!("{err:#}"),
                "checking this node's publishes against the database failed"
            );
        }
        if pass % RECOVER_EVERY == 0
            && let Err(err) = crate::recording::recovery::run(&state).await
        {
            tracing::error!(
                error = format!("{err:#}"),
                "finishing sessions and recordings of stopped nodes failed"
            );
        }
        if pass % EXPIRE_UPLOADS_EVERY == 0
            && let Err(err) = crate::assets::tus::expire(&state).await
        {
            tracing::error!(
                error = format!("{err:#}"),
                "removing expired TUS uploads failed"
            );
        }
    }
}

/// Disconnects the local publishers whose stream was terminated after they began, suspended or
/// deleted, or whose project was deleted, through any node.
async fn end_publishes_ended_elsewhere(state: &AppState) -> anyhow::Result<()> {
    let publishers = state.live().publishers();
    for chunk in publishers.chunks(BATCH as usize) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Internal bookkeeping by stream id across projects, like the stream key lookup of ingest.
        let sql = format!(
            "SELECT s.id, s.deleted, s.suspended, s.last_terminated_at, p.deleted AS project_deleted \
             FROM streams s JOIN projects p ON p.id = s.project_id WHERE s.id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (stream_id, _) in chunk {
            query = query.bind(stream_id);
        }
        for row in query.fetch_all(state.db().reader()).await? {
            let id: String = row.try_get("id")?;
            let started_at = chunk
                .iter()
                .find(|(stream, _)| *stream == id)
                .map_or(i64::MAX, |(_, started)| *started);
            let terminated_at: Option<i64> = row.try_get("last_terminated_at")?;
            let why = if row.try_get::<i64, _>("deleted")? != 0 {
                "deleted"
            } else if row.try_get::<i64, _>("project_deleted")? != 0 {
                "project deleted"
            } else if row.try_get::<i64, _>("suspended")? != 0 {
                "suspended"
            } else if terminated_at.is_some_and(|at| at >= started_at) {
                "terminated"
            } else {
                continue;
            };
            tracing::info!(stream = %id, why, "ending a publish the API ended on another node");
            state.live().disconnect(&id);
        }
    }
    Ok(())
}

async fn sweep(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let cutoff = now - (state.config().stream_idle_after_secs * 1000) as i64;
    let rows = sqlx::query("SELECT project_id, id FROM streams WHERE is_active = 1 AND deleted = 0 AND last_seen < $1 LIMIT $2")
        .bind(cutoff)
        .bind(BATCH)
        .fetch_all(state.db().reader())
        .await?;
    let mut woke = false;
    for row in rows {
        let (project_id, id): (String, String) = (row.try_get("project_id")?, row.try_get("id")?);
        if state.live().is_live(&id) {
            continue;
        }
        let mut tx = state.db().begin().await?;
        // Re-checked in the update: a segment may have arrived since the scan.
        let made_idle = sqlx::query(
            "UPDATE streams SET is_active = 0, updated_at = $1 WHERE project_id = $2 AND id = $3 AND is_active = 1 AND last_seen < $4",
        )
        .bind(now)
        .bind(&project_id)
        .bind(&id)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if made_idle {
            sqlx::query("UPDATE sessions SET ended_at = $1, ingest_rate = 0 WHERE project_id = $2 AND stream_id = $3 AND ended_at IS NULL")
                .bind(now)
                .bind(&project_id)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            if let Some(stream) = streams::repo::get(&mut *tx, &project_id, &id).await? {
                events::emit(
                    &mut tx,
                    NewEvent {
                        project_id: &project_id,
                        user_id: &stream.user_id,
                        event: EventType::StreamIdle,
                        stream: Some(&stream),
                        payload: None,
                    },
                    now,
                )
                .await?;
            }
            tracing::info!(stream = %id, "a live stream stopped sending without ending: marked idle");
            woke = true;
        }
        tx.commit().await?;
    }
    if woke {
        state.wake_webhooks();
    }
    Ok(())
}
