//! Recording: every session of a stream with `record: true` becomes an asset.
//!
//! The live pipeline reports each source segment it stored ([`segment_stored`]) and the end of
//! the session ([`session_ended`]). The first segment of a recorded session emits
//! `recording.started`. The end creates the recording asset (its id is the session's, phase
//! `waiting`, `recording.waiting`) together with an internal `recording` task, in one
//! transaction; the task ([`task`]) copies the segments under the asset's playback id with a VOD
//! playlist, remuxes them into one MP4, probes it, and turns the asset `ready`
//! (`recording.ready`), or `failed` with its error (`asset.failed`).
//!
//! What a recording needs is written to the database as its segments arrive (one small insert
//! per segment into the session's segment index, `sessions::segments`, which clips are cut from
//! too, recorded or not), and its processing is a task of the job system (leased, retried,
//! taken over when its node dies), so a node that dies loses no recording: [`recovery`] ends on
//! any node the sessions a dead node left open and spawns the tasks it did not get to spawn.
//!
//! Processing never runs on the ingest path and touches the database only to change the asset's
//! phase, so the SQLite writer is held for a few statements, not for the media work.

pub mod recovery;
mod repo;
pub mod task;

use std::collections::HashMap;
use std::sync::Mutex;

use studio_media_core::hls::playlist::Variant;
use studio_media_core::hls::variant_of;
use studio_media_core::segment::Segment;

use crate::app::AppState;
use crate::clock::now_ms;
use crate::events::{self, EventType, NewEvent};
use crate::sessions::segments::{self, IndexedSegment, MAX_SEGMENTS};
use crate::sessions::{self, Session};
use crate::streams;

pub use task::RecordingTasks;

/// The sessions this node ingests, as far as their segment index and recording got.
#[derive(Default)]
pub struct Recorder {
    sessions: Mutex<HashMap<String, Tracked>>,
}

/// How far a live session got in the database.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// The session's stream records.
    recorded: bool,
    /// The number the next segment is indexed under.
    next_seq: i64,
    /// The recording's row exists; until then each segment of a recorded session tries to
    /// begin it.
    begun: bool,
    truncated: bool,
}

/// What a recorded session stored: what its asset is made from.
struct Recording {
    segments: Vec<IndexedSegment>,
    /// Codecs, picture size and frame rate, from the first segment.
    variant: Variant,
}

impl Recorder {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live pipeline stored `segment` of session `session_id` under `key`; its first frame was
/// shown at `program_date_ms`. The segment is added to the session's index (what clips are cut
/// from) before this returns. The first call for a session decides whether it records
/// (`recording.started`); the first segment of a recorded session begins its recording, in the
/// same transaction.
pub async fn segment_stored(
    state: &AppState,
    project_id: &str,
    session_id: &str,
    key: String,
    program_date_ms: i64,
    segment: &Segment,
) {
    let indexed = IndexedSegment {
        key,
        start_ms: Some(program_date_ms),
        duration_s: segment.duration_ms.max(0) as f64 / 1000.0,
        discontinuity: segment.discontinuity,
    };
    // Only one task per session calls this, so the entry does not change between the lock
    // here and the one that records the outcome below.
    let known = state.recorder().sessions().get(session_id).copied();
    let tracked = match known {
        Some(tracked) => tracked,
        None => {
            let session = match sessions::repo::get(state.db(), project_id, session_id).await {
                Ok(Some(session)) => session,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, session = %session_id, "reading a live session failed; its segment is not indexed");
                    return;
                }
            };
            let tracked = Tracked {
                recorded: session.record,
                next_seq: 0,
                begun: false,
                truncated: false,
            };
            state
                .recorder()
                .sessions()
                .insert(session_id.to_string(), tracked);
            if session.record
                && let Err(err) = emit_started(state, session).await
            {
                tracing::error!(error = format!("{err:#}"), session = %session_id, "emitting recording.started failed");
            }
            tracked
        }
    };
    if tracked.next_seq >= MAX_SEGMENTS {
        if let Some(tracked) = state.recorder().sessions().get_mut(session_id)
            && !tracked.truncated
        {
            tracked.truncated = true;
            tracing::warn!(session = %session_id, "the session reached {MAX_SEGMENTS} segments; later ones are neither recorded nor clipped");
        }
        return;
    }
    let begin = tracked.recorded && !tracked.begun;
    let written = async {
        let mut tx = state.db().begin().await?;
        segments::add(&mut tx, project_id, session_id, tracked.next_seq, &indexed).await?;
        if begin {
            // The recording begins with the first segment the database takes.
            repo::begin(
                &mut tx,
                project_id,
                session_id,
                &variant_of(segment, "source/index.m3u8"),
                now_ms(),
            )
            .await?;
        }
        tx.commit().await
    }
    .await;
    match written {
        Ok(()) => {
            if let Some(tracked) = state.recorder().sessions().get_mut(session_id) {
                tracked.next_seq += 1;
                tracked.begun |= begin;
            }
        }
        Err(err) => {
            tracing::error!(error = %err, session = %session_id, key = %indexed.key, "indexing a segment failed; the session's recording and clips miss it")
        }
    }
}

/// Session `session_id` ended: a recorded one becomes an asset, and this node starts its
/// processing at once (shutdown waits for it).
pub async fn session_ended(state: &AppState, project_id: &str, session_id: &str) {
    let Some(tracked) = state.recorder().sessions().remove(session_id) else {
        return;
    };
    if !tracked.recorded {
        return;
    }
    if !tracked.begun {
        tracing::warn!(session = %session_id, "no segment of the recorded session could be kept: no recording");
        return;
    }
    match state.recordings().spawn(project_id, session_id).await {
        Ok(Some(task)) => {
            let runner = state.runner().clone();
            state
                .tasks()
                .spawn(runner.run_now(task.task_type, task.project_id, task.id));
        }
        Ok(None) => {}
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), session = %session_id, "creating a recording asset failed; it is retried later")
        }
    }
}

async fn emit_started(state: &AppState, mut session: Session) -> anyhow::Result<()> {
    let now = now_ms();
    session.recording_status = Some(sessions::RecordingStatus::Waiting);
    let mut tx = state.db().begin().await?;
    let stream = streams::repo::get(&mut *tx, &session.project_id, &session.parent_id).await?;
    let payload = serde_json::json!({ "session": session });
    events::emit(
        &mut tx,
        NewEvent {
            project_id: &session.project_id,
            user_id: &session.user_id,
            event: EventType::RecordingStarted,
            stream: stream.as_ref(),
            payload: Some(payload),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    state.wake_webhooks();
    Ok(())
}
