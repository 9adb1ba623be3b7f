//! Live sessions: one per accepted publish of a stream, with the statistics of what it sent.

pub mod repo;
pub mod routes;
pub mod segments;
pub mod stats;

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::assets::{Asset, AssetPhase};
use crate::error::ApiResult;

use crate::profiles::FfmpegProfile;
use crate::streams::model::RecordingSpec;

/// A session as the API shows it (Studio's `session`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Session)]
pub struct Session {
    pub id: String,
    /// Always `session`.
    pub kind: String,
    pub user_id: String,
    pub project_id: String,
    /// The stream this session published to.
    pub parent_id: String,
    pub name: String,
    /// The stream's playback id.
    pub playback_id: String,
    pub created_at: i64,
    /// When the last segment arrived (ms).
    pub last_seen: i64,
    pub source_segments: i64,
    pub transcoded_segments: i64,
    /// Seconds.
    pub source_segments_duration: f64,
    /// Seconds.
    pub transcoded_segments_duration: f64,
    pub source_bytes: i64,
    pub transcoded_bytes: i64,
    /// Bytes per second, over the last segment.
    pub ingest_rate: f64,
    pub outgoing_rate: f64,
    pub is_healthy: Option<bool>,
    pub issues: Option<Vec<String>>,
    pub record: bool,
    pub profiles: Vec<FfmpegProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_spec: Option<RecordingSpec>,
    /// Where the recording is (recorded sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_status: Option<RecordingStatus>,
    /// The recording's HLS playlist, once it exists (recorded sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    /// The recording's MP4, once ready (recorded sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp4_url: Option<String>,
}

/// The state of a session's recording (Studio's closed list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    Waiting,
    Ready,
    Failed,
    Deleted,
    None,
}

/// A recorded session without a recording asset this long after it was last seen never gets
/// one (`none`); before that it is `waiting`.
const RECORDING_STALE_MS: i64 = 3 * 3600 * 1000;

/// Fills the recording fields of a recorded `session` from its recording asset (with its URLs
/// resolved, and whether it is deleted), as Studio derives them. Unrecorded sessions get none.
pub fn describe_recording(session: &mut Session, asset: Option<(&Asset, bool)>, now: i64) {
    if !session.record {
        return;
    }
    let status = match asset {
        Some((_, true)) => RecordingStatus::Deleted,
        Some((asset, false)) => match asset.status.phase {
            AssetPhase::Ready => RecordingStatus::Ready,
            AssetPhase::Failed => RecordingStatus::Failed,
            AssetPhase::Deleting | AssetPhase::Deleted => RecordingStatus::Deleted,
            _ => RecordingStatus::Waiting,
        },
        None if now - session.last_seen.max(session.created_at) > RECORDING_STALE_MS => {
            RecordingStatus::None
        }
        None => RecordingStatus::Waiting,
    };
    session.recording_status = Some(status);
    if let Some((asset, false)) = asset {
        session.recording_url = asset.playback_url.clone();
        session.mp4_url = asset.download_url.clone();
    }
}

/// Fills the recording fields of the project's `sessions` (one query for all of them).
pub async fn describe_recordings(
    state: &AppState,
    project_id: &str,
    sessions: &mut [Session],
) -> ApiResult<()> {
    let ids: Vec<&str> = sessions
        .iter()
        .filter(|s| s.record)
        .map(|s| s.id.as_str())
        .collect();
    let assets = crate::assets::repo::recordings_of(state.db(), project_id, &ids).await?;
    let assets: HashMap<String, (Asset, bool)> = assets
        .into_iter()
        .map(|(a, deleted)| {
            (
                a.id.clone(),
                (a.for_response(state.public_url(), false), deleted),
            )
        })
        .collect();
    let now = crate::clock::now_ms();
    for session in sessions {
        let asset = assets.get(&session.id).map(|(a, deleted)| (a, *deleted));
        describe_recording(session, asset, now);
    }
    Ok(())
}
