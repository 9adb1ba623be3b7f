//! Multistream targets: RTMP(S) or SRT destinations a stream is re-published to.
//!
//! The `url` holds the destination's stream key, so it is write-only: never returned.

use crate::http::json::Query;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::db::{self, Tx};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::http::list::{FieldKind, ListParams, ListRequest, ListSpec, Sql, field};
use crate::http::validate::Problems;
use crate::streams;

/// A destination the stream is re-published to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MultistreamTarget)]
pub struct MultistreamTarget {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = MultistreamTargetInput)]
pub struct NewTargetPayload {
    /// Defaults to the URL's host.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    /// `rtmp://`, `rtmps://` or `srt://` URL with the destination's stream key. Write-only.
    #[schema(pattern = "^(srt|rtmps?)://", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub disabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = MultistreamTargetPatchPayload)]
pub struct TargetPatchPayload {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^(srt|rtmps?)://", max_length = 2048)]
    pub url: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

const COLUMNS: &str = "id, project_id, user_id, name, disabled, created_at";

const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("disabled", "disabled", FieldKind::Bool),
        field("createdAt", "created_at", FieldKind::Number),
        field("userId", "user_id", FieldKind::Text),
    ],
    default_order: &[("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<MultistreamTarget, sqlx::Error> {
    Ok(MultistreamTarget {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        disabled: db::get_bool(row, "disabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn default_name(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "multistream target".into())
}

/// Creates a target in `tx` from a validated name and URL.
pub async fn insert(
    tx: &mut Tx,
    principal: &Principal,
    name: Option<&str>,
    url: &str,
    disabled: bool,
    now: i64,
) -> ApiResult<MultistreamTarget> {
    let target = MultistreamTarget {
        id: crate::ids::new_id(),
        name: name
            .map(str::to_string)
            .unwrap_or_else(|| default_name(url)),
        user_id: principal.user_id.clone(),
        project_id: principal.project_id.clone(),
        disabled,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO multistream_targets (id, project_id, user_id, name, url, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&target.id)
    .bind(&target.project_id)
    .bind(&target.user_id)
    .bind(&target.name)
    .bind(url)
    .bind(disabled as i64)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(target)
}

/// The target `id` of `project_id`.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<MultistreamTarget>> {
    let sql =
        format!("SELECT {COLUMNS} FROM multistream_targets WHERE project_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_target, list_targets))
        .routes(routes!(get_target, update_target, delete_target))
}

/// Create a multistream target.
#[utoipa::path(post, path = "/multistream/target", tag = "multistream", operation_id = "createMultistreamTarget",
    request_body = NewTargetPayload,
    responses((status = 201, body = MultistreamTarget), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_target(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<NewTargetPayload>,
) -> ApiResult<(StatusCode, Json<MultistreamTarget>)> {
    let mut problems = Problems::default();
    streams::model::validate_target_spec(&mut problems, "", payload.name.as_deref(), &payload.url);
    problems.into_result()?;
    let mut tx = state.db().begin().await?;
    let target = insert(
        &mut tx,
        &principal,
        payload.name.as_deref(),
        &payload.url,
        payload.disabled.unwrap_or(false),
        now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(target)))
}

/// List the project's multistream targets.
#[utoipa::path(get, path = "/multistream/target", tag = "multistream", operation_id = "getMultistreamTargets",
    params(ListParams),
    responses((status = 200, body = Vec<MultistreamTarget>), (status = 401, body = ErrorBody), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_targets(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &LIST_SPEC)?;
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(&principal.project_id);
    let (rows, page) = req
        .fetch(state.db(), COLUMNS, "multistream_targets", scope)
        .await?;
    let targets = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(req.respond(targets, page, &uri, state.public_url()))
}

/// Get a multistream target.
#[utoipa::path(get, path = "/multistream/target/{id}", tag = "multistream", operation_id = "getMultistreamTarget",
    params(("id" = String, Path, description = "Multistream target id")),
    responses((status = 200, body = MultistreamTarget), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MultistreamTarget>> {
    get(state.db().reader(), &principal.project_id, &id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Update a multistream target.
#[utoipa::path(patch, path = "/multistream/target/{id}", tag = "multistream", operation_id = "updateMultistreamTarget",
    params(("id" = String, Path, description = "Multistream target id")),
    request_body = TargetPatchPayload,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<TargetPatchPayload>,
) -> ApiResult<StatusCode> {
    let mut problems = Problems::default();
    if let Some(name) = &patch.name {
        problems.text_len("name", name, 1, streams::model::MAX_NAME_LEN);
    }
    if let Some(url) = &patch.url {
        streams::model::validate_target_spec(&mut problems, "", None, url);
    }
    problems.into_result()?;
    let mut tx = state.db().begin().await?;
    let mut target = get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if let Some(name) = patch.name {
        target.name = name;
    }
    if let Some(disabled) = patch.disabled {
        target.disabled = disabled;
    }
    let mut sql = Sql::new("UPDATE multistream_targets SET name = ");
    sql.bind(&target.name)
        .push(", disabled = ")
        .bind(target.disabled);
    if let Some(url) = &patch.url {
        sql.push(", url = ").bind(url);
    }
    sql.push(" WHERE project_id = ")
        .bind(&principal.project_id)
        .push(" AND id = ")
        .bind(&id);
    sql.query().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a multistream target; streams that referenced it stop doing so.
#[utoipa::path(delete, path = "/multistream/target/{id}", tag = "multistream", operation_id = "deleteMultistreamTarget",
    params(("id" = String, Path, description = "Multistream target id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let deleted = sqlx::query("DELETE FROM multistream_targets WHERE project_id = $1 AND id = $2")
        .bind(&principal.project_id)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found());
    }
    for stream in streams::repo::referencing_target(&mut tx, &principal.project_id, &id).await? {
        let mut multistream = stream.multistream.clone();
        if let Some(m) = multistream.as_mut() {
            m.targets.retain(|t| t.id != id);
        }
        streams::repo::save_multistream(
            &mut tx,
            &principal.project_id,
            &stream.id,
            &multistream,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
