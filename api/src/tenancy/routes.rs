//! `/project` and `/api-token`: admin keys manage their user's projects and API keys.

use crate::http::json::Query;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::accounts::{self, ApiKey, KEY_COLUMNS, PROJECT_COLUMNS, Project};
use crate::app::AppState;
use crate::auth::{AdminPrincipal, KeyAccess};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::http::list::{FieldKind, ListParams, ListRequest, ListSpec, Sql, field};
use crate::http::validate::{Problems, is_origin};

const PROJECT_LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("createdAt", "created_at", FieldKind::Number),
    ],
    default_order: &[("created_at", true)],
};

const KEY_LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("projectId", "project_id", FieldKind::Text),
        field("createdAt", "created_at", FieldKind::Number),
        field("lastSeen", "last_seen", FieldKind::Number),
    ],
    default_order: &[("created_at", true)],
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, delete_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPayload {
    pub name: String,
}

/// Create a project.
#[utoipa::path(post, path = "/project", tag = "admin", operation_id = "createProject", request_body = ProjectPayload,
    responses((status = 201, body = Project), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_project(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    JsonBody(payload): JsonBody<ProjectPayload>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let mut problems = Problems::default();
    problems.text_len("name", &payload.name, 1, 200);
    problems.into_result()?;
    let mut tx = state.db().begin().await?;
    let project = match accounts::create_project(&mut tx, &admin.user_id, &payload.name).await {
        Err(err) if crate::db::is_unique_violation(&err) => {
            return Err(ApiError::Conflict(format!(
                "a project named {:?} already exists",
                payload.name
            )));
        }
        other => other?,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// List the user's projects.
#[utoipa::path(get, path = "/project", tag = "admin", operation_id = "getProjects", params(ListParams),
    responses((status = 200, body = Vec<Project>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_projects(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &PROJECT_LIST_SPEC)?;
    let mut scope = Sql::new(" WHERE user_id = ");
    scope.bind(&admin.user_id).push(" AND deleted = 0");
    let (rows, page) = req
        .fetch(state.db(), PROJECT_COLUMNS, "projects", scope)
        .await?;
    let projects = rows
        .iter()
        .map(accounts::project_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(req.respond(projects, page, &uri, state.public_url()))
}

async fn load_project(state: &AppState, user_id: &str, id: &str) -> ApiResult<Project> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE user_id = $1 AND id = $2 AND deleted = 0"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(id)
        .fetch_optional(state.db().reader())
        .await?;
    row.as_ref()
        .map(accounts::project_from_row)
        .transpose()?
        .ok_or_else(ApiError::not_found)
}

/// Get a project.
#[utoipa::path(get, path = "/project/{id}", tag = "admin", operation_id = "getProject", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = Project), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_project(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Path(id): Path<String>,
) -> ApiResult<Json<Project>> {
    load_project(&state, &admin.user_id, &id).await.map(Json)
}

/// Rename a project.
#[utoipa::path(patch, path = "/project/{id}", tag = "admin", operation_id = "updateProject", params(("id" = String, Path, description = "Project id")),
    request_body = ProjectPayload,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_project(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Path(id): Path<String>,
    JsonBody(payload): JsonBody<ProjectPayload>,
) -> ApiResult<StatusCode> {
    let mut problems = Problems::default();
    problems.text_len("name", &payload.name, 1, 200);
    problems.into_result()?;
    load_project(&state, &admin.user_id, &id).await?;
    let result =
        sqlx::query("UPDATE projects SET name = $1 WHERE user_id = $2 AND id = $3 AND deleted = 0")
            .bind(&payload.name)
            .bind(&admin.user_id)
            .bind(&id)
            .execute(state.db().writer())
            .await;
    match result {
        Err(err) if crate::db::is_unique_violation(&err) => Err(ApiError::Conflict(format!(
            "a project named {:?} already exists",
            payload.name
        ))),
        Err(err) => Err(err.into()),
        Ok(_) => Ok(StatusCode::NO_CONTENT),
    }
}

/// Delete a project: its API keys stop working at once and its resources are no longer reachable.
#[utoipa::path(delete, path = "/project/{id}", tag = "admin", operation_id = "deleteProject", params(("id" = String, Path, description = "Project id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_project(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == admin.project_id {
        return Err(ApiError::BadRequest(
            "an API key cannot delete its own project: use a key of another project".into(),
        ));
    }
    let done = sqlx::query(
        "UPDATE projects SET deleted = 1 WHERE user_id = $1 AND id = $2 AND deleted = 0",
    )
    .bind(&admin.user_id)
    .bind(&id)
    .execute(state.db().writer())
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found());
    }
    crate::auth::cache::announce_revocation(state.key_cache(), state.db()).await;
    // Nothing of a deleted project stays on the air: its publishers on this node are cut.
    let streams: Vec<String> =
        sqlx::query_scalar("SELECT id FROM streams WHERE project_id = $1 AND deleted = 0")
            .bind(&id)
            .fetch_all(state.db().reader())
            .await?;
    for stream in &streams {
        state.live().disconnect(stream);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyPayload {
    pub name: String,
    /// The project of the new key; defaults to the calling key's.
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub admin: Option<bool>,
    #[serde(default)]
    pub access: Option<KeyAccess>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KeyQuery {
    /// Create the key in this project (Studio's form); the body's `projectId` wins.
    #[serde(rename = "projectId")]
    project_id: Option<String>,
}

/// Create an API key. The response is the only place its secret (`key`) appears.
#[utoipa::path(post, path = "/api-token", tag = "admin", operation_id = "createApiToken", params(KeyQuery), request_body = ApiKeyPayload,
    responses((status = 201, body = ApiKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Query(query): Query<KeyQuery>,
    JsonBody(payload): JsonBody<ApiKeyPayload>,
) -> ApiResult<(StatusCode, Json<ApiKey>)> {
    let mut problems = Problems::default();
    problems.text_len("name", &payload.name, 1, 200);
    if let Some(cors) = payload.access.as_ref().and_then(|a| a.cors.as_ref()) {
        if cors.allowed_origins.len() > 100 {
            problems.add("access.cors.allowedOrigins must have at most 100 entries");
        }
        for (i, origin) in cors.allowed_origins.iter().enumerate().take(100) {
            if !is_origin(origin) {
                problems.add(format!("access.cors.allowedOrigins[{i}] must be \"*\" or an origin like https://example.com"));
            }
        }
        if payload.admin == Some(true) && !cors.allowed_origins.is_empty() {
            problems.add("access.cors: an admin key cannot be used from browsers");
        }
    }
    problems.into_result()?;
    let project_id = payload
        .project_id
        .or(query.project_id)
        .unwrap_or_else(|| admin.project_id.clone());
    load_project(&state, &admin.user_id, &project_id).await?;
    let mut tx = state.db().begin().await?;
    let key = accounts::create_key(
        &mut tx,
        &admin.user_id,
        &project_id,
        &payload.name,
        payload.admin.unwrap_or(false),
        payload.access,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// List the user's API keys (never their secrets).
#[utoipa::path(get, path = "/api-token", tag = "admin", operation_id = "getApiTokens", params(ListParams),
    responses((status = 200, body = Vec<ApiKey>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &KEY_LIST_SPEC)?;
    let mut scope = Sql::new(" WHERE user_id = ");
    // Keys of deleted projects no longer work: they are not listed either.
    scope
        .bind(&admin.user_id)
        .push(" AND revoked = 0 AND project_id IN (SELECT id FROM projects WHERE deleted = 0)");
    let (rows, page) = req
        .fetch(state.db(), KEY_COLUMNS, "api_keys", scope)
        .await?;
    let keys = rows
        .iter()
        .map(accounts::key_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(req.respond(keys, page, &uri, state.public_url()))
}

/// Get an API key (without its secret).
#[utoipa::path(get, path = "/api-token/{id}", tag = "admin", operation_id = "getApiToken", params(("id" = String, Path, description = "API key id")),
    responses((status = 200, body = ApiKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_key(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND id = $2 AND revoked = 0 \
         AND project_id IN (SELECT id FROM projects WHERE deleted = 0)"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&admin.user_id)
        .bind(&id)
        .fetch_optional(state.db().reader())
        .await?;
    row.as_ref()
        .map(accounts::key_from_row)
        .transpose()?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Revoke an API key. It stops working with the next request.
#[utoipa::path(delete, path = "/api-token/{id}", tag = "admin", operation_id = "deleteApiToken", params(("id" = String, Path, description = "API key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_key(
    State(state): State<AppState>,
    AdminPrincipal(admin): AdminPrincipal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked = 1 WHERE user_id = $1 AND id = $2 AND revoked = 0",
    )
    .bind(&admin.user_id)
    .bind(&id)
    .execute(state.db().writer())
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found());
    }
    crate::auth::cache::announce_revocation(state.key_cache(), state.db()).await;
    // Nothing of a deleted project stays on the air: its publishers on this node are cut.
    let streams: Vec<String> =
        sqlx::query_scalar("SELECT id FROM streams WHERE project_id = $1 AND deleted = 0")
            .bind(&id)
            .fetch_all(state.db().reader())
            .await?;
    for stream in &streams {
        state.live().disconnect(stream);
    }
    Ok(StatusCode::NO_CONTENT)
}
