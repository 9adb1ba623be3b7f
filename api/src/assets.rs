//! Assets: video on demand, each played by its own playback id. Recordings of sessions are the
//! first kind (made by `crate::recording`); uploads and URL imports will reuse this module.
//!
//! An asset's media lives in the object store under `hls/{playbackId}/`, the same layout live
//! streams use, so `/hls/{playbackId}/...` serves both. Which objects make up the asset is kept
//! in its `files`, never shown to clients; the URLs they see are built from them.

pub mod clip;
pub mod import;
pub mod pipeline;
pub mod purge;
pub mod repo;
pub mod routes;
pub mod spool;
pub mod transcode;
pub mod tus;
pub mod upload;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::events::{self, EventType, NewEvent};
use crate::http::validate::Problems;
use crate::profiles::{TranscodeProfile, VodEncoder, validate_transcode_profiles};
use crate::streams::model::{
    CreatorId, CreatorIdInput, PlaybackPolicy, validate_creator_id, validate_playback_policy,
};
use crate::tasks::repo::NewTask;

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
    /// Digests of the source file, once uploaded.
    pub hash: Option<Vec<Hash>>,
    /// The renditions asked for; the default ladder when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<TranscodeProfile>>,
    /// Whether static MP4 renditions are made (write-only in Studio: never returned).
    #[serde(skip)]
    pub static_mp4: bool,
    /// The objects the asset is made of (write-only in Studio: never returned).
    #[serde(skip)]
    pub files: Vec<AssetFile>,
}

/// A digest of the source file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(as = AssetHash)]
pub struct Hash {
    pub hash: String,
    /// `md5` or `sha256`.
    pub algorithm: String,
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

impl VideoSpec {
    /// The spec of a probed file, with `format` as its container's name.
    pub fn of(info: &studio_media_core::mp4::MediaInfo, format: &str) -> VideoSpec {
        use studio_media_core::mp4::TrackKind;
        let tracks = info
            .tracks
            .iter()
            .map(|t| VideoTrack {
                kind: match t.kind {
                    TrackKind::Video => TrackType::Video,
                    TrackKind::Audio => TrackType::Audio,
                },
                codec: t.codec.clone(),
                start_time: t.start_time_s,
                duration: t.duration_s,
                bitrate: t.bitrate.map(|b| b as f64),
                width: t.width.map(i64::from),
                height: t.height.map(i64::from),
                pixel_format: t.pixel_format.clone(),
                fps: t.fps,
                channels: t.channels.map(i64::from),
                sample_rate: t.sample_rate.map(i64::from),
            })
            .collect();
        VideoSpec {
            format: format.to_string(),
            duration: info.duration_s,
            bitrate: info.bitrate.map(|b| b as f64),
            tracks: Some(tracks),
        }
    }
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
    /// The WebVTT index of the thumbnails.
    ThumbnailsVtt,
}

/// What `request-upload` and `upload/url` take (Studio's `new-asset-payload`; the import adds
/// `url`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewAssetPayload)]
pub struct NewAssetPayload {
    pub name: String,
    /// Import from this URL (`upload/url` only): http(s), `ipfs://` or `ar://`.
    #[serde(default)]
    pub url: Option<String>,
    /// Also make static MP4 renditions.
    #[serde(default)]
    pub static_mp4: Option<bool>,
    #[serde(default)]
    pub playback_policy: Option<PlaybackPolicy>,
    #[serde(default)]
    pub creator_id: Option<CreatorIdInput>,
    /// Renditions to make; the default ladder when absent.
    #[serde(default)]
    pub profiles: Option<Vec<TranscodeProfile>>,
    /// Length segments aim for, in seconds.
    #[serde(default)]
    pub target_segment_size_secs: Option<f64>,
    /// IPFS export (not supported by this server).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub storage: Option<serde_json::Value>,
    /// Encrypted uploads (not supported by this server).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub encryption: Option<serde_json::Value>,
    /// Content credentials (accepted, not applied).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub c2pa: Option<serde_json::Value>,
}

impl NewAssetPayload {
    fn validate(&self) -> ApiResult<()> {
        let mut problems = Problems::default();
        crate::streams::model::validate_name(&mut problems, &self.name);
        if let Some(policy) = &self.playback_policy {
            validate_playback_policy(&mut problems, policy);
        }
        if let Some(creator) = &self.creator_id {
            validate_creator_id(&mut problems, creator);
        }
        validate_ladder(
            &mut problems,
            self.profiles.as_deref(),
            self.target_segment_size_secs,
        );
        if self.encryption.as_ref().is_some_and(|e| !e.is_null()) {
            problems.add("encryption: encrypted uploads are not supported by this server");
        }
        if self
            .storage
            .as_ref()
            .and_then(|s| s.get("ipfs"))
            .is_some_and(|ipfs| !ipfs.is_null() && ipfs != &serde_json::Value::Bool(false))
        {
            problems.add("storage.ipfs: IPFS export is not supported by this server");
        }
        problems.into_result()?;
        if self.profiles.as_ref().is_some_and(Vec::is_empty) {
            return Err(ApiError::BadRequest(
                "assets must have at least one profile".into(),
            ));
        }
        Ok(())
    }
}

/// Checks what a VOD job is asked to make: its profiles (H.264 renditions only) and segment
/// length.
pub(crate) fn validate_ladder(
    problems: &mut Problems,
    profiles: Option<&[TranscodeProfile]>,
    target_segment_size_secs: Option<f64>,
) {
    if let Some(profiles) = profiles {
        validate_transcode_profiles(problems, "profiles", profiles);
        for (i, p) in profiles.iter().enumerate() {
            if p.encoder.is_some_and(|e| e != VodEncoder::H264) {
                problems.add(format!(
                    "profiles[{i}].encoder: only H.264 renditions are made by this server"
                ));
            }
        }
    }
    if let Some(secs) = target_segment_size_secs
        && !(1.0..=60.0).contains(&secs)
    {
        problems.add("targetSegmentSizeSecs must be between 1 and 60");
    }
}

/// Creates an asset of the caller's project from `payload` in `phase`, with its `upload` task
/// (`params` its parameters; `held` until its file arrives), and `asset.created` and
/// `task.spawned`, in one transaction. Returns the asset and the task's id.
pub(crate) async fn create(
    state: &AppState,
    principal: &Principal,
    payload: NewAssetPayload,
    source: AssetSource,
    phase: AssetPhase,
    params: serde_json::Value,
    held: bool,
) -> ApiResult<(Asset, String)> {
    let mut params = params;
    if let Some(secs) = payload.target_segment_size_secs {
        params["targetSegmentSizeSecs"] = serde_json::json!(secs);
    }
    create_with(state, principal, payload, source, phase, |asset| {
        upload::upload_task(asset, params, held)
    })
    .await
}

/// Like [`create`], with the task `task` makes of the new asset (which has its playback id by
/// then; `task` may also rename it).
pub(crate) async fn create_with(
    state: &AppState,
    principal: &Principal,
    payload: NewAssetPayload,
    source: AssetSource,
    phase: AssetPhase,
    task: impl FnOnce(&mut Asset) -> NewTask,
) -> ApiResult<(Asset, String)> {
    payload.validate()?;
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    if let Some(policy) = &payload.playback_policy {
        crate::streams::routes::check_policy_webhook(&mut tx, principal, policy).await?;
    }
    let mut asset = Asset {
        id: crate::ids::new_id(),
        user_id: principal.user_id.clone(),
        project_id: principal.project_id.clone(),
        name: payload.name,
        playback_id: String::new(),
        playback_url: None,
        download_url: None,
        playback_policy: payload.playback_policy,
        source,
        creator_id: payload.creator_id.map(CreatorIdInput::into_creator_id),
        created_at: now,
        created_by_token_name: Some(principal.key_name.clone()),
        status: AssetStatus {
            phase,
            updated_at: now,
            progress: None,
            error_message: None,
        },
        size: None,
        video_spec: None,
        hash: None,
        profiles: payload.profiles,
        static_mp4: payload.static_mp4.unwrap_or(false),
        files: Vec::new(),
    };
    repo::insert(&mut tx, &mut asset).await?;
    let name = asset.name.clone();
    let new_task = task(&mut asset);
    if asset.name != name {
        let changes = repo::AssetChanges {
            name: Some(&asset.name),
            ..Default::default()
        };
        repo::update(&mut tx, &asset.project_id, &asset.id, &changes, now).await?;
    }
    let held = new_task.held;
    let (task, _) = crate::tasks::repo::spawn(&mut tx, &new_task, now).await?;
    emit(
        &mut tx,
        &asset,
        EventType::AssetCreated,
        state.public_url(),
        now,
    )
    .await?;
    tx.commit().await?;
    state.wake_webhooks();
    if !held {
        state.wake_tasks();
    }
    Ok((asset, task.id))
}

/// The source file of an uploaded asset has arrived: the asset waits for its task (with the
/// source's digests when they are known), which is queued with `params` added, and
/// `asset.updated` is written, in the caller's transaction. False when the asset was no longer
/// `uploading` (another upload got there first, or it was deleted).
pub(crate) async fn source_arrived(
    tx: &mut crate::db::Tx,
    asset: &Asset,
    hash: Option<&[Hash]>,
    params: serde_json::Value,
    public_url: &str,
) -> ApiResult<bool> {
    let now = now_ms();
    if !repo::source_arrived(tx, &asset.project_id, &asset.id, hash, now).await? {
        return Ok(false);
    }
    let queued = crate::tasks::repo::schedule(
        tx,
        &asset.project_id,
        crate::tasks::TaskType::Upload,
        &asset.id,
        params,
        now,
    )
    .await?;
    if !queued {
        return Ok(false);
    }
    if let Some(updated) = repo::get(&mut **tx, &asset.project_id, &asset.id).await? {
        emit(tx, &updated, EventType::AssetUpdated, public_url, now).await?;
    }
    Ok(true)
}

/// Writes `event` about `asset` (`{asset: {id, snapshot}}`, as Studio's asset events).
pub(crate) async fn emit(
    tx: &mut crate::db::Tx,
    asset: &Asset,
    event: EventType,
    public_url: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let snapshot = asset.clone().for_response(public_url, false);
    events::emit(
        tx,
        NewEvent {
            project_id: &asset.project_id,
            user_id: &asset.user_id,
            event,
            stream: None,
            payload: Some(serde_json::json!({ "asset": { "id": asset.id, "snapshot": snapshot } })),
        },
        now,
    )
    .await?;
    Ok(())
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
