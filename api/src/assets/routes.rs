//! `/asset`: listing and reading the project's assets.

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Asset, AssetPhase, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Query;
use crate::http::list::{ListParams, ListRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assets))
        .routes(routes!(get_asset, update_asset, delete_asset))
        .routes(routes!(super::upload::request_upload))
        .routes(routes!(super::import::upload_url))
        .routes(routes!(super::transcode::transcode))
}

/// Routes that take a whole file in their body: outside the API's request timeout and body
/// limit (they bound their own size and idle time), relative to `/api`.
pub fn upload_router() -> OpenApiRouter<AppState> {
    use super::tus;
    use axum::routing::{head, post};
    OpenApiRouter::new()
        .routes(routes!(super::upload::upload_direct))
        // TUS 1.0.0 (the tusEndpoint of request-upload), described by its own protocol.
        .route("/asset/upload/tus", post(tus::create).options(tus::options))
        .route(
            "/asset/upload/tus/{id}",
            head(tus::head)
                .patch(tus::patch)
                .delete(tus::delete)
                .options(tus::options),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AssetListQuery {
    /// Only the asset with this playback id.
    #[serde(rename = "playbackId")]
    playback_id: Option<String>,
    /// Only assets imported from this URL.
    #[serde(rename = "sourceUrl")]
    source_url: Option<String>,
    /// Only assets in this phase.
    phase: Option<String>,
    /// `1` or `true` includes `videoSpec.tracks`.
    details: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AssetQuery {
    /// `1` or `true` includes `videoSpec.tracks`.
    details: Option<String>,
}

fn wants_details(value: Option<&str>) -> bool {
    matches!(value, Some("1") | Some("true"))
}

/// List the project's assets, most recently updated first.
#[utoipa::path(get, path = "/asset", tag = "asset", operation_id = "getAssets",
    params(AssetListQuery, ListParams),
    responses((status = 200, body = Vec<Asset>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_assets(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AssetListQuery>,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &repo::LIST_SPEC)?;
    let shortcuts = repo::Shortcuts {
        playback_id: query.playback_id.as_deref(),
        source_url: query.source_url.as_deref(),
        phase: query.phase.as_deref(),
    };
    let (assets, page) = repo::list(state.db(), &principal.project_id, &shortcuts, &req).await?;
    let details = wants_details(query.details.as_deref());
    let assets: Vec<Asset> = assets
        .into_iter()
        .map(|a| a.for_response(state.public_url(), details))
        .collect();
    Ok(req.respond(assets, page, &uri, state.public_url()))
}

/// Get an asset.
#[utoipa::path(get, path = "/asset/{id}", tag = "asset", operation_id = "getAsset",
    params(("id" = String, Path, description = "Asset id (a recording's is its session's id)"), AssetQuery),
    responses((status = 200, body = Asset), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_asset(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<AssetQuery>,
) -> ApiResult<Json<Asset>> {
    let asset = repo::get(state.db().reader(), &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(asset.for_response(
        state.public_url(),
        wants_details(query.details.as_deref()),
    )))
}

/// What `PATCH /asset/{id}` takes (Studio's `asset-patch-payload`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AssetPatchPayload)]
pub struct AssetPatchPayload {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::streams::model::nullable")]
    #[schema(value_type = Option<crate::streams::model::CreatorIdInput>)]
    pub creator_id: Option<Option<crate::streams::model::CreatorIdInput>>,
    #[serde(default, deserialize_with = "crate::streams::model::nullable")]
    #[schema(value_type = Option<crate::streams::model::PlaybackPolicy>)]
    pub playback_policy: Option<Option<crate::streams::model::PlaybackPolicy>>,
    /// IPFS export (not supported by this server).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub storage: Option<serde_json::Value>,
}

fn is_public(policy: Option<&crate::streams::model::PlaybackPolicy>) -> bool {
    policy.is_none_or(|p| p.kind == crate::streams::model::PlaybackPolicyType::Public)
}

/// Change an asset's name, creator or playback policy.
#[utoipa::path(patch, path = "/asset/{id}", tag = "asset", operation_id = "updateAsset",
    params(("id" = String, Path, description = "Asset id")),
    request_body = AssetPatchPayload,
    responses((status = 200, body = Asset), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_asset(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    crate::http::json::JsonBody(patch): crate::http::json::JsonBody<AssetPatchPayload>,
) -> ApiResult<Json<Asset>> {
    use crate::http::validate::Problems;
    let mut problems = Problems::default();
    if let Some(name) = &patch.name {
        crate::streams::model::validate_name(&mut problems, name);
    }
    if let Some(Some(creator)) = &patch.creator_id {
        crate::streams::model::validate_creator_id(&mut problems, creator);
    }
    if let Some(Some(policy)) = &patch.playback_policy {
        crate::streams::model::validate_playback_policy(&mut problems, policy);
    }
    if patch
        .storage
        .as_ref()
        .and_then(|s| s.get("ipfs"))
        .is_some_and(|ipfs| !ipfs.is_null() && ipfs != &serde_json::Value::Bool(false))
    {
        problems.add("storage.ipfs: IPFS export is not supported by this server");
    }
    problems.into_result()?;
    let now = crate::clock::now_ms();
    let mut tx = state.db().begin().await?;
    let asset = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if asset.status.phase != AssetPhase::Ready {
        return Err(ApiError::invalid(format!(
            "the asset is {}: only ready assets can be changed",
            asset.status.phase.as_str()
        )));
    }
    if let Some(policy) = &patch.playback_policy {
        if is_public(asset.playback_policy.as_ref()) != is_public(policy.as_ref()) {
            return Err(ApiError::invalid(
                "playbackPolicy cannot switch between public and gated (jwt or webhook) content",
            ));
        }
        if let Some(policy) = policy {
            crate::streams::routes::check_policy_webhook(&mut tx, &principal, policy).await?;
        }
    }
    let creator = patch
        .creator_id
        .map(|c| c.map(crate::streams::model::CreatorIdInput::into_creator_id));
    repo::update(
        &mut tx,
        &principal.project_id,
        &id,
        &repo::AssetChanges {
            name: patch.name.as_deref(),
            creator_id: creator.as_ref().map(Option::as_ref),
            playback_policy: patch.playback_policy.as_ref().map(Option::as_ref),
        },
        now,
    )
    .await?;
    let updated = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    super::emit(
        &mut tx,
        &updated,
        crate::events::EventType::AssetUpdated,
        state.public_url(),
        now,
    )
    .await?;
    tx.commit().await?;
    state.wake_webhooks();
    Ok(Json(updated.for_response(state.public_url(), false)))
}

/// Delete an asset: it stops playing at once, its media is removed in the background.
#[utoipa::path(delete, path = "/asset/{id}", tag = "asset", operation_id = "deleteAsset",
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_asset(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let now = crate::clock::now_ms();
    let mut tx = state.db().begin().await?;
    let asset = repo::get(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !repo::mark_deleted(&mut tx, &principal.project_id, &id, now).await? {
        return Err(ApiError::not_found());
    }
    let deleted = repo::get_any(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    super::emit(
        &mut tx,
        &deleted,
        crate::events::EventType::AssetDeleted,
        state.public_url(),
        now,
    )
    .await?;
    let mut purge = crate::tasks::repo::NewTask::new(
        &asset.project_id,
        &asset.user_id,
        crate::tasks::TaskType::PurgeAsset,
        serde_json::json!({}),
    );
    purge.output_asset_id = Some(id.clone());
    purge.unique_key = Some(id.clone());
    purge.max_attempts = 20;
    crate::tasks::repo::spawn(&mut tx, &purge, now).await?;
    tx.commit().await?;
    state.wake_webhooks();
    state.wake_tasks();
    Ok(axum::http::StatusCode::NO_CONTENT)
}
