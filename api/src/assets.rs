//! Assets: video on demand, each played by its own playback id. Recordings of sessions are the
//! first kind (made by `crate::recording`); uploads and URL imports will reuse this module.
//!
//! An asset's media lives in the object store under `hls/{playbackId}/`, the same layout live
//! streams use, so `/hls/{playbackId}/...` serves both. Which objects make up the asset is kept
//! in its `files`, never shown to clients; the URLs they see are built from them.

pub mod repo;
pub mod routes;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::streams::model::{CreatorId, PlaybackPolicy};

/// An asset as the API shows it (Studio's `asset`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Asset)]
pub struct Asset {
    pub id: String,
    pub user_id: String,
    pub project_id: String,
    pub name: String,
    pub playback_id: String,
    /// The HLS playlist, once one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_url: Option<String>,
    /// The MP4 download, once the asset is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    pub playback_policy: Option<PlaybackPolicy>,
    pub source: AssetSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<CreatorId>,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_token_name: Option<String>,
    pub status: AssetStatus,
    /// Bytes of the download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_spec: Option<VideoSpec>,
    /// The objects the asset is made of (write-only in Studio: never returned).
    #[serde(skip)]
    pub files: Vec<AssetFile>,
}

/// Where an asset's content came from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type")]
#[schema(as = AssetSource)]
pub enum AssetSource {
    /// Imported from a URL.
    #[serde(rename = "url")]
    Url {
        url: String,
        #[serde(
            rename = "gatewayUrl",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        gateway_url: Option<String>,
    },
    /// The recording of a live session.
    #[serde(rename = "recording")]
    Recording {
        #[serde(rename = "sessionId")]
        session_id: String,
    },
    /// Uploaded by the client.
    #[serde(rename = "directUpload")]
    DirectUpload {},
    /// Cut from a stream, session or asset.
    #[serde(rename = "clip")]
    Clip {
        #[serde(rename = "sessionId", default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(rename = "assetId", default, skip_serializing_if = "Option::is_none")]
        asset_id: Option<String>,
        #[serde(
            rename = "playbackId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        playback_id: Option<String>,
    },
}

impl AssetSource {
    /// The `type` value, as stored for filters.
    pub fn kind(&self) -> &'static str {
        match self {
            AssetSource::Url { .. } => "url",
            AssetSource::Recording { .. } => "recording",
            AssetSource::DirectUpload {} => "directUpload",
            AssetSource::Clip { .. } => "clip",
        }
    }

    fn session_id(&self) -> Option<&str> {
        match self {
            AssetSource::Recording { session_id } => Some(session_id),
            AssetSource::Clip { session_id, .. } => session_id.as_deref(),
            _ => None,
        }
    }

    fn url(&self) -> Option<&str> {
        match self {
            AssetSource::Url { url, .. } => Some(url),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AssetStatus)]
pub struct AssetStatus {
    pub phase: AssetPhase,
    pub updated_at: i64,
    /// 0 to 1 while processing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    // Why the asset failed, recorded with its whole cause (for the logs and the database);
    // clients see it through `user_facing_error`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_user_facing_error"
    )]
    pub error_message: Option<String>,
}

/// Shown instead of a recorded failure that names files of this server.
pub const INTERNAL_FAILURE: &str = "the asset could not be processed because of an internal error";

/// What a client is told of a failure: the recorded message when it says nothing of the server's
/// insides, else [`INTERNAL_FAILURE`]. Failures are recorded with their whole cause (which, for
/// a scratch file or a full disk, names paths of the server), and the cause is logged where it
/// happens; this is where it meets clients, API responses and webhooks alike.
pub fn user_facing_error(recorded: &str) -> &str {
    if recorded.split_whitespace().any(is_path) {
        INTERNAL_FAILURE
    } else {
        recorded
    }
}

/// A word of an error message that is a filesystem path (`/var/lib/studio/tmp/x`, `./data/x`,
/// `data/tmp`, `C:\x`), not a URL.
fn is_path(word: &str) -> bool {
    (word.contains('/') || word.contains('\\')) && !word.contains("://")
}

fn serialize_user_facing_error<S: serde::Serializer>(
    message: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    message
        .as_deref()
        .map(user_facing_error)
        .serialize(serializer)
}

/// Where an asset is in its life (Studio's closed list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssetPhase {
    Uploading,
    Waiting,
    Processing,
    Ready,
    Failed,
    Deleting,
    Deleted,
}

impl AssetPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetPhase::Uploading => "uploading",
            AssetPhase::Waiting => "waiting",
            AssetPhase::Processing => "processing",
            AssetPhase::Ready => "ready",
            AssetPhase::Failed => "failed",
            AssetPhase::Deleting => "deleting",
            AssetPhase::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<AssetPhase> {
        [
            AssetPhase::Uploading,
            AssetPhase::Waiting,
            AssetPhase::Processing,
            AssetPhase::Ready,
            AssetPhase::Failed,
            AssetPhase::Deleting,
            AssetPhase::Deleted,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// What the media is: container, length, rate, and (with `?details=1`) its tracks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schema(as = VideoSpec)]
pub struct VideoSpec {
    pub format: String,
    /// Seconds.
    pub duration: f64,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<VideoTrack>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schema(as = VideoTrack)]
pub struct VideoTrack {
    #[serde(rename = "type")]
    pub kind: TrackType,
    pub codec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackType {
    Video,
    Audio,
}

/// One object of an asset in the media store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssetFile {
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// The object key, `hls/{playbackId}/...`; served at the same path below the public URL.
    pub path: String,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<i64>,
}

/// What an [`AssetFile`] is (Studio's names for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The master HLS playlist.
    CatalystHlsManifest,
    /// A progressive-download MP4.
    StaticTranscodedMp4,
}

impl Asset {
    pub fn file(&self, kind: FileKind) -> Option<&AssetFile> {
        self.files.iter().find(|f| f.kind == kind)
    }

    /// Fills `playbackUrl` (once there is a playlist) and `downloadUrl` (once ready) below the
    /// server's public URL `base`; drops the track details unless asked for (Studio's
    /// `?details=1`).
    pub fn for_response(mut self, base: &str, details: bool) -> Asset {
        self.playback_url = self
            .file(FileKind::CatalystHlsManifest)
            .map(|f| format!("{base}/{}", f.path));
        self.download_url = (self.status.phase == AssetPhase::Ready)
            .then(|| {
                self.file(FileKind::StaticTranscodedMp4)
                    .map(|f| format!("{base}/{}", f.path))
            })
            .flatten();
        if !details && let Some(spec) = &mut self.video_spec {
            spec.tracks = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_that_name_server_files_are_not_shown() {
        for recorded in [
            "creating /var/lib/studio/tmp/recording-abc: File exists (os error 17)",
            "creating ./data/tmp/recording-abc: No space left on device (os error 28)",
            "opening data/tmp/recording-abc/source.ts: Permission denied (os error 13)",
            r"creating C:\studio\tmp\recording-abc: Access is denied.",
            "writing \"/srv/media/hls/abc/0.ts\" failed",
        ] {
            assert_eq!(user_facing_error(recorded), INTERNAL_FAILURE, "{recorded}");
        }
    }

    #[test]
    fn other_failures_are_shown_as_recorded() {
        for recorded in [
            "none of the session's segments could be read from the media store",
            "ffmpeg: Invalid data found when processing input",
            "fetching https://example.com/video.mp4 failed: 404 Not Found",
        ] {
            assert_eq!(user_facing_error(recorded), recorded);
        }
    }

    #[test]
    fn responses_carry_the_user_facing_message() {
        let status = AssetStatus {
            phase: AssetPhase::Failed,
            updated_at: 1,
            progress: None,
            error_message: Some("creating /tmp/x/recording-1: File exists (os error 17)".into()),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["errorMessage"], INTERNAL_FAILURE);
        let none = AssetStatus {
            error_message: None,
            ..status
        };
        assert!(
            serde_json::to_value(&none)
                .unwrap()
                .get("errorMessage")
                .is_none()
        );
    }
}
