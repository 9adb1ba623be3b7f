//! WHIP and WHEP over HTTP: `POST {public_url}/webrtc/{id}` with an SDP offer answers `201` with
//! the SDP answer and a `Location` for the session, which `DELETE` ends.
//!
//! One path serves both directions, as in Studio: `{id}` is a stream key (WHIP: the peer
//! publishes, authorized as an RTMP or SRT publish is) or else a playback ID (WHEP: the peer
//! plays the stream live from this node, through the playback gate). Media flows on the WebRTC
//! port (`webrtc_addr`), see `studio_media_core::webrtc`. CORS, preflights included, comes from
//! the HTTP layer, which exposes `Location`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use studio_media_core::ingest::{IngestProtocol, PublishRequest};
use studio_media_core::webrtc::publish::PublishPeer;
use studio_media_core::webrtc::{Answer, OfferError};

use crate::access_control::{Content, Credentials};
use crate::app::AppState;
use crate::error::ApiError;
use crate::http::ClientAddr;

const SDP_TYPE: &str = "application/sdp";
/// Longest stream key or playback ID looked up.
const MAX_ID_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webrtc/{id}", post(offer))
        .route("/webrtc/{id}/{session}", delete(end))
}

/// A WHIP or WHEP offer.
async fn offer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(SDP_TYPE));
    if !is_sdp {
        return Err(ApiError::UnsupportedMediaType(format!(
            "an SDP offer is sent with Content-Type: {SDP_TYPE}"
        )));
    }
    let not_found = || ApiError::NotFound("no stream with this stream key or playback ID".into());
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(not_found());
    }
    let Some(webrtc) = state.webrtc() else {
        return Err(ApiError::Unavailable("WebRTC is not running".into()));
    };
    let Ok(offer) = std::str::from_utf8(&body) else {
        return Err(ApiError::BadRequest("the SDP offer is not UTF-8".into()));
    };
    let request = PublishRequest {
        stream_key: id.clone(),
        remote_addr: std::net::SocketAddr::new(client, 0),
        protocol: IngestProtocol::Webrtc,
    };
    let answer = match crate::live::ingest::check_publish(&state, &request).await {
        Ok(Some(grant)) => webrtc.publish(
            offer,
            PublishPeer {
                stream_key: id.clone(),
                grant,
                remote_addr: request.remote_addr,
            },
        ),
        Err(refusal) => {
            return Err(match refusal.reason.as_str() {
                "the stream already has a publisher" => ApiError::Conflict(refusal.reason),
                "temporary server error" => ApiError::Unavailable(refusal.reason),
                _ => ApiError::Forbidden(refusal.reason),
            });
        }
        Ok(None) => {
            let stream = crate::streams::repo::find_by_playback_id(state.db(), &id)
                .await?
                .filter(|s| !s.suspended)
                .ok_or_else(not_found)?;
            let credentials = Credentials::read(query.as_deref(), &headers);
            let content = Content {
                project_id: &stream.project_id,
                playback_id: &stream.playback_id,
                policy: stream.playback_policy.as_ref(),
            };
            state.gate().admit(&content, &credentials).await?;
            let feed = state.live().webrtc_feed(&stream.id).ok_or_else(|| {
                ApiError::NotFound("the stream is not live on this server".into())
            })?;
            if feed.subscribers() >= state.config().webrtc.max_viewers_per_stream {
                return Err(ApiError::Unavailable(
                    "this stream has as many WebRTC viewers as this server takes; play its HLS"
                        .into(),
                ));
            }
            webrtc.play(offer, feed)
        }
    };
    let Answer { sdp, peer_id } = answer.map_err(|err| match err {
        OfferError::TooLarge { .. } => ApiError::PayloadTooLarge(err.to_string()),
        OfferError::Malformed(_) => ApiError::BadRequest(err.to_string()),
        OfferError::NoUsableMedia(_) => ApiError::invalid(err.to_string()),
        OfferError::Full | OfferError::Closed => ApiError::Unavailable(err.to_string()),
    })?;
    let location = format!("/webrtc/{id}/{peer_id}");
    let mut response = (StatusCode::CREATED, sdp).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP_TYPE));
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Ends a WHIP or WHEP session (RFC 9725 section 4.2).
async fn end(
    State(state): State<AppState>,
    Path((_id, session)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    match state.webrtc() {
        Some(webrtc) if session.len() <= MAX_ID_LEN && webrtc.close(&session) => Ok(StatusCode::OK),
        _ => Err(ApiError::NotFound("no such WebRTC session".into())),
    }
}
