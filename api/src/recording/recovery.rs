//! Finishes what a node that died left behind, so that no session or recording stays unfinished:
//! sessions left open are ended, recordings are made into their assets (or their interrupted
//! processing is run again), and recording assets that can no longer be made fail with a
//! message.
//!
//! Every node runs this at start-up and then every few seconds (from the sweeper). On
//! PostgreSQL several nodes share the work, and a node must not take what a live node is doing:
//! work is taken only once its node has shown no sign of life for `stream_idle_after_secs` (a
//! live session gets a segment at least every 30 s; a node processing a recording renews its
//! hold on it), and taking it is one conditional update that only one node can win.

use crate::app::AppState;
use crate::assets;
use crate::clock::now_ms;

use super::repo::{self, AssetState, Claim, Unfinished};
use super::{create_asset, finish_failed, lease_ms, process};

/// Rows handled per kind of work and pass.
const BATCH: i64 = 100;
/// A recording whose processing was interrupted this many times is failed rather than taken
/// again: processing it may be what stops its node.
const MAX_ATTEMPTS: i64 = 3;

/// One pass over the work dead nodes left.
pub async fn run(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let cutoff = now - lease_ms(state);
    end_silent_sessions(state, cutoff, now).await?;
    finish_recordings(state, cutoff, now).await?;
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

/// Recordings of ended sessions that nobody is making into assets.
async fn finish_recordings(state: &AppState, cutoff: i64, now: i64) -> anyhow::Result<()> {
    for unfinished in repo::unfinished(state.db(), cutoff, now, BATCH).await? {
        let taken = repo::claim(
            state.db(),
            &unfinished.session_id,
            Claim::TakeOver,
            now,
            now + lease_ms(state),
        )
        .await?;
        if !taken {
            continue;
        }
        let session = unfinished.session_id.clone();
        if let Err(err) = finish(state, unfinished).await {
            tracing::error!(error = format!("{err:#}"), session = %session, "finishing an abandoned recording failed; it is retried later");
        }
    }
    Ok(())
}

/// Makes the asset of a recording this node just took, or processes it again.
async fn finish(state: &AppState, recording: Unfinished) -> anyhow::Result<()> {
    let Unfinished {
        project_id,
        session_id,
    } = recording;
    let attempts = match repo::load(state.db(), &session_id).await? {
        Some((_, attempts)) => attempts,
        None => return Ok(()),
    };
    let asset = match repo::asset_state(state.db(), &project_id, &session_id).await? {
        AssetState::Finished | AssetState::Deleted => {
            repo::discard(state.db(), &session_id).await?;
            return Ok(());
        }
        AssetState::Missing => {
            tracing::info!(session = %session_id, "making the recording of a session its node left unfinished");
            create_asset(state, &project_id, &session_id).await?
        }
        AssetState::Unfinished => {
            tracing::info!(session = %session_id, "processing again a recording its node left unfinished");
            assets::repo::get(state.db().reader(), &project_id, &session_id).await?
        }
    };
    let Some(asset) = asset else {
        return Ok(());
    };
    if attempts > MAX_ATTEMPTS {
        let message = format!(
            "processing the recording was interrupted {MAX_ATTEMPTS} times (its server stopped each time); it is not tried again"
        );
        return finish_failed(state, &asset, &message).await;
    }
    // Shutdown waits for it, like every recording being processed.
    state.tasks().spawn(process(state.clone(), asset));
    Ok(())
}

/// Recording assets left `waiting` or `processing` with nothing kept to make them from (their
/// node died before recordings were kept as they arrive): failed, with the reason.
async fn fail_orphaned_assets(state: &AppState, cutoff: i64) -> anyhow::Result<()> {
    for (project_id, id) in repo::orphaned_assets(state.db(), cutoff, BATCH).await? {
        let Some(asset) = assets::repo::get(state.db().reader(), &project_id, &id).await? else {
            continue;
        };
        tracing::warn!(asset = %id, "failing a recording asset whose processing stopped with its server");
        finish_failed(
            state,
            &asset,
            "processing stopped with the server, and the segments of the recording were not kept",
        )
        .await?;
    }
    Ok(())
}
