//! `/session` and `/stream/{id}/sessions`.

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Session, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Query;
use crate::http::list::{ListParams, ListRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(get_session))
        .routes(routes!(list_stream_sessions))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionListQuery {
    /// Only sessions of this stream.
    #[serde(rename = "parentId")]
    parent_id: Option<String>,
}

/// List the project's sessions, newest first.
#[utoipa::path(get, path = "/session", tag = "session", operation_id = "getSessions",
    params(SessionListQuery, ListParams),
    responses((status = 200, body = Vec<Session>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_sessions(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<SessionListQuery>,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    let (mut sessions, page) = repo::list(
        state.db(),
        &principal.project_id,
        query.parent_id.as_deref(),
        false,
        &req,
    )
    .await?;
    super::describe_recordings(&state, &principal.project_id, &mut sessions).await?;
    Ok(req.respond(sessions, page, &uri, state.public_url()))
}

/// Get a session.
#[utoipa::path(get, path = "/session/{id}", tag = "session", operation_id = "getSession",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Session>> {
    let session = repo::get(state.db(), &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut sessions = [session];
    super::describe_recordings(&state, &principal.project_id, &mut sessions).await?;
    let [session] = sessions;
    Ok(Json(session))
}

/// The sessions of a stream that delivered media, newest first.
#[utoipa::path(get, path = "/stream/{parentId}/sessions", tag = "session", operation_id = "getRecordedSessions",
    params(("parentId" = String, Path, description = "Stream id"), ListParams),
    responses((status = 200, body = Vec<Session>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_stream_sessions(
    State(state): State<AppState>,
    principal: Principal,
    Path(parent_id): Path<String>,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    crate::streams::repo::get(state.db().reader(), &principal.project_id, &parent_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (mut sessions, page) = repo::list(
        state.db(),
        &principal.project_id,
        Some(&parent_id),
        true,
        &req,
    )
    .await?;
    super::describe_recordings(&state, &principal.project_id, &mut sessions).await?;
    Ok(req.respond(sessions, page, &uri, state.public_url()))
}
