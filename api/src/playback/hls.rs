//! `/hls/{playbackId}/...`: HLS playlists and segments of streams and assets, and the MP4
//! downloads of assets (`static{height}p0.mp4`, with `Range` support for seeking players),
//! served from the object store.
//!
//! Every request passes the playback gate (`access_control::gate`) first. Public content: any
//! origin may fetch it (players run on other sites), playlists are short-lived in caches and
//! segments immutable (their names are never reused). Gated content is served to admitted viewers
//! only, never kept by shared caches, and its playlists carry the viewer's grant on every URI so
//! that players, which drop the master playlist's query, stay admitted.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::access_control::credentials::GRANT_PARAM;
use crate::access_control::{Admission, Content, Credentials};
use crate::app::AppState;
use crate::error::ApiError;
use crate::http::ClientAddr;
use crate::viewership::{Hit, Media};

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const SEGMENT_TYPE: &str = "video/mp2t";
pub const MP4_TYPE: &str = "video/mp4";

/// The object-store key of an HLS file of `playback_id`.
pub fn key(playback_id: &str, path: &str) -> String {
    format!("hls/{playback_id}/{path}")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hls/{playback_id}/{file}", get(serve_top))
        .route(
            "/hls/{playback_id}/{rendition}/{file}",
            get(serve_rendition),
        )
}

/// Who asks, as the gate and the view counter see them.
struct Viewer<'a> {
    credentials: Credentials,
    headers: &'a HeaderMap,
    address: std::net::IpAddr,
}

impl Viewer<'_> {
    /// The digest views are grouped by: the credential gated content admitted them with, else
    /// their address and user agent.
    fn digest(&self, admission: &Admission) -> [u8; 16] {
        match admission {
            Admission::Granted { viewer, .. } => {
                crate::viewership::collector::viewer_digest(&[b"credential", viewer.as_bytes()])
            }
            Admission::Open => crate::viewership::collector::viewer_digest(&[
                b"address",
                self.address.to_string().as_bytes(),
                self.user_agent().as_bytes(),
            ]),
        }
    }

    fn user_agent(&self) -> &str {
        self.headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Counts `media` of `content` as watched by this viewer (off the request's path).
    fn count(&self, state: &AppState, content: &Served, media: Media) {
        if !state.config().viewership.count_views {
            return;
        }
        let country = crate::viewership::country(&state.config().viewership, self.headers);
        state.views().record(Hit {
            project_id: content.project_id.clone(),
            playback_id: content.playback_id.clone(),
            creator_id: content.creator_id.clone(),
            viewer: self.digest(&content.admission),
            user_agent: self.user_agent().chars().take(512).collect(),
            country,
            media,
            at: crate::clock::now_ms(),
        });
    }
}

async fn serve_top(
    State(state): State<AppState>,
    Path((playback_id, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let viewer = Viewer {
        credentials: Credentials::read(query.as_deref(), &headers),
        headers: &headers,
        address,
    };
    if file.ends_with(".mp4") {
        return serve_mp4(&state, &playback_id, &file, &viewer).await;
    }
    serve(&state, &playback_id, &file, &viewer).await
}

async fn serve_rendition(
    State(state): State<AppState>,
    Path((playback_id, rendition, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let viewer = Viewer {
        credentials: Credentials::read(query.as_deref(), &headers),
        headers: &headers,
        address,
    };
    serve(
        &state,
        &playback_id,
        &format!("{rendition}/{file}"),
        &viewer,
    )
    .await
}

async fn serve(
    state: &AppState,
    playback_id: &str,
    path: &str,
    viewer: &Viewer<'_>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such playlist or segment".into());
    let content_type = if path.ends_with(".m3u8") {
        PLAYLIST_TYPE
    } else if path.ends_with(".ts") {
        SEGMENT_TYPE
    } else if path.ends_with(".jpg") {
        "image/jpeg"
    } else if path.ends_with(".vtt") {
        "text/vtt"
    } else {
        return Err(not_found());
    };
    if playback_id.len() > 64
        || studio_media_core::store::validate_key(&key(playback_id, path)).is_err()
    {
        return Err(not_found());
    }
    let served = admit(state, playback_id, &viewer.credentials).await?;
    let admission = &served.admission;
    let body = state
        .media_store()
        .get(&key(playback_id, path))
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?
        .ok_or_else(not_found)?;
    let listing = content_type == PLAYLIST_TYPE || content_type == "text/vtt";
    if content_type == SEGMENT_TYPE {
        viewer.count(
            state,
            &served,
            Media::Segment {
                path: path.to_string(),
            },
        );
    }
    let cache = match (admission, listing) {
        (Admission::Open, true) => "no-cache",
        (Admission::Open, false) => "public, max-age=31536000, immutable",
        (Admission::Granted { .. }, true) => "private, no-cache",
        (Admission::Granted { .. }, false) => "private, max-age=86400",
    };
    if content_type == PLAYLIST_TYPE && state.config().viewership.count_views {
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        state
            .views()
            .learn_playlist(playback_id, dir, &String::from_utf8_lossy(&body));
    }
    let mut response = match admission {
        Admission::Granted { grant, .. } if listing => {
            with_grant(&String::from_utf8_lossy(&body), grant).into_response()
        }
        _ => body.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // Requests with an `Origin` get it echoed by the CORS layer (credentials allowed); others may
    // be read from anywhere.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// Content the gate let a request have.
struct Served {
    admission: Admission,
    project_id: String,
    playback_id: String,
    creator_id: String,
}

/// Refuses playback ids of no live stream or asset and suspended streams, then asks the gate.
async fn admit(
    state: &AppState,
    playback_id: &str,
    viewer: &Credentials,
) -> Result<Served, ApiError> {
    let not_found = || ApiError::NotFound("no such playlist or segment".into());
    let (project_id, policy, creator) =
        match crate::streams::repo::find_by_playback_id(state.db(), playback_id).await? {
            Some(stream) if stream.suspended => return Err(not_found()),
            Some(stream) => (stream.project_id, stream.playback_policy, stream.creator_id),
            None => {
                let asset = crate::assets::repo::find_by_playback_id(state.db(), playback_id)
                    .await?
                    .ok_or_else(not_found)?;
                (asset.project_id, asset.playback_policy, asset.creator_id)
            }
        };
    let content = Content {
        project_id: &project_id,
        playback_id,
        policy: policy.as_ref(),
    };
    let admission = state.gate().admit(&content, viewer).await?;
    Ok(Served {
        admission,
        project_id,
        playback_id: playback_id.to_string(),
        creator_id: creator.map(|c| c.value).unwrap_or_default(),
    })
}

/// `text` (an HLS playlist or a WebVTT thumbnail index) with `grant` added to every URI in it:
/// URI lines and `URI="..."` attributes of playlists, cue payloads of WebVTT.
pub fn with_grant(text: &str, grant: &str) -> String {
    let add = |uri: &str| {
        let separator = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{separator}{GRANT_PARAM}={grant}")
    };
    let vtt = text.starts_with("WEBVTT");
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if body.is_empty() {
            out.push_str(line);
        } else if vtt {
            if body.starts_with("WEBVTT") || body.contains("-->") || body.starts_with("NOTE") {
                out.push_str(line);
            } else {
                out.push_str(&add(body));
                out.push_str(ending);
            }
        } else if body.starts_with('#') {
            match body.find("URI=\"") {
                Some(at) => {
                    let start = at + 5;
                    let len = body[start..].find('"').unwrap_or(body.len() - start);
                    out.push_str(&body[..start]);
                    out.push_str(&add(&body[start..start + len]));
                    out.push_str(&body[start + len..]);
                    out.push_str(ending);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(&add(body));
            out.push_str(ending);
        }
    }
    out
}

/// An asset's MP4: the whole file, or the one byte range a player asks for.
async fn serve_mp4(
    state: &AppState,
    playback_id: &str,
    file: &str,
    viewer: &Viewer<'_>,
) -> Result<Response, ApiError> {
    let headers = viewer.headers;
    let not_found = || ApiError::NotFound("no such file".into());
    let object = key(playback_id, file);
    if playback_id.len() > 64 || studio_media_core::store::validate_key(&object).is_err() {
        return Err(not_found());
    }
    let served = admit(state, playback_id, &viewer.credentials).await?;
    let store_error = |e| ApiError::Internal(anyhow::Error::new(e));
    let size = state
        .media_store()
        .size(&object)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, end) = match range {
        None | Some(RangeRequest::Ignored) => (StatusCode::OK, 0, size),
        Some(RangeRequest::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(RangeRequest::Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    // Streamed from the store as it arrives: a 1 GiB MP4 is never held in memory.
    let chunks = state
        .media_store()
        .stream_range(&object, start, end)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    viewer.count(
        state,
        &served,
        Media::Mp4 {
            bytes: end - start,
            size,
        },
    );
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MP4_TYPE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match served.admission {
            Admission::Open => "public, max-age=31536000, immutable",
            Admission::Granted { .. } => "private, max-age=86400",
        }),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Bytes `start..end` (end exclusive).
    Bytes(u64, u64),
    /// A range past the end.
    Unsatisfiable,
    /// Not a single byte range this server understands: the whole file is sent (RFC 9110 allows it).
    Ignored,
}

/// Parses a `Range` header of one byte range: `bytes=a-b`, `bytes=a-`, `bytes=-n`.
fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (first.is_empty(), last.is_empty()) {
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size),
            None => return RangeRequest::Ignored,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return RangeRequest::Ignored;
            };
            let end = if last.is_empty() {
                size
            } else {
                match parse(last) {
                    Some(l) if l >= start => l.saturating_add(1).min(size),
                    _ => return RangeRequest::Ignored,
                }
            };
            (start, end)
        }
        (true, true) => return RangeRequest::Ignored,
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Bytes(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_go_on_every_uri() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p0/index.m3u8\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\"\n";
        assert_eq!(
            with_grant(master, "g1"),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p0/index.m3u8?grant=g1\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8?grant=g1\"\n"
        );
        let media = "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:2.000,\r\n0.ts?x=1\r\n#EXT-X-ENDLIST\r\n";
        assert_eq!(
            with_grant(media, "g"),
            "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4?grant=g\"\r\n#EXTINF:2.000,\r\n0.ts?x=1&grant=g\r\n#EXT-X-ENDLIST\r\n"
        );
        let vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:06.000\nkeyframes_0.jpg\n";
        assert_eq!(
            with_grant(vtt, "g"),
            "WEBVTT\n\n00:00:00.000 --> 00:00:06.000\nkeyframes_0.jpg?grant=g\n"
        );
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeRequest::Bytes(0, 100));
        assert_eq!(
            parse_range("bytes=900-", 1000),
            RangeRequest::Bytes(900, 1000)
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            RangeRequest::Bytes(900, 1000)
        );
        assert_eq!(
            parse_range("bytes=990-2000", 1000),
            RangeRequest::Bytes(990, 1000)
        );
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=5-1", 1000), RangeRequest::Ignored);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeRequest::Ignored);
        assert_eq!(parse_range("items=0-1", 1000), RangeRequest::Ignored);
    }
}
