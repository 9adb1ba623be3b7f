//! `/task`: background work of the project, read-only (tasks are spawned by the server).

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Task, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Query;
use crate::http::list::{ListParams, ListRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
}

/// List the project's tasks, most recently updated first.
#[utoipa::path(get, path = "/task", tag = "task", operation_id = "getTasks",
    params(ListParams),
    responses((status = 200, body = Vec<Task>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    let (tasks, page) = repo::list(state.db(), &principal.project_id, &req).await?;
    Ok(req.respond(tasks, page, &uri, state.public_url()))
}

/// Get a task.
#[utoipa::path(get, path = "/task/{id}", tag = "task", operation_id = "getTask",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Task>> {
    let task = repo::get(state.db(), &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(task))
}
