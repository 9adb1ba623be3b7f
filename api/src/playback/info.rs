//! `GET /api/playback/{id}`: where and how to play a playback id. No authentication: players call it.
//!
//! The id is looked up as a stream's playback id (`live`), an asset's (`vod`: MP4 first, then
//! HLS), then a session id (`recording`: its recording's HLS).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::assets::{Asset, AssetPhase, FileKind};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::streams::model::PlaybackPolicy;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PlaybackInfo)]
pub struct PlaybackInfo {
    #[serde(rename = "type")]
    pub kind: PlaybackType,
    pub meta: PlaybackMeta,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackType {
    Live,
    Vod,
    Recording,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaybackMeta {
    /// 1 while a live stream is being received, else 0 (live only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<i64>,
    /// The content's policy: omitted for a live stream without one, `null` for VOD without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PlaybackPolicy>)]
    pub playback_policy: Option<Option<PlaybackPolicy>>,
    pub source: Vec<PlaybackSource>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackSource {
    pub hrn: SourceName,
    #[serde(rename = "type")]
    pub kind: SourceType,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<i64>,
}

/// Human-readable source names (Studio's closed list).
// This server serves HLS, MP4 and WebRTC; the others are Studio's.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum SourceName {
    #[serde(rename = "HLS (TS)")]
    Hls,
    #[serde(rename = "MP4")]
    Mp4,
    #[serde(rename = "WebRTC (H264)")]
    WebRtc,
    #[serde(rename = "FLV (H264)")]
    Flv,
    #[serde(rename = "Thumbnail (JPEG)")]
    ThumbnailJpeg,
    #[serde(rename = "Thumbnail (PNG)")]
    ThumbnailPng,
    #[serde(rename = "Thumbnails")]
    Thumbnails,
}

/// Source MIME types (Studio's closed list).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum SourceType {
    #[serde(rename = "html5/application/vnd.apple.mpegurl")]
    Hls,
    #[serde(rename = "html5/video/mp4")]
    Mp4,
    #[serde(rename = "html5/video/h264")]
    WebRtc,
    #[serde(rename = "video/x-flv")]
    Flv,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "text/vtt")]
    Vtt,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_playback_info))
}

/// Playback URLs for a playback id.
#[utoipa::path(get, path = "/playback/{id}", tag = "playback", operation_id = "getPlaybackInfo",
    params(("id" = String, Path, description = "The playback id")),
    security(()),
    responses((status = 200, body = PlaybackInfo), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The asset is not ready for playback")))]
async fn get_playback_info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PlaybackInfo>> {
    let not_found = || {
        let shown: String = id.chars().take(64).collect();
        ApiError::NotFound(format!("No playback URL found for {shown}"))
    };
    if id.len() > 128 {
        return Err(not_found());
    }
    let base = state.media_base_url();
    let Some(stream) = crate::streams::repo::find_by_playback_id(state.db(), &id).await? else {
        if let Some(asset) = crate::assets::repo::find_by_playback_id(state.db(), &id).await? {
            return Ok(Json(vod_info(asset, base)?));
        }
        // A session id plays its recording.
        if let Some(recording) = crate::assets::repo::find_recording(state.db(), &id).await? {
            let mut info = vod_info(recording, base)?;
            info.kind = PlaybackType::Recording;
            info.meta
                .source
                .retain(|s| matches!(s.hrn, SourceName::Hls));
            return Ok(Json(info));
        }
        return Err(not_found());
    };
    if stream.suspended {
        return Err(not_found());
    }
    // HLS, then WebRTC (WHEP) as Studio lists them; WHEP is answered by this server (the node
    // that holds the ingest), not by the media store.
    let source = vec![
        PlaybackSource {
            hrn: SourceName::Hls,
            kind: SourceType::Hls,
            url: format!("{base}/hls/{}/index.m3u8", stream.playback_id),
            size: None,
            width: None,
            height: None,
            bitrate: None,
        },
        PlaybackSource {
            hrn: SourceName::WebRtc,
            kind: SourceType::WebRtc,
            url: format!("{}/webrtc/{}", state.public_url(), stream.playback_id),
            size: None,
            width: None,
            height: None,
            bitrate: None,
        },
    ];
    Ok(Json(PlaybackInfo {
        kind: PlaybackType::Live,
        meta: PlaybackMeta {
            live: Some(stream.is_active as i64),
            playback_policy: stream.playback_policy.map(Some),
            source,
        },
    }))
}

/// An asset's sources: its MP4s (highest bitrate first), then its HLS playlist, then its
/// thumbnails' WebVTT index. Not ready yet: 422.
fn vod_info(asset: Asset, base: &str) -> ApiResult<PlaybackInfo> {
    if asset.status.phase != AssetPhase::Ready {
        return Err(ApiError::invalid("asset is not ready for playback"));
    }
    let mut source = Vec::new();
    let mut mp4s: Vec<_> = asset
        .files
        .iter()
        .filter(|f| f.kind == FileKind::StaticTranscodedMp4)
        .collect();
    // Best first: players that take the first MP4 get the highest quality.
    mp4s.sort_by_key(|f| std::cmp::Reverse(f.bitrate.unwrap_or(0)));
    for mp4 in mp4s {
        source.push(PlaybackSource {
            hrn: SourceName::Mp4,
            kind: SourceType::Mp4,
            url: format!("{base}/{}", mp4.path),
            size: mp4.size,
            width: mp4.width,
            height: mp4.height,
            bitrate: mp4.bitrate,
        });
    }
    if let Some(hls) = asset.file(FileKind::CatalystHlsManifest) {
        source.push(PlaybackSource {
            hrn: SourceName::Hls,
            kind: SourceType::Hls,
            url: format!("{base}/{}", hls.path),
            size: None,
            width: None,
            height: None,
            bitrate: None,
        });
    }
    if let Some(vtt) = asset.file(FileKind::ThumbnailsVtt) {
        source.push(PlaybackSource {
            hrn: SourceName::Thumbnails,
            kind: SourceType::Vtt,
            url: format!("{base}/{}", vtt.path),
            size: None,
            width: None,
            height: None,
            bitrate: None,
        });
    }
    Ok(PlaybackInfo {
        kind: PlaybackType::Vod,
        meta: PlaybackMeta {
            live: None,
            playback_policy: Some(asset.playback_policy),
            source,
        },
    })
}
