//! Clips: `POST /clip` cuts a stretch of a live stream (its current session, or a past one) into
//! a new asset, and `GET /stream|session|asset/{id}/clips` list them.
//!
//! A clip is an asset (`source: {type: "clip", playbackId, sessionId}`) made by a `clip` task:
//! the task cuts the range from the session's stored segments (found through the session's
//! segment index, by the wall-clock times players compute from `EXT-X-PROGRAM-DATE-TIME`,
//! media-core `vod::clip`) into a source file, and from there the asset pipeline makes it like
//! any upload (renditions, HLS, static MP4s, thumbnails). A clip of a session still live waits
//! (boundedly) for the segments that reach its end. It always ends `ready` or `failed` with the
//! reason.
//!
//! Quota (Studio's): at most [`MAX_CLIPS_IN_PROGRESS`] clips in progress per requester (a digest
//! of the caller's address and the playback id) created in the last [`QUOTA_WINDOW_MS`].

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use studio_media_core::store::ObjectStore;
use studio_media_core::vod::clip::{ClipCutter, ClipError};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::pipeline::{AssetTasks, SourceFile};
use super::repo::ClipsOf;
use super::upload::{Digests, Received};
use super::{Asset, AssetPhase, AssetSource, NewAssetPayload, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::db::Database;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::ClientAddr;
use crate::http::json::JsonBody;
use crate::sessions::segments;
use crate::tasks::repo::NewTask;
use crate::tasks::runner::{Job, JobError, TaskHandler};
use crate::tasks::{Task, TaskType};

/// Clips in progress a requester may have.
pub const MAX_CLIPS_IN_PROGRESS: i64 = 5;
/// How far back the quota looks.
pub const QUOTA_WINDOW_MS: i64 = 5 * 60_000;
/// The longest clip, as the longest source an upload may have is configured separately.
const MAX_CLIP_MS: i64 = 2 * 3_600_000;
/// A clip whose end is still to come runs this long after it: the segment holding the end is
/// stored once the keyframe after it arrives (2 s later at the usual GOP) and is written.
const SETTLE_MS: i64 = 4_000;
/// How long a clip of a live session waits past its end for the segments that hold it (an
/// encoder with a long GOP, a slow store).
const LIVE_WAIT_MS: i64 = 30_000;
/// How often the segment index is looked at while waiting.
const LIVE_POLL: Duration = Duration::from_secs(2);
/// Clips listed at most (newest first).
const MAX_LISTED: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_clip))
        .routes(routes!(stream_clips))
        .routes(routes!(session_clips))
        .routes(routes!(asset_clips))
}

/// `POST /clip` (Studio's `clip-payload`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ClipPayload)]
pub struct ClipPayload {
    /// The playback id of the stream to clip.
    pub playback_id: String,
    /// Unix ms of the clip's first moment, as players compute it from
    /// `EXT-X-PROGRAM-DATE-TIME`.
    pub start_time: f64,
    /// Unix ms of the clip's end; now (the live edge) when absent.
    #[serde(default)]
    pub end_time: Option<f64>,
    /// The clip asset's name; `clip-{playbackId}` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Clip this session of the stream (a past one); the current or last session when absent.
    #[serde(default)]
    pub session_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ClipResponse)]
pub struct ClipResponse {
    pub asset: Asset,
    pub task: super::upload::TaskRef,
}

/// Clip a live stream or one of its past sessions.
#[utoipa::path(post, path = "/clip", tag = "stream", operation_id = "createClip",
    request_body = ClipPayload,
    responses((status = 200, body = ClipResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Too many clips are being processed"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_clip(
    State(state): State<AppState>,
    principal: Principal,
    ClientAddr(client): ClientAddr,
    JsonBody(payload): JsonBody<ClipPayload>,
) -> ApiResult<Json<ClipResponse>> {
    let (start, end) = validate(&payload)?;
    let stream = crate::streams::repo::get_by_playback_id(
        state.db().reader(),
        &principal.project_id,
        &payload.playback_id,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound("no stream of this project has this playback id".into()))?;
    let session_id = match &payload.session_id {
        Some(id) => {
            let session = crate::sessions::repo::get(state.db(), &principal.project_id, id)
                .await?
                .filter(|s| s.parent_id == stream.id)
                .ok_or_else(|| {
                    ApiError::NotFound("the stream has no session with this id".into())
                })?;
            session.id
        }
        None => last_session(state.db(), &principal.project_id, &stream.id)
            .await?
            .ok_or_else(|| {
                ApiError::invalid("the stream has not been live: there is nothing to clip")
            })?,
    };
    let end = end.unwrap_or_else(now_ms);
    if end <= start {
        return Err(ApiError::invalid("endTime must be after startTime"));
    }
    if end - start > MAX_CLIP_MS {
        return Err(ApiError::invalid(format!(
            "a clip lasts at most {} s",
            MAX_CLIP_MS / 1000
        )));
    }
    // A range the session never reached is refused now rather than failed later; a live
    // session may still reach it.
    if let Some((first, last)) =
        segments::span(state.db().reader(), &principal.project_id, &session_id).await?
    {
        let live = is_live(state.db(), &principal.project_id, &session_id).await?;
        if end <= first || (start >= last && !live) {
            return Err(ApiError::invalid(format!(
                "the session holds media from {first} to {last} (unix ms): the range asked for is outside it"
            )));
        }
    } else if !is_live(state.db(), &principal.project_id, &session_id).await? {
        return Err(ApiError::invalid("the session holds no media to clip"));
    }

    let requester = requester_id(&state, client, &payload.playback_id).await?;
    if clips_in_progress(state.db(), &principal.project_id, &requester).await?
        >= MAX_CLIPS_IN_PROGRESS
    {
        return Err(ApiError::Forbidden(
            "Too many clips are being processed.".into(),
        ));
    }
    let params = serde_json::json!({
        "clipStrategy": { "startTime": start, "endTime": end, "playbackId": payload.playback_id },
        "sessionId": session_id,
    });
    let asset_payload = NewAssetPayload {
        name: payload.name.clone().unwrap_or_else(|| "clip".into()),
        url: None,
        static_mp4: Some(true),
        playback_policy: stream.playback_policy.clone(),
        creator_id: None,
        profiles: None,
        target_segment_size_secs: None,
        storage: None,
        encryption: None,
        c2pa: None,
    };
    let name = payload.name.clone();
    let (asset, task) = super::create_with(
        &state,
        &principal,
        asset_payload,
        AssetSource::Clip {
            session_id: Some(session_id.clone()),
            asset_id: None,
            playback_id: Some(payload.playback_id.clone()),
        },
        AssetPhase::Waiting,
        |asset| {
            // Studio's default name names the clip's own playback id.
            if name.is_none() {
                asset.name = format!("clip-{}", asset.playback_id);
            }
            let mut task = NewTask::new(&asset.project_id, &asset.user_id, TaskType::Clip, params);
            task.output_asset_id = Some(asset.id.clone());
            task.unique_key = Some(asset.id.clone());
            task.requester_id = Some(requester);
            let now = now_ms();
            if end + SETTLE_MS > now {
                task.scheduled_at = Some(end + SETTLE_MS);
            }
            task.max_attempts = 3;
            task
        },
    )
    .await?;
    tracing::info!(asset = %asset.id, session = %session_id, start, end, "clip requested");
    Ok(Json(ClipResponse {
        asset: asset.for_response(state.public_url(), false),
        task: super::upload::TaskRef { id: task },
    }))
}

/// The clip's range in whole ms; 422 for a range that cannot be one.
fn validate(payload: &ClipPayload) -> ApiResult<(i64, Option<i64>)> {
    let mut problems = crate::http::validate::Problems::default();
    // Unix ms between 2000 and 2100.
    let plausible = |t: f64| t.is_finite() && (946_684_800_000.0..4_102_444_800_000.0).contains(&t);
    if !plausible(payload.start_time) {
        problems.add("startTime must be a time in unix milliseconds");
    }
    if payload.end_time.is_some_and(|t| !plausible(t)) {
        problems.add("endTime must be a time in unix milliseconds");
    }
    if payload.playback_id.is_empty() || payload.playback_id.len() > 64 {
        problems.add("playbackId must be a playback id");
    }
    if let Some(name) = &payload.name {
        crate::streams::model::validate_name(&mut problems, name);
    }
    if payload
        .session_id
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.len() > 64)
    {
        problems.add("sessionId must be a session id");
    }
    problems.into_result()?;
    let start = payload.start_time.round() as i64;
    let end = payload.end_time.map(|t| t.round() as i64);
    if end.is_some_and(|end| end <= start) {
        return Err(ApiError::invalid("endTime must be after startTime"));
    }
    Ok((start, end))
}

/// The stream's newest session.
async fn last_session(
    db: &Database,
    project_id: &str,
    stream_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id FROM sessions WHERE project_id = $1 AND stream_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(stream_id)
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// The session has not ended.
async fn is_live(db: &Database, project_id: &str, session_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT ended_at FROM sessions WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(session_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<i64>, _>("ended_at")?.is_none(),
        None => false,
    })
}

/// Studio's `requesterId`: the SHA-256 of a server secret, the caller's address and the playback
/// id (the secret keeps addresses from being guessed back from it).
async fn requester_id(state: &AppState, client: IpAddr, playback_id: &str) -> ApiResult<String> {
    let salt = state.clip_salt().await?;
    let mut digest = Sha256::new();
    digest.update(salt.as_bytes());
    digest.update(client.to_string().as_bytes());
    digest.update(b"/");
    digest.update(playback_id.as_bytes());
    Ok(hex::encode(digest.finalize()))
}

/// Clip tasks of `requester` in the project created in the quota window and not finished (a
/// requester clips one playback id, of one project).
async fn clips_in_progress(
    db: &Database,
    project_id: &str,
    requester: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM tasks WHERE project_id = $1 AND requester_id = $2 AND created_at >= $3 \
         AND type = 'clip' AND phase IN ('pending', 'waiting', 'running')",
    )
    .bind(project_id)
    .bind(requester)
    .bind(now_ms() - QUOTA_WINDOW_MS)
    .fetch_one(db.reader())
    .await?;
    row.try_get("n")
}

/// The clips of a stream (of all its sessions), newest first.
#[utoipa::path(get, path = "/stream/{id}/clips", tag = "stream", operation_id = "getClips",
    params(("id" = String, Path, description = "Stream id or playback id")),
    responses((status = 200, body = Vec<Asset>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn stream_clips(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Vec<Asset>>> {
    let project = principal.project_id.as_str();
    let stream = match crate::streams::repo::get(state.db().reader(), project, &id).await? {
        Some(stream) => stream,
        None => crate::streams::repo::get_by_playback_id(state.db().reader(), project, &id)
            .await?
            .ok_or_else(ApiError::not_found)?,
    };
    list(&state, project, ClipsOf::Stream(&stream.id)).await
}

/// The clips of a session, newest first.
#[utoipa::path(get, path = "/session/{id}/clips", tag = "session", operation_id = "getSessionClips",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Vec<Asset>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn session_clips(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Vec<Asset>>> {
    let project = principal.project_id.as_str();
    crate::sessions::repo::get(state.db(), project, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    list(&state, project, ClipsOf::Session(&id)).await
}

/// The clips of an asset: of the session a recording was made of (other assets have none).
#[utoipa::path(get, path = "/asset/{id}/clips", tag = "asset", operation_id = "getAssetClips",
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = Vec<Asset>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn asset_clips(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Vec<Asset>>> {
    let project = principal.project_id.as_str();
    let asset = repo::get(state.db().reader(), project, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    match &asset.source {
        AssetSource::Recording { session_id } => {
            list(&state, project, ClipsOf::Session(session_id)).await
        }
        _ => Ok(Json(Vec::new())),
    }
}

async fn list(state: &AppState, project: &str, of: ClipsOf<'_>) -> ApiResult<Json<Vec<Asset>>> {
    let clips = repo::clips(state.db(), project, of, MAX_LISTED).await?;
    let base = state.public_url();
    Ok(Json(
        clips
            .into_iter()
            .map(|c| c.for_response(base, false))
            .collect(),
    ))
}

/// The handler of `clip` tasks: cuts the clip into a source file, then the asset pipeline
/// makes the asset as it makes uploads.
pub struct ClipTasks {
    assets: Arc<AssetTasks>,
    db: Database,
    store: Arc<dyn ObjectStore>,
}

impl ClipTasks {
    pub fn new(assets: Arc<AssetTasks>, db: Database, store: Arc<dyn ObjectStore>) -> ClipTasks {
        ClipTasks { assets, db, store }
    }
}

impl TaskHandler for ClipTasks {
    fn task_type(&self) -> TaskType {
        TaskType::Clip
    }

    fn cores(&self) -> usize {
        self.assets.cores()
    }

    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move { self.assets.process(&job, self).await })
    }

    fn failed<'a>(&'a self, task: &'a Task, error: &'a str) -> BoxFuture<'a, ()> {
        self.assets.failed(task, error)
    }
}

impl SourceFile for ClipTasks {
    fn fetch<'a>(
        &'a self,
        job: &'a Job,
        asset: &'a Asset,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<Received, JobError>> {
        Box::pin(self.cut(job, asset, path))
    }
}

impl ClipTasks {
    /// Cuts the clip the job asks for into `path` (MPEG-TS). Returns what was written.
    async fn cut(&self, job: &Job, asset: &Asset, path: &Path) -> Result<Received, JobError> {
        let params = job.params();
        let strategy = params.get("clipStrategy");
        let time = |name: &str| strategy.and_then(|s| s.get(name)).and_then(|v| v.as_i64());
        let (Some(start), Some(end)) = (time("startTime"), time("endTime")) else {
            return Err(JobError::Fatal("the task names no clip range".into()));
        };
        let session_id = params
            .get("sessionId")
            .and_then(|v| v.as_str())
            .ok_or_else(|| JobError::Fatal("the task names no session".into()))?;
        let project = asset.project_id.as_str();

        // A live session may not have stored the end yet: wait for it, boundedly.
        loop {
            let covered = segments::span(self.db.reader(), project, session_id)
                .await
                .map_err(JobError::database)?
                .is_some_and(|(_, last)| last >= end);
            let live = is_live(&self.db, project, session_id)
                .await
                .map_err(JobError::database)?;
            if covered || !live || now_ms() > end + LIVE_WAIT_MS {
                break;
            }
            job.set_progress(0.01);
            tokio::time::sleep(LIVE_POLL).await;
        }

        // The range moves by up to half a GOP to start at a keyframe: read a little around it.
        let pieces = segments::between(self.db.reader(), project, session_id, start, end + 30_000)
            .await
            .map_err(JobError::database)?;
        let mut cutter = ClipCutter::new(start, end);
        let mut file = tokio::io::BufWriter::new(
            tokio::fs::File::create(path)
                .await
                .map_err(JobError::scratch)?,
        );
        let mut digests = Digests::default();
        for piece in &pieces {
            if cutter.is_done() {
                break;
            }
            let Some(date) = piece.start_ms else { continue };
            let Some(ts) = self
                .store
                .get(&piece.key)
                .await
                .map_err(JobError::media_store)?
            else {
                tracing::warn!(key = %piece.key, asset = %asset.id, "a segment of the clipped session is missing; clipping over it");
                continue;
            };
            // Demuxing a segment takes about a millisecond: no need for a blocking thread.
            if let Some(bytes) = cutter.push(&ts, date).map_err(clip_error)? {
                digests.update(&bytes);
                file.write_all(&bytes).await.map_err(JobError::scratch)?;
            }
        }
        let (tail, span) = cutter.finish().map_err(clip_error)?;
        if let Some(bytes) = tail {
            digests.update(&bytes);
            file.write_all(&bytes).await.map_err(JobError::scratch)?;
        }
        file.flush().await.map_err(JobError::scratch)?;
        tracing::info!(asset = %asset.id, start = span.start_ms, end = span.end_ms, "clip cut");
        Ok(digests.finish())
    }
}

fn clip_error(err: ClipError) -> JobError {
    JobError::Fatal(format!("{err}"))
}
