//! `/asset`: listing and reading the project's assets.

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Asset, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Query;
use crate::http::list::{ListParams, ListRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assets))
        .routes(routes!(get_asset))
        .routes(routes!(super::upload::request_upload))
        .routes(routes!(super::import::upload_url))
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
