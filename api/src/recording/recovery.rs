//! Finishes what a node that died left behind, so that no session or recording stays unfinished:
//! sessions left open are ended, recorded sessions whose `recording` task was never spawned get
//! it (with their asset), and recording assets that nothing will finish fail with a message.
//! Recording tasks a dead node was running need nothing here: the job system takes them over
//! once their lease expires.
//!
//! Every node runs this at start-up and then every few seconds (from the sweeper). On
//! PostgreSQL several nodes share the work, and a node must not take what a live node is doing:
//! a session is taken only once it has shown no sign of life for `stream_idle_after_secs` (a
//! live session gets a segment at least every 30 s), ending it is one conditional update that
//! only one node can win, and spawning a task twice yields the same task.

use crate::app::AppState;
use crate::assets;
use crate::clock::now_ms;

use super::repo;

/// Rows handled per kind of work and pass.
const BATCH: i64 = 100;

/// One pass over the work dead nodes left.
pub async fn run(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let cutoff = now - (state.config().stream_idle_after_secs.max(1) * 1000) as i64;
    end_silent_sessions(state, cutoff, now).await?;
    spawn_missing_tasks(state, cutoff).await?;
    fail_orphaned_assets(state, cutoff).await?;
    Ok(())
}

/// Sessions still open that received nothing for the whole bound and whose stream has no
/// publisher on this node: their node died before it could end them.
async fn end_silent_sessions(state: &AppState, cutoff: i64, now: i64) -> anyhow::Result<()> {
    for (project_id, session_id, stream_id) in
        repo::silent_open_sessions(state.db(), cutoff, BATCH).await?
    {
        if state.live().is_live(&stream_id) {
            continue;
        }
        if repo::end_silent_session(state.db(), &project_id, &session_id, cutoff, now).await? {
            tracing::info!(session = %session_id, stream = %stream_id, "ended a session its ingest node left open");
        }
    }
    Ok(())
}

/// Recordings of ended sessions without their task: the asset and the task are made here, and
/// the claim loop of some node runs it.
async fn spawn_missing_tasks(state: &AppState, cutoff: i64) -> anyhow::Result<()> {
    let mut spawned = false;
    for (project_id, session_id) in repo::without_task(state.db(), cutoff, BATCH).await? {
        tracing::info!(session = %session_id, "making the recording of a session its node left unfinished");
        spawned |= state
            .recordings()
            .spawn(&project_id, &session_id)
            .await?
            .is_some();
    }
    if spawned {
        state.wake_tasks();
    }
    Ok(())
}

/// Recording assets left `waiting` or `processing` that nothing will finish: failed, with the
/// reason.
async fn fail_orphaned_assets(state: &AppState, cutoff: i64) -> anyhow::Result<()> {
    for orphan in repo::orphaned_assets(state.db(), cutoff, BATCH).await? {
        let Some(asset) =
            assets::repo::get(state.db().reader(), &orphan.project_id, &orphan.id).await?
        else {
            continue;
        };
        let message = match &orphan.task_error {
            Some(error) => error.as_str(),
            None => {
                "processing stopped with the server, and the segments of the recording were not kept"
            }
        };
        tracing::warn!(asset = %orphan.id, %message, "failing a recording asset that nothing will finish");
        state.recordings().finish_failed(&asset, message).await?;
    }
    Ok(())
}
