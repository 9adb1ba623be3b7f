//! `/webhook`: subscriptions and their delivery logs.

use crate::http::json::Query;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use rand::RngCore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::delivery::EventRecord;
use super::model::*;
use super::repo;
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::events::EventType;
use crate::http::json::JsonBody;
use crate::http::list::{ListParams, ListRequest};
use crate::http::validate::Problems;

/// Webhooks a project may have at once; every event fans out to each of them.
pub const MAX_WEBHOOKS_PER_PROJECT: i64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(
            get_webhook,
            replace_webhook,
            patch_webhook,
            delete_webhook
        ))
        .routes(routes!(list_logs))
        .routes(routes!(get_log))
        .routes(routes!(resend_log))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Events from `events`, or the legacy single `event`; at least one, no repeats.
fn events_of(
    events: Option<Vec<EventType>>,
    event: Option<EventType>,
) -> ApiResult<Vec<EventType>> {
    let mut list = events.unwrap_or_default();
    if let Some(e) = event {
        list.push(e);
    }
    let mut unique = Vec::with_capacity(list.len());
    for e in list {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    if unique.is_empty() {
        return Err(ApiError::invalid(format!(
            "events must name at least one event: {}",
            crate::events::ALL_NAMES.join(", ")
        )));
    }
    Ok(unique)
}

/// Create a webhook.
#[utoipa::path(post, path = "/webhook", tag = "webhook", operation_id = "createWebhook",
    request_body = WebhookPayload,
    responses((status = 200, body = Webhook), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<WebhookPayload>,
) -> ApiResult<Json<Webhook>> {
    let mut problems = Problems::default();
    validate(
        &mut problems,
        Some(&payload.name),
        Some(&payload.url),
        payload.events.as_deref(),
        payload.shared_secret.as_deref(),
        payload.stream_id.as_deref(),
    );
    problems.into_result()?;
    let events = events_of(payload.events, payload.event)?;
    let webhook = Webhook {
        id: crate::ids::new_id(),
        name: payload.name,
        kind: "webhook".into(),
        user_id: principal.user_id.clone(),
        project_id: principal.project_id.clone(),
        created_at: now_ms(),
        events,
        url: payload.url,
        shared_secret: payload.shared_secret.unwrap_or_else(new_secret),
        stream_id: payload.stream_id,
        status: WebhookStatus::default(),
    };
    let mut tx = state.db().begin().await?;
    if repo::count(&mut tx, &principal.project_id).await? >= MAX_WEBHOOKS_PER_PROJECT {
        return Err(ApiError::Forbidden(format!(
            "a project can have at most {MAX_WEBHOOKS_PER_PROJECT} webhooks: delete one before creating another"
        )));
    }
    repo::insert(&mut tx, &webhook).await?;
    tx.commit().await?;
    Ok(Json(webhook))
}

/// List the project's webhooks.
#[utoipa::path(get, path = "/webhook", tag = "webhook", operation_id = "getWebhooks",
    params(ListParams),
    responses((status = 200, body = Vec<Webhook>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    let (webhooks, page) = repo::list(state.db(), &principal.project_id, &req).await?;
    Ok(req.respond(webhooks, page, &uri, state.public_url()))
}

/// Get a webhook.
#[utoipa::path(get, path = "/webhook/{id}", tag = "webhook", operation_id = "getWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = Webhook), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    repo::get(state.db().reader(), &principal.project_id, &id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Replace a webhook.
#[utoipa::path(put, path = "/webhook/{id}", tag = "webhook", operation_id = "updateWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = WebhookPayload,
    responses((status = 200, body = Webhook), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(payload): JsonBody<WebhookPayload>,
) -> ApiResult<Json<Webhook>> {
    let mut problems = Problems::default();
    validate(
        &mut problems,
        Some(&payload.name),
        Some(&payload.url),
        payload.events.as_deref(),
        payload.shared_secret.as_deref(),
        payload.stream_id.as_deref(),
    );
    problems.into_result()?;
    let events = events_of(payload.events, payload.event)?;
    let mut tx = state.db().begin().await?;
    let mut webhook = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    webhook.name = payload.name;
    webhook.url = payload.url;
    webhook.events = events;
    // A PUT without a secret keeps the current one: clients that PUT what they read may not have it.
    if let Some(secret) = payload.shared_secret {
        webhook.shared_secret = secret;
    }
    webhook.stream_id = payload.stream_id;
    repo::save(&mut tx, &webhook).await?;
    tx.commit().await?;
    Ok(Json(webhook))
}

/// Change some fields of a webhook.
#[utoipa::path(patch, path = "/webhook/{id}", tag = "webhook", operation_id = "patchWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = WebhookPatch,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> ApiResult<StatusCode> {
    let mut problems = Problems::default();
    validate(
        &mut problems,
        patch.name.as_deref(),
        patch.url.as_deref(),
        patch.events.as_deref(),
        patch.shared_secret.as_deref(),
        patch.stream_id.as_deref(),
    );
    problems.into_result()?;
    let mut tx = state.db().begin().await?;
    let mut webhook = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if let Some(name) = patch.name {
        webhook.name = name;
    }
    if let Some(url) = patch.url {
        webhook.url = url;
    }
    if let Some(events) = patch.events {
        webhook.events = events_of(Some(events), None)?;
    }
    if let Some(secret) = patch.shared_secret {
        webhook.shared_secret = secret;
    }
    if let Some(stream_id) = patch.stream_id {
        webhook.stream_id = Some(stream_id);
    }
    repo::save(&mut tx, &webhook).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a webhook. Pending deliveries to it are dropped.
#[utoipa::path(delete, path = "/webhook/{id}", tag = "webhook", operation_id = "deleteWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = Webhook), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    let mut tx = state.db().begin().await?;
    let webhook = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    repo::soft_delete(&mut tx, &principal.project_id, &id).await?;
    tx.commit().await?;
    Ok(Json(webhook))
}

/// List a webhook's delivery attempts, newest first.
#[utoipa::path(get, path = "/webhook/{id}/log", tag = "webhook", operation_id = "getWebhookLogs",
    params(("id" = String, Path, description = "Webhook id"), ListParams),
    responses((status = 200, body = Vec<WebhookLog>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_logs(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LOG_LIST_SPEC)?;
    repo::get(state.db().reader(), &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (logs, page) = repo::list_logs(state.db(), &principal.project_id, &id, &req).await?;
    Ok(req.respond(logs, page, &uri, state.public_url()))
}

/// Get one delivery attempt.
#[utoipa::path(get, path = "/webhook/{id}/log/{logId}", tag = "webhook", operation_id = "getWebhookLog",
    params(("id" = String, Path, description = "Webhook id"), ("logId" = String, Path, description = "Webhook log id")),
    responses((status = 200, body = WebhookLog), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_log(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, log_id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookLog>> {
    let (log, _) = repo::get_log(state.db(), &principal.project_id, &id, &log_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(log))
}

/// Send the event of a logged attempt again, now, and return the new attempt.
#[utoipa::path(post, path = "/webhook/{id}/log/{logId}/resend", tag = "webhook", operation_id = "resendWebhook",
    params(("id" = String, Path, description = "Webhook id"), ("logId" = String, Path, description = "Webhook log id")),
    responses((status = 200, body = WebhookLog), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn resend_log(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, log_id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookLog>> {
    let webhook = repo::get(state.db().reader(), &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (_, event_id) = repo::get_log(state.db(), &principal.project_id, &id, &log_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let event = EventRecord::load(state.db(), &principal.project_id, &event_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (_, log) = state
        .webhook_sender()
        .attempt(state.db(), &webhook, &event)
        .await?;
    Ok(Json(log))
}
