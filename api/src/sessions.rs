//! Live sessions: one per accepted publish of a stream, with the statistics of what it sent.

pub mod repo;
pub mod routes;

use serde::Serialize;
use utoipa::ToSchema;

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
}
