//! `/stream`: create, list, get, update, delete, terminate, multistream references, and the
//! admin-only `setactive` that ingest nodes use to report a stream live or idle.

use crate::http::json::Query;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::put;
use serde::Deserialize;
use sqlx::Acquire;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::*;
use super::repo;
use crate::app::AppState;
use crate::auth::{AdminPrincipal, Principal};
use crate::clock::now_ms;
use crate::db::{self, Tx};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::events::{self, EventType, NewEvent};
use crate::http::json::JsonBody;
use crate::http::list::{ListParams, ListRequest};
use crate::http::validate::Problems;
use crate::ids;
use crate::multistream;
use crate::profiles::{
    FfmpegProfile, default_stream_profiles, validate_ffmpeg_profiles, validate_transcode_profiles,
};

/// A second terminate within this window is refused with 429.
const TERMINATE_MIN_GAP_MS: i64 = 5_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_stream, list_streams))
        .routes(routes!(get_stream, update_stream, delete_stream))
        .routes(routes!(terminate_stream))
        .routes(routes!(add_multistream_target))
        .routes(routes!(remove_multistream_target))
        // Internal (admin keys): not part of the public API document.
        .route("/stream/{id}/setactive", put(set_active))
}

/// Create a stream.
#[utoipa::path(post, path = "/stream", tag = "stream", operation_id = "createStream",
    request_body = NewStreamPayload,
    responses((status = 201, body = Stream), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_stream(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<NewStreamPayload>,
) -> ApiResult<(StatusCode, Json<Stream>)> {
    let profiles = payload
        .profiles
        .clone()
        .unwrap_or_else(default_stream_profiles);
    validate_new_stream(&payload, &profiles)?;
    let record = payload.record.unwrap_or(false);
    if payload.recording_spec.is_some() && !record {
        return Err(ApiError::BadRequest(
            "recordingSpec is only supported with record=true".into(),
        ));
    }
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    if let Some(policy) = &payload.playback_policy {
        check_policy_webhook(&mut tx, &principal, policy).await?;
    }
    let multistream = match payload.multistream {
        Some(m) => Some(resolve_targets(&mut tx, &principal, m.targets, now).await?),
        None => None,
    };
    let id = ids::new_id();
    let mut stream = Stream {
        id: id.clone(),
        name: payload.name,
        kind: "stream".into(),
        creator_id: payload.creator_id.map(CreatorIdInput::into_creator_id),
        user_tags: payload.user_tags,
        last_seen: 0,
        source_segments: 0,
        transcoded_segments: 0,
        source_segments_duration: 0.0,
        transcoded_segments_duration: 0.0,
        source_bytes: 0,
        transcoded_bytes: 0,
        ingest_rate: 0.0,
        outgoing_rate: 0.0,
        is_active: false,
        is_healthy: None,
        issues: None,
        created_by_token_name: Some(principal.key_name.clone()),
        created_at: now,
        parent_id: None,
        stream_key: None,
        playback_id: String::new(),
        playback_policy: payload.playback_policy,
        profiles,
        project_id: principal.project_id.clone(),
        record,
        recording_spec: payload.recording_spec,
        multistream,
        suspended: false,
        last_terminated_at: None,
        user_id: principal.user_id.clone(),
        renditions: serde_json::Map::new(),
    };
    // Keys are random (~62 bits); a collision is retried with fresh ones inside a savepoint.
    let mut attempt = 0;
    loop {
        stream.stream_key = Some(ids::new_stream_key(&id));
        stream.playback_id = ids::new_playback_id(&id);
        let mut savepoint = tx.begin().await?;
        match repo::insert(&mut savepoint, &stream).await {
            Ok(()) => {
                savepoint.commit().await?;
                break;
            }
            Err(err) if db::is_unique_violation(&err) && attempt < 5 => {
                savepoint.rollback().await?;
                attempt += 1;
            }
            Err(err) => return Err(err.into()),
        }
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(stream)))
}

/// `webhook` playback policies must name a webhook of the same project.
pub(crate) async fn check_policy_webhook(
    tx: &mut Tx,
    principal: &Principal,
    policy: &PlaybackPolicy,
) -> ApiResult<()> {
    if policy.kind != PlaybackPolicyType::Webhook {
        return Ok(());
    }
    let webhook_id = policy.webhook_id.as_deref().unwrap_or_default();
    if crate::webhooks::repo::get(&mut **tx, &principal.project_id, webhook_id)
        .await?
        .is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "playbackPolicy.webhookId: webhook {webhook_id} not found in this project"
        )));
    }
    Ok(())
}

/// Turns target references into stored ones: existing targets must belong to the project, inline
/// `spec`s are created now.
async fn resolve_targets(
    tx: &mut Tx,
    principal: &Principal,
    inputs: Vec<TargetRefInput>,
    now: i64,
) -> ApiResult<Multistream> {
    let mut targets: Vec<TargetRef> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let id = match (input.id, input.spec) {
            (Some(id), None) => {
                if multistream::get(&mut **tx, &principal.project_id, &id)
                    .await?
                    .is_none()
                {
                    return Err(ApiError::BadRequest(format!(
                        "multistream.targets[{i}]: multistream target {id} not found"
                    )));
                }
                id
            }
            (None, Some(spec)) => {
                multistream::insert(tx, principal, spec.name.as_deref(), &spec.url, false, now)
                    .await?
                    .id
            }
            _ => unreachable!("validated: exactly one of id and spec"),
        };
        if targets
            .iter()
            .any(|t| t.id == id && t.profile == input.profile)
        {
            return Err(ApiError::BadRequest(format!(
                "multistream.targets[{i}] repeats target {id} with profile {}",
                input.profile
            )));
        }
        targets.push(TargetRef {
            id,
            profile: input.profile,
            video_only: input.video_only.unwrap_or(false),
        });
    }
    Ok(Multistream { targets })
}

/// Query parameters of `GET /stream` besides paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamListQuery {
    /// Accepted for compatibility: this server never lists child streams.
    #[allow(dead_code)]
    streamsonly: Option<String>,
    /// `1` or `true`: only streams that are live now.
    active: Option<String>,
}

/// List the project's streams.
#[utoipa::path(get, path = "/stream", tag = "stream", operation_id = "getStreams",
    params(StreamListQuery, ListParams),
    responses((status = 200, body = Vec<Stream>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_streams(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<StreamListQuery>,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    let active = matches!(query.active.as_deref(), Some("1") | Some("true"));
    let (streams, page) = repo::list(state.db(), &principal.project_id, &req, active).await?;
    Ok(req.respond(streams, page, &uri, state.public_url()))
}

/// Get a stream.
#[utoipa::path(get, path = "/stream/{id}", tag = "stream", operation_id = "getStream",
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = Stream), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Stream>> {
    repo::get(state.db().reader(), &principal.project_id, &id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Update a stream. `record` and `profiles` cannot change while the stream is live.
#[utoipa::path(patch, path = "/stream/{id}", tag = "stream", operation_id = "updateStream",
    params(("id" = String, Path, description = "Stream id")),
    request_body = StreamPatchPayload,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<StreamPatchPayload>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let mut stream = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if stream.parent_id.is_some() {
        return Err(ApiError::BadRequest(
            "can't patch a child stream: patch its parent".into(),
        ));
    }
    let new_profiles: Option<Vec<FfmpegProfile>> = patch
        .profiles
        .clone()
        .map(|p| p.unwrap_or_else(default_stream_profiles));
    let mut problems = Problems::default();
    if let Some(name) = &patch.name {
        validate_name(&mut problems, name);
    }
    if let Some(Some(tags)) = &patch.user_tags {
        validate_user_tags(&mut problems, tags);
    }
    if let Some(Some(policy)) = &patch.playback_policy {
        validate_playback_policy(&mut problems, policy);
    }
    if let Some(profiles) = &new_profiles {
        validate_ffmpeg_profiles(&mut problems, "profiles", profiles);
    }
    if let Some(Some(spec)) = &patch.recording_spec
        && let Some(profiles) = &spec.profiles
    {
        validate_transcode_profiles(&mut problems, "recordingSpec.profiles", profiles);
    }
    if let Some(creator) = &patch.creator_id {
        validate_creator_id(&mut problems, creator);
    }
    let profiles_after = new_profiles
        .clone()
        .unwrap_or_else(|| stream.profiles.clone());
    if let Some(m) = &patch.multistream {
        validate_multistream(&mut problems, m, &profiles_after);
    }
    problems.into_result()?;

    if stream.is_active {
        if patch.record.is_some_and(|r| r != stream.record) {
            return Err(ApiError::BadRequest(
                "record cannot be changed while the stream is active".into(),
            ));
        }
        if new_profiles.as_ref().is_some_and(|p| *p != stream.profiles) {
            return Err(ApiError::BadRequest(
                "profiles cannot be changed while the stream is active".into(),
            ));
        }
    }
    let record_after = patch.record.unwrap_or(stream.record);
    let spec_after = match &patch.recording_spec {
        Some(spec) => spec.clone(),
        None => stream.recording_spec.clone(),
    };
    if spec_after.is_some() && !record_after {
        return Err(ApiError::BadRequest(
            "recordingSpec is only supported with record=true".into(),
        ));
    }
    if let Some(Some(policy)) = &patch.playback_policy {
        check_policy_webhook(&mut tx, &principal, policy).await?;
    }
    if let Some(m) = patch.multistream {
        stream.multistream = Some(resolve_targets(&mut tx, &principal, m.targets, now).await?);
    } else if let (Some(profiles), Some(m)) = (&new_profiles, &stream.multistream) {
        // References must keep pointing at profiles that exist.
        if let Some(t) = m
            .targets
            .iter()
            .find(|t| t.profile != "source" && !profiles.iter().any(|p| p.name == t.profile))
        {
            return Err(ApiError::BadRequest(format!(
                "profiles: multistream target {} uses profile {}, which the new profiles do not have",
                t.id, t.profile
            )));
        }
    }
    if let Some(name) = patch.name {
        stream.name = name;
    }
    if let Some(creator) = patch.creator_id {
        stream.creator_id = Some(creator.into_creator_id());
    }
    if let Some(tags) = patch.user_tags {
        stream.user_tags = tags;
    }
    if let Some(policy) = patch.playback_policy {
        stream.playback_policy = policy;
    }
    if let Some(profiles) = new_profiles {
        stream.profiles = profiles;
    }
    if let Some(suspended) = patch.suspended {
        stream.suspended = suspended;
    }
    stream.record = record_after;
    stream.recording_spec = spec_after;
    repo::save_settings(&mut tx, &stream, now).await?;
    // Suspending a live stream ends its session now, as terminate does. The publisher is cut
    // before the commit so that no segment in flight makes the stream live again.
    if stream.suspended {
        state.live().disconnect(&id);
    }
    let ended = stream.suspended
        && stream.is_active
        && repo::set_active(&mut tx, &principal.project_id, &id, false, now).await?;
    if ended {
        let stream = repo::get(&mut *tx, &principal.project_id, &id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        emit_idle(&mut tx, &stream, now).await?;
    }
    tx.commit().await?;
    if ended {
        state.wake_webhooks();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a stream. Its key stops working at once.
#[utoipa::path(delete, path = "/stream/{id}", tag = "stream", operation_id = "deleteStream",
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let mut stream = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !repo::soft_delete(&mut tx, &principal.project_id, &id, now).await? {
        return Err(ApiError::not_found());
    }
    state.live().disconnect(&id);
    let was_live = stream.is_active;
    if was_live {
        stream.is_active = false;
        emit_idle(&mut tx, &stream, now).await?;
    }
    tx.commit().await?;
    if was_live {
        state.wake_webhooks();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deleting, terminating or suspending a live stream ends its session here, so `stream.idle` is
/// emitted here: when the publisher's session closes it finds the stream idle and emits nothing.
async fn emit_idle(tx: &mut Tx, stream: &Stream, now: i64) -> ApiResult<()> {
    events::emit(
        tx,
        NewEvent {
            project_id: &stream.project_id,
            user_id: &stream.user_id,
            event: EventType::StreamIdle,
            stream: Some(stream),
            payload: None,
        },
        now,
    )
    .await?;
    Ok(())
}

/// End the stream's live session now. The encoder may reconnect at once (unlike `suspended`).
#[utoipa::path(delete, path = "/stream/{id}/terminate", tag = "stream", operation_id = "terminateStream",
    params(("id" = String, Path, description = "Stream id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn terminate_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let before = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !repo::mark_terminated(
        &mut tx,
        &principal.project_id,
        &id,
        now,
        TERMINATE_MIN_GAP_MS,
    )
    .await?
    {
        return Err(ApiError::TooManyRequests(
            "the stream was terminated less than 5 seconds ago: wait before terminating it again"
                .into(),
        ));
    }
    state.live().disconnect(&id);
    if before.is_active {
        let stream = repo::get(&mut *tx, &principal.project_id, &id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        emit_idle(&mut tx, &stream, now).await?;
    }
    tx.commit().await?;
    if before.is_active {
        state.wake_webhooks();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Add a multistream target to a stream (an existing target by `id`, or a new one by `spec`).
#[utoipa::path(post, path = "/stream/{id}/create-multistream-target", tag = "stream", operation_id = "addMultistreamTarget",
    params(("id" = String, Path, description = "Stream id")),
    request_body = TargetRefInput,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_multistream_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<TargetRefInput>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let stream = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut problems = Problems::default();
    validate_target_ref(&mut problems, "", &input, &stream.profiles);
    problems.into_result()?;
    let mut multistream = stream.multistream.clone().unwrap_or(Multistream {
        targets: Vec::new(),
    });
    if multistream.targets.len() >= MAX_MULTISTREAM_TARGETS {
        return Err(ApiError::BadRequest(format!(
            "a stream can have at most {MAX_MULTISTREAM_TARGETS} multistream targets"
        )));
    }
    let added = resolve_targets(&mut tx, &principal, vec![input], now)
        .await?
        .targets
        .remove(0);
    if multistream
        .targets
        .iter()
        .any(|t| t.id == added.id && t.profile == added.profile)
    {
        return Err(ApiError::BadRequest(format!(
            "the stream already sends profile {} to target {}",
            added.profile, added.id
        )));
    }
    multistream.targets.push(added);
    repo::save_multistream(&mut tx, &principal.project_id, &id, &Some(multistream), now).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a multistream target from a stream (the target itself is kept).
#[utoipa::path(delete, path = "/stream/{id}/multistream/{targetId}", tag = "stream", operation_id = "removeMultistreamTarget",
    params(("id" = String, Path, description = "Stream id"), ("targetId" = String, Path, description = "Multistream target id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_multistream_target(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, target_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db().begin().await?;
    let stream = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut multistream = stream.multistream.unwrap_or(Multistream {
        targets: Vec::new(),
    });
    let before = multistream.targets.len();
    multistream.targets.retain(|t| t.id != target_id);
    if multistream.targets.len() == before {
        return Err(ApiError::NotFound(format!(
            "the stream has no multistream target {target_id}"
        )));
    }
    repo::save_multistream(
        &mut tx,
        &principal.project_id,
        &id,
        &Some(multistream),
        now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetActivePayload {
    active: bool,
    #[serde(default)]
    #[allow(dead_code)]
    host_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    started_at: Option<i64>,
}

/// Marks a stream live or idle and emits `stream.started` / `stream.idle` when that changes.
async fn set_active(
    State(state): State<AppState>,
    AdminPrincipal(principal): AdminPrincipal,
    Path(id): Path<String>,
    JsonBody(payload): JsonBody<SetActivePayload>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let stream = repo::get_for_update(state.db(), &mut tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if payload.active && stream.suspended {
        return Err(ApiError::Forbidden("the stream is suspended".into()));
    }
    if repo::set_active(&mut tx, &principal.project_id, &id, payload.active, now).await? {
        let stream = repo::get(&mut *tx, &principal.project_id, &id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let event = if payload.active {
            EventType::StreamStarted
        } else {
            EventType::StreamIdle
        };
        events::emit(
            &mut tx,
            NewEvent {
                project_id: &stream.project_id,
                user_id: &stream.user_id,
                event,
                stream: Some(&stream),
                payload: None,
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    state.wake_webhooks();
    Ok(StatusCode::NO_CONTENT)
}
