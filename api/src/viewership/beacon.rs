//! `POST /analytics/log`: the beacon Livepeer's web player sends while it plays, with what only the
//! player knows (time to first frame, time spent rebuffering, errors). Any origin may send it; the
//! body is bounded. Its values are cumulative per player session, so each beacon adds what grew
//! since the previous one of its session (kept per node, briefly); the sums join the hourly
//! rollups through the collector, never a write per request.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::agent;
use super::repo::{RollupDelta, RollupKey};
use crate::access_control::cache::TtlCache;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::error::ApiError;

/// Largest beacon read.
pub const MAX_BEACON_BYTES: usize = 64 * 1024;
/// Most events read from one beacon.
const MAX_EVENTS: usize = 200;
/// How long a player session's last values are remembered.
const SESSION_MEMORY: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
struct Beacon {
    session_id: String,
    playback_id: String,
    #[allow(dead_code)]
    protocol: String,
    #[allow(dead_code)]
    source_url: String,
    #[allow(dead_code)]
    player: String,
    #[allow(dead_code)]
    version: String,
    user_agent: String,
    events: Vec<BeaconEvent>,
}

#[derive(Debug, Deserialize)]
struct BeaconEvent {
    #[serde(default)]
    errors: Option<f64>,
    #[serde(default)]
    playtime_ms: Option<f64>,
    #[serde(default)]
    ttff_ms: Option<f64>,
    #[serde(default)]
    buffer_ms: Option<f64>,
}

/// What a player session reported so far (the largest values seen).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlayerSession {
    playtime_ms: i64,
    buffer_ms: i64,
    ttff_counted: bool,
    error_counted: bool,
}

/// Player sessions this node heard from recently, by a digest of (playback ID, session id).
pub struct PlayerSessions(TtlCache<[u8; 16], PlayerSession>);

impl Default for PlayerSessions {
    fn default() -> Self {
        PlayerSessions(TtlCache::new(200_000))
    }
}

pub async fn log(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if body.len() > MAX_BEACON_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a beacon is at most {MAX_BEACON_BYTES} bytes"
        )));
    }
    let beacon: Beacon = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("not a player beacon: {e}")))?;
    if beacon.events.len() > MAX_EVENTS {
        return Err(ApiError::invalid(format!(
            "a beacon has at most {MAX_EVENTS} events"
        )));
    }
    if beacon.session_id.is_empty()
        || beacon.session_id.len() > 128
        || beacon.playback_id.len() > 128
    {
        return Err(ApiError::invalid(
            "session_id and playback_id must be 1 to 128 characters",
        ));
    }
    // Unknown content is accepted and dropped: the beacon tells nothing about what exists.
    let Some((project_id, creator_id)) = owner_of(&state, &beacon.playback_id).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let max = |f: fn(&BeaconEvent) -> Option<f64>| {
        beacon
            .events
            .iter()
            .filter_map(f)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let playtime = max(|e| e.playtime_ms).map(|v| v as i64);
    let buffer = max(|e| e.buffer_ms).map(|v| v as i64);
    let ttff = beacon
        .events
        .iter()
        .filter_map(|e| e.ttff_ms)
        .find(|v| v.is_finite() && *v > 0.0);
    let errors = max(|e| e.errors).unwrap_or(0.0) > 0.0;

    let sessions = &state.player_sessions().0;
    let key = super::collector::viewer_digest(&[
        beacon.playback_id.as_bytes(),
        beacon.session_id.as_bytes(),
    ]);
    let known = sessions.get(&key);
    let before = known.unwrap_or_default();
    let mut after = before;
    let mut delta = RollupDelta {
        beacon_sessions: i64::from(known.is_none()),
        ..Default::default()
    };
    if let Some(playtime) = playtime.filter(|p| *p > before.playtime_ms) {
        delta.beacon_playtime_ms = playtime - before.playtime_ms;
        after.playtime_ms = playtime;
    }
    if let Some(buffer) = buffer.filter(|b| *b > before.buffer_ms) {
        delta.rebuffer_ms = buffer - before.buffer_ms;
        after.buffer_ms = buffer;
    }
    if let Some(ttff) = ttff.filter(|_| !before.ttff_counted) {
        delta.ttff_ms_sum = ttff as i64;
        delta.ttff_count = 1;
        after.ttff_counted = true;
    }
    if errors && !before.error_counted {
        delta.error_sessions = 1;
        after.error_counted = true;
    }
    sessions.insert(key, after, Instant::now() + SESSION_MEMORY);

    let user_agent = if beacon.user_agent.is_empty() {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    } else {
        &beacon.user_agent
    };
    let agent = agent::parse(user_agent);
    let country = crate::viewership::country(&state.config().viewership, &headers);
    state.views().record_beacon(
        RollupKey {
            project_id,
            playback_id: beacon.playback_id,
            creator_id,
            device_type: agent.device_type,
            browser: agent.browser,
            os: agent.os,
            country,
        },
        now_ms(),
        delta,
        (hex::encode(key), after.error_counted),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The project and creator of the stream or asset with this playback ID.
async fn owner_of(
    state: &AppState,
    playback_id: &str,
) -> Result<Option<(String, String)>, ApiError> {
    if let Some(stream) = crate::streams::repo::find_by_playback_id(state.db(), playback_id).await?
    {
        return Ok(Some((
            stream.project_id,
            stream.creator_id.map(|c| c.value).unwrap_or_default(),
        )));
    }
    Ok(
        crate::assets::repo::find_by_playback_id(state.db(), playback_id)
            .await?
            .map(|asset| {
                (
                    asset.project_id,
                    asset.creator_id.map(|c| c.value).unwrap_or_default(),
                )
            }),
    )
}
