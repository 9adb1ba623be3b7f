//! The `recording` task: turns a recorded session into its asset. Internal (never listed by
//! `/task`), run by the job system like every background job: leased, retried on store or
//! database hiccups, taken over by another node when its node dies.
//!
//! The task and the asset are created together ([`RecordingTasks::spawn`]); the task makes the
//! asset `ready` (and forgets the recording) in one transaction before it completes, so a task
//! run again after a crash finds the asset finished and only completes. A task that fails for
//! good, whatever the cause, fails its asset ([`TaskHandler::failed`]).

use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use futures::future::BoxFuture;
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist};
use studio_media_core::mp4::{self, MediaInfo, TrackKind};
use studio_media_core::store::ObjectStore;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::Recording;
use super::repo::{self, AssetState};
use crate::assets::{
    self, Asset, AssetFile, AssetPhase, AssetSource, AssetStatus, FileKind, VideoSpec,
};
use crate::clock::now_ms;
use crate::db::Database;
use crate::events::{self, EventType, NewEvent};
use crate::playback::hls::key;
use crate::sessions;
use crate::sessions::segments::IndexedSegment;
use crate::streams;
use crate::tasks::repo::NewTask;
use crate::tasks::runner::{Job, JobError, TaskHandler};
use crate::tasks::{Task, TaskType};

/// Attempts before a recording fails: a node that stops each time it processes one may be
/// stopped by it.
const MAX_ATTEMPTS: i64 = 3;
/// How long one attempt may take (a day-long recording is 43,200 segments to copy).
const DEADLINE_MS: i64 = 2 * 3_600_000;

/// Makes recording assets: the handler of `recording` tasks, with only what it needs.
pub struct RecordingTasks {
    db: Database,
    store: Arc<dyn ObjectStore>,
    public_url: String,
    webhooks: Arc<Notify>,
}

impl RecordingTasks {
    pub fn new(
        db: Database,
        store: Arc<dyn ObjectStore>,
        public_url: String,
        webhooks: Arc<Notify>,
    ) -> RecordingTasks {
        RecordingTasks {
            db,
            store,
            public_url,
            webhooks,
        }
    }

    /// Creates the recording asset of the session (`waiting`, with `recording.waiting`) unless
    /// it exists, and its `recording` task unless it exists, in one transaction. Returns the
    /// task while it still has work to do; `None` when the session is gone or the task ended.
    pub async fn spawn(&self, project_id: &str, session_id: &str) -> anyhow::Result<Option<Task>> {
        let now = now_ms();
        let Some(mut session) = sessions::repo::get(&self.db, project_id, session_id).await? else {
            return Ok(None);
        };
        let mut tx = self.db.begin().await?;
        let mut created = None;
        if assets::repo::get(&mut *tx, project_id, session_id)
            .await?
            .is_none()
        {
            let stream = streams::repo::get(&mut *tx, project_id, &session.parent_id).await?;
            let mut asset = Asset {
                id: session.id.clone(),
                user_id: session.user_id.clone(),
                project_id: project_id.to_string(),
                name: format!("live-to-vod-{}", session.id),
                playback_id: String::new(),
                playback_url: None,
                download_url: None,
                // A gated stream's recording is gated the same way.
                playback_policy: stream.as_ref().and_then(|s| s.playback_policy.clone()),
                source: AssetSource::Recording {
                    session_id: session.id.clone(),
                },
                creator_id: stream.as_ref().and_then(|s| s.creator_id.clone()),
                created_at: now,
                created_by_token_name: None,
                status: AssetStatus {
                    phase: AssetPhase::Waiting,
                    updated_at: now,
                    progress: None,
                    error_message: None,
                },
                size: None,
                video_spec: None,
                hash: None,
                profiles: None,
                static_mp4: true,
                files: Vec::new(),
            };
            assets::repo::insert(&mut tx, &mut asset).await?;
            session.recording_status = Some(sessions::RecordingStatus::Waiting);
            let mut session_json = serde_json::to_value(&session)?;
            session_json["assetId"] = serde_json::Value::String(asset.id.clone());
            events::emit(
                &mut tx,
                NewEvent {
                    project_id,
                    user_id: &session.user_id,
                    event: EventType::RecordingWaiting,
                    stream: stream.as_ref(),
                    payload: Some(serde_json::json!({ "session": session_json })),
                },
                now,
            )
            .await?;
            created = Some(asset);
        }
        let mut new = NewTask::new(
            project_id,
            &session.user_id,
            TaskType::Recording,
            serde_json::json!({ "sessionId": session_id }),
        );
        new.output_asset_id = Some(session_id.to_string());
        new.unique_key = Some(session_id.to_string());
        new.max_attempts = MAX_ATTEMPTS;
        new.deadline_ms = DEADLINE_MS;
        let (task, _) = crate::tasks::repo::spawn(&mut tx, &new, now).await?;
        tx.commit().await?;
        if let Some(asset) = created {
            self.webhooks.notify_one();
            tracing::info!(session = %session_id, asset = %asset.id, playback_id = %asset.playback_id, "recording asset created");
        }
        Ok((!task.status.phase.is_final()).then_some(task))
    }

    async fn make(&self, job: &Job) -> Result<serde_json::Value, JobError> {
        let session_id = job
            .params()
            .get("sessionId")
            .and_then(|v| v.as_str())
            .ok_or_else(|| JobError::Fatal("the task names no session".into()))?;
        let project_id = job.task.project_id.as_str();
        let done = serde_json::json!({ "assetId": session_id });
        match repo::asset_state(&self.db, project_id, session_id)
            .await
            .map_err(JobError::database)?
        {
            // Made by an earlier attempt that stopped before completing the task, or deleted
            // meanwhile: nothing is left to do but forget the segments' list.
            AssetState::Finished | AssetState::Deleted => {
                repo::discard(&self.db, session_id)
                    .await
                    .map_err(JobError::database)?;
                return Ok(done);
            }
            AssetState::Missing => {
                return Err(JobError::Fatal(
                    "the asset of the recording no longer exists".into(),
                ));
            }
            AssetState::Unfinished => {}
        }
        let asset = assets::repo::get(self.db.reader(), project_id, session_id)
            .await
            .map_err(|e| JobError::Retriable(format!("reading the asset: {e}")))?
            .ok_or_else(|| JobError::Fatal("the asset of the recording no longer exists".into()))?;
        let recording = repo::load(&self.db, session_id)
            .await
            .map_err(JobError::database)?
            .ok_or_else(|| JobError::Fatal("the segments of the recording were not kept".into()))?;
        let started = std::time::Instant::now();
        let media = self.package(&asset, &recording, job).await?;
        self.finish_ready(&asset, media)
            .await
            .map_err(|e| JobError::Retriable(format!("{e:#}")))?;
        tracing::info!(asset = %asset.id, elapsed_ms = started.elapsed().as_millis() as u64, "recording processed");
        Ok(done)
    }

    /// Copies the segments under the asset's playback id with a VOD playlist, and remuxes them
    /// into an MP4 beside it. The master playlist is written last: the asset has a playback URL
    /// only once everything it lists exists.
    async fn package(
        &self,
        asset: &Asset,
        recording: &Recording,
        job: &Job,
    ) -> Result<Packaged, JobError> {
        let store = self.store.as_ref();
        let pid = &asset.playback_id;
        let ts_path = job.scratch.join("source.ts");
        let mut ts_file = tokio::io::BufWriter::new(
            tokio::fs::File::create(&ts_path)
                .await
                .map_err(JobError::scratch)?,
        );
        let mut playlist = MediaPlaylist::vod();
        let mut total_bytes = 0u64;
        let mut total_s = 0.0;
        let mut peak_bps = 0u64;
        let mut gap = false;
        let count = recording.segments.len().max(1) as f64;
        for (index, segment) in recording.segments.iter().enumerate() {
            job.set_progress(0.9 * index as f64 / count);
            let IndexedSegment {
                key: segment_key,
                start_ms,
                duration_s,
                discontinuity,
            } = segment;
            let Some(data) = store
                .get(segment_key)
                .await
                .map_err(JobError::media_store)?
            else {
                // A segment whose store write failed live: play over the gap.
                tracing::warn!(key = %segment_key, asset = %asset.id, "a recorded segment is missing; skipping it");
                gap = true;
                continue;
            };
            let name = format!("{index}.ts");
            ts_file.write_all(&data).await.map_err(JobError::scratch)?;
            total_bytes += data.len() as u64;
            total_s += duration_s;
            if *duration_s > 0.0 {
                peak_bps = peak_bps.max((data.len() as f64 * 8.0 / duration_s) as u64);
            }
            store
                .put(&key(pid, &format!("source/{name}")), data)
                .await
                .map_err(JobError::media_store)?;
            // The time each segment was shown live, so a player of the recording can tell the
            // time of any moment (and clip it).
            playlist.push_at(
                name,
                *duration_s,
                *discontinuity || std::mem::take(&mut gap),
                *start_ms,
            );
        }
        ts_file.flush().await.map_err(JobError::scratch)?;
        drop(ts_file);
        if playlist.is_empty() {
            return Err(JobError::Fatal(
                "none of the session's segments could be read from the media store".into(),
            ));
        }
        let mp4_path = job.scratch.join("recording.mp4");
        let media = std::time::Duration::try_from_secs_f64(total_s).unwrap_or_default();
        let info = mp4::remux_and_probe(ts_path.clone(), mp4_path.clone(), media)
            .await
            .map_err(|e| JobError::Fatal(format!("{e:#}")))?;
        job.set_progress(0.95);
        let _ = tokio::fs::remove_file(&ts_path).await;
        let mp4_size = tokio::fs::metadata(&mp4_path)
            .await
            .map_err(JobError::scratch)?
            .len();
        let video = info.tracks.iter().find(|t| t.kind == TrackKind::Video);
        let mp4_name = match video.and_then(|v| v.height) {
            Some(height) => format!("static{height}p0.mp4"),
            None => "audio.mp4".to_string(),
        };
        let mp4_key = key(pid, &mp4_name);
        store
            .put_file(&mp4_key, &mp4_path)
            .await
            .map_err(JobError::media_store)?;
        store
            .put(
                &key(pid, "source/index.m3u8"),
                Bytes::from(playlist.render()),
            )
            .await
            .map_err(JobError::media_store)?;
        let average_bps = if total_s > 0.0 {
            (total_bytes as f64 * 8.0 / total_s) as u64
        } else {
            0
        };
        let variant = Variant {
            bandwidth: peak_bps.max(average_bps),
            average_bandwidth: Some(average_bps),
            ..recording.variant.clone()
        };
        let master_key = key(pid, "index.m3u8");
        store
            .put(&master_key, Bytes::from(master_playlist(&[variant])))
            .await
            .map_err(JobError::media_store)?;
        let files = vec![
            AssetFile {
                kind: FileKind::CatalystHlsManifest,
                path: master_key,
                size: None,
                width: None,
                height: None,
                bitrate: None,
            },
            AssetFile {
                kind: FileKind::StaticTranscodedMp4,
                path: mp4_key,
                size: Some(mp4_size as i64),
                width: video.and_then(|v| v.width).map(i64::from),
                height: video.and_then(|v| v.height).map(i64::from),
                bitrate: info.bitrate,
            },
        ];
        Ok(Packaged {
            info,
            mp4_size,
            files,
        })
    }

    /// The asset turns `ready` with `recording.ready`, and the recording's rows go, in one
    /// transaction.
    async fn finish_ready(&self, asset: &Asset, media: Packaged) -> anyhow::Result<()> {
        let now = now_ms();
        let spec = VideoSpec::of(&media.info, "mp4");
        let mut tx = self.db.begin().await?;
        assets::repo::set_ready(
            &mut tx,
            &asset.project_id,
            &asset.id,
            media.mp4_size as i64,
            &spec,
            &media.files,
            now,
        )
        .await?;
        let ready = assets::repo::get(&mut *tx, &asset.project_id, &asset.id)
            .await?
            .context("the asset vanished")?;
        let ready = ready.for_response(&self.public_url, false);
        if let Some(mut session) =
            sessions::repo::get_in(&mut *tx, &asset.project_id, &asset.id).await?
        {
            sessions::describe_recording(&mut session, Some((&ready, false)), now);
            let stream =
                streams::repo::get(&mut *tx, &asset.project_id, &session.parent_id).await?;
            let payload = serde_json::json!({ "recordingUrl": ready.playback_url, "mp4Url": ready.download_url, "session": session });
            events::emit(
                &mut tx,
                NewEvent {
                    project_id: &asset.project_id,
                    user_id: &asset.user_id,
                    event: EventType::RecordingReady,
                    stream: stream.as_ref(),
                    payload: Some(payload),
                },
                now,
            )
            .await?;
        }
        repo::forget(&mut tx, &asset.id).await?;
        tx.commit().await?;
        self.webhooks.notify_one();
        Ok(())
    }

    /// The asset turns `failed` with `error` and `asset.failed`, and the recording's rows go,
    /// in one transaction.
    pub(super) async fn finish_failed(&self, asset: &Asset, error: &str) -> anyhow::Result<()> {
        let now = now_ms();
        let message: String = error.chars().take(512).collect();
        let mut tx = self.db.begin().await?;
        assets::repo::set_phase(
            &mut tx,
            &asset.project_id,
            &asset.id,
            AssetPhase::Failed,
            None,
            Some(&message),
            now,
        )
        .await?;
        let failed = assets::repo::get(&mut *tx, &asset.project_id, &asset.id)
            .await?
            .context("the asset vanished")?;
        let failed = failed.for_response(&self.public_url, false);
        let payload = serde_json::json!({ "asset": { "id": failed.id, "snapshot": failed } });
        events::emit(
            &mut tx,
            NewEvent {
                project_id: &asset.project_id,
                user_id: &asset.user_id,
                event: EventType::AssetFailed,
                stream: None,
                payload: Some(payload),
            },
            now,
        )
        .await?;
        repo::forget(&mut tx, &asset.id).await?;
        tx.commit().await?;
        self.webhooks.notify_one();
        Ok(())
    }

    /// Fails the asset of recording task `task` with `error`, if it is still unfinished.
    async fn fail_asset(&self, task: &Task, error: &str) -> anyhow::Result<()> {
        let Some(id) = task.output_asset_id.as_deref() else {
            return Ok(());
        };
        if repo::asset_state(&self.db, &task.project_id, id).await? != AssetState::Unfinished {
            return Ok(());
        }
        let Some(asset) = assets::repo::get(self.db.reader(), &task.project_id, id).await? else {
            return Ok(());
        };
        tracing::warn!(asset = %id, %error, "the recording failed");
        self.finish_failed(&asset, error).await
    }
}

impl TaskHandler for RecordingTasks {
    fn task_type(&self) -> TaskType {
        TaskType::Recording
    }

    // Remuxing copies packets: mostly I/O, so recordings take I/O slots and never wait behind
    // the uploads that keep every core busy.

    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move { self.make(&job).await })
    }

    fn failed<'a>(&'a self, task: &'a Task, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(err) = self.fail_asset(task, error).await {
                tracing::error!(error = format!("{err:#}"), task = %task.id, "failing the asset of a failed recording failed; recovery will");
            }
        })
    }
}

/// The packaged media of a recording.
struct Packaged {
    info: MediaInfo,
    mp4_size: u64,
    files: Vec<AssetFile>,
}
