//! `/hls/{playbackId}/...`: HLS playlists and segments, served from the object store.
//!
//! Any origin may fetch them (players run on other sites); playlists are short-lived in caches,
//! segments are immutable (their names are never reused). Streams whose playback policy needs
//! credentials (`jwt`, `webhook`) are not served until the playback gate exists: refused, never
//! open.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::error::ApiError;
use crate::streams::model::PlaybackPolicyType;

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const SEGMENT_TYPE: &str = "video/mp2t";

/// The object-store key of an HLS file of `playback_id`.
pub fn key(playback_id: &str, path: &str) -> String {
    format!("hls/{playback_id}/{path}")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hls/{playback_id}/{file}", get(serve_top))
        .route("/hls/{playback_id}/{rendition}/{file}", get(serve_rendition))
}

async fn serve_top(State(state): State<AppState>, Path((playback_id, file)): Path<(String, String)>) -> Result<Response, ApiError> {
    serve(&state, &playback_id, &file).await
}

async fn serve_rendition(
    State(state): State<AppState>,
    Path((playback_id, rendition, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    serve(&state, &playback_id, &format!("{rendition}/{file}")).await
}

async fn serve(state: &AppState, playback_id: &str, path: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such playlist or segment".into());
    let content_type = if path.ends_with(".m3u8") {
        PLAYLIST_TYPE
    } else if path.ends_with(".ts") {
        SEGMENT_TYPE
    } else {
        return Err(not_found());
    };
    if playback_id.len() > 64 || studio_media_core::store::validate_key(&key(playback_id, path)).is_err() {
        return Err(not_found());
    }
    let stream = crate::streams::repo::find_by_playback_id(state.db(), playback_id).await?.ok_or_else(not_found)?;
    if stream.suspended {
        return Err(not_found());
    }
    if stream.playback_policy.as_ref().is_some_and(|p| p.kind != PlaybackPolicyType::Public) {
        return Err(ApiError::Unauthorized(
            "this stream's playback policy requires credentials, which this server cannot check yet".into(),
        ));
    }
    let body = state
        .media_store()
        .get(&key(playback_id, path))
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?
        .ok_or_else(not_found)?;
    let cache = if content_type == PLAYLIST_TYPE { "no-cache" } else { "public, max-age=31536000, immutable" };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // Requests with an `Origin` get it echoed by the CORS layer (credentials allowed); others may
    // be read from anywhere.
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}
