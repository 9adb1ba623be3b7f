//! The stream as the API shows it, the payloads that create and change it, and their validation.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::http::validate::{Problems, is_origin, is_url_with_scheme};
use crate::profiles::{
    FfmpegProfile, TranscodeProfile, validate_ffmpeg_profiles, validate_transcode_profiles,
};

/// Largest serialized size of `userTags`, in characters (Studio's limit).
pub const MAX_USER_TAGS_JSON: usize = 2048;
pub const MAX_NAME_LEN: usize = 500;
pub const MAX_MULTISTREAM_TARGETS: usize = 16;

/// A live stream: what encoders push to (by `streamKey`) and viewers play (by `playbackId`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Stream)]
pub struct Stream {
    pub id: String,
    pub name: String,
    /// Always `stream`.
    #[schema(example = "stream")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<CreatorId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user_tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// When a segment was last received (ms); 0 when never streamed.
    pub last_seen: i64,
    pub source_segments: i64,
    pub transcoded_segments: i64,
    /// Seconds.
    pub source_segments_duration: f64,
    /// Seconds.
    pub transcoded_segments_duration: f64,
    pub source_bytes: i64,
    pub transcoded_bytes: i64,
    /// Bytes per second.
    pub ingest_rate: f64,
    /// Bytes per second.
    pub outgoing_rate: f64,
    pub is_active: bool,
    pub is_healthy: Option<bool>,
    pub issues: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_token_name: Option<String>,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The secret an encoder publishes with. Left out of webhook payloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    pub playback_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_policy: Option<PlaybackPolicy>,
    pub profiles: Vec<FfmpegProfile>,
    pub project_id: String,
    pub record: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_spec: Option<RecordingSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multistream: Option<Multistream>,
    pub suspended: bool,
    pub last_terminated_at: Option<i64>,
    pub user_id: String,
    #[schema(value_type = Object)]
    pub renditions: serde_json::Map<String, serde_json::Value>,
}

/// Who created the content, as the application says (not verified by the server).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatorId)]
pub struct CreatorId {
    #[serde(rename = "type")]
    pub kind: CreatorIdType,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum CreatorIdType {
    Unverified,
}

/// `creatorId` as clients send it: the object form, or a plain string.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CreatorIdInput {
    Object(CreatorId),
    Value(String),
}

impl CreatorIdInput {
    pub fn into_creator_id(self) -> CreatorId {
        match self {
            CreatorIdInput::Object(c) => c,
            CreatorIdInput::Value(value) => CreatorId {
                kind: CreatorIdType::Unverified,
                value,
            },
        }
    }
}

/// Who may watch: anyone (`public`), holders of a JWT signed with a signing key of the project
/// (`jwt`), or viewers the project's webhook approves (`webhook`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PlaybackPolicy)]
pub struct PlaybackPolicy {
    #[serde(rename = "type")]
    pub kind: PlaybackPolicyType,
    /// The webhook asked about each viewer (`webhook` policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// Passed to the webhook with every check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webhook_context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds between re-checks of a viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<f64>,
    /// Origins (`scheme://host[:port]`, or `*`) whose pages may play the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackPolicyType {
    Public,
    Jwt,
    Webhook,
}

/// Renditions kept by recordings (default: the stream's profiles).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<TranscodeProfile>>,
}

/// Where the stream is re-published.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = StreamMultistream)]
pub struct Multistream {
    pub targets: Vec<TargetRef>,
}

/// A stream's reference to a multistream target and the rendition it receives.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    pub id: String,
    /// A profile name of the stream, or `source`.
    pub profile: String,
    #[serde(default)]
    pub video_only: bool,
}

/// A target reference as clients send it: an existing target's `id`, or a `spec` to create one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TargetAddPayload)]
pub struct TargetRefInput {
    #[serde(default)]
    pub id: Option<String>,
    pub profile: String,
    #[serde(default)]
    pub video_only: Option<bool>,
    #[serde(default)]
    pub spec: Option<TargetSpec>,
}

/// An inline multistream target, created with the stream.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    /// `rtmp://`, `rtmps://` or `srt://` URL, including the stream key of the destination.
    #[schema(pattern = "^(srt|rtmps?)://", max_length = 2048)]
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MultistreamInput {
    pub targets: Vec<TargetRefInput>,
}

/// `POST /stream`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewStreamPayload)]
pub struct NewStreamPayload {
    #[schema(min_length = 1, max_length = 500)]
    pub name: String,
    #[serde(default)]
    pub creator_id: Option<CreatorIdInput>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub playback_policy: Option<PlaybackPolicy>,
    /// Renditions to transcode to; omitted or null: the default ladder; `[]`: source only.
    #[serde(default)]
    pub profiles: Option<Vec<FfmpegProfile>>,
    #[serde(default)]
    pub record: Option<bool>,
    #[serde(default)]
    pub recording_spec: Option<RecordingSpec>,
    #[serde(default)]
    pub multistream: Option<MultistreamInput>,
    /// Not supported: refused with a message.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub pull: Option<serde_json::Value>,
}

/// `PATCH /stream/{id}`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = StreamPatchPayload)]
pub struct StreamPatchPayload {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    #[serde(default)]
    pub creator_id: Option<CreatorIdInput>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub user_tags: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PlaybackPolicy>)]
    pub playback_policy: Option<Option<PlaybackPolicy>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<FfmpegProfile>>)]
    pub profiles: Option<Option<Vec<FfmpegProfile>>>,
    #[serde(default)]
    pub record: Option<bool>,
    #[serde(default)]
    pub suspended: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RecordingSpec>)]
    pub recording_spec: Option<Option<RecordingSpec>>,
    #[serde(default)]
    pub multistream: Option<MultistreamInput>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
pub(crate) fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Checks `name`.
pub fn validate_name(problems: &mut Problems, name: &str) {
    problems.text_len("name", name, 1, MAX_NAME_LEN);
}

/// `userTags`: values are strings, numbers or arrays of those; at most 2048 characters of JSON.
pub fn validate_user_tags(
    problems: &mut Problems,
    tags: &serde_json::Map<String, serde_json::Value>,
) {
    let json = serde_json::to_string(tags).unwrap_or_default();
    if json.chars().count() > MAX_USER_TAGS_JSON {
        problems.add(format!(
            "userTags must be at most {MAX_USER_TAGS_JSON} characters of JSON"
        ));
    }
    for (key, value) in tags {
        let scalar = |v: &serde_json::Value| v.is_string() || v.is_number();
        let ok = match value {
            serde_json::Value::Array(items) => items.iter().all(scalar),
            v => scalar(v),
        };
        if !ok {
            problems.add(format!(
                "userTags.{key} must be a string, a number, or an array of strings and numbers"
            ));
        }
    }
}

/// Checks a playback policy's own fields (the webhook reference is checked against the database).
pub fn validate_playback_policy(problems: &mut Problems, policy: &PlaybackPolicy) {
    match policy.kind {
        PlaybackPolicyType::Webhook => {
            if policy.webhook_id.as_deref().is_none_or(str::is_empty) {
                problems.add(
                    "playbackPolicy.webhookId is required when playbackPolicy.type is webhook",
                );
            }
        }
        _ => {
            if policy.webhook_id.is_some() {
                problems.add(
                    "playbackPolicy.webhookId is only allowed when playbackPolicy.type is webhook",
                );
            }
        }
    }
    if let Some(interval) = policy.refresh_interval
        && !(0.0..=86_400.0 * 7.0).contains(&interval)
    {
        problems.add("playbackPolicy.refreshInterval must be between 0 and 604800 seconds");
    }
    if let Some(context) = &policy.webhook_context
        && serde_json::to_string(context).map(|s| s.len()).unwrap_or(0) > 4096
    {
        problems.add("playbackPolicy.webhookContext must be at most 4096 characters of JSON");
    }
    if let Some(origins) = &policy.allowed_origins {
        if origins.len() > 100 {
            problems.add("playbackPolicy.allowedOrigins must have at most 100 entries");
        }
        for (i, origin) in origins.iter().enumerate().take(100) {
            if !is_origin(origin) {
                problems.add(format!(
                    "playbackPolicy.allowedOrigins[{i}] must be \"*\" or an origin like https://example.com (scheme://host[:port], no path)"
                ));
            }
        }
    }
}

/// Checks multistream references against the stream's profile names.
pub fn validate_multistream(
    problems: &mut Problems,
    multistream: &MultistreamInput,
    profiles: &[FfmpegProfile],
) {
    if multistream.targets.len() > MAX_MULTISTREAM_TARGETS {
        problems.add(format!(
            "multistream.targets must have at most {MAX_MULTISTREAM_TARGETS} entries"
        ));
        return;
    }
    let mut seen = Vec::new();
    for (i, target) in multistream.targets.iter().enumerate() {
        validate_target_ref(
            problems,
            &format!("multistream.targets[{i}]"),
            target,
            profiles,
        );
        if let Some(id) = &target.id {
            if seen.contains(&(id.clone(), target.profile.clone())) {
                problems.add(format!(
                    "multistream.targets[{i}] repeats target {id} with profile {}",
                    target.profile
                ));
            }
            seen.push((id.clone(), target.profile.clone()));
        }
    }
}

/// `field.name`, or `name` alone when `field` is empty (the request body itself).
fn path(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_string()
    } else {
        format!("{field}.{name}")
    }
}

/// Checks one target reference; `field` names it in messages (empty: it is the request body).
pub fn validate_target_ref(
    problems: &mut Problems,
    field: &str,
    target: &TargetRefInput,
    profiles: &[FfmpegProfile],
) {
    match (&target.id, &target.spec) {
        (Some(_), Some(_)) | (None, None) => {
            let subject = if field.is_empty() { "target" } else { field };
            problems.add(format!(
                "{subject} must have exactly one of id (an existing target) or spec (a new target)"
            ));
        }
        (None, Some(spec)) => validate_target_spec(
            problems,
            &path(field, "spec"),
            spec.name.as_deref(),
            &spec.url,
        ),
        (Some(id), None) => {
            if id.is_empty() || id.len() > 128 {
                problems.add(format!(
                    "{} must be a multistream target id",
                    path(field, "id")
                ));
            }
        }
    }
    if target.profile != "source" && !profiles.iter().any(|p| p.name == target.profile) {
        let mut names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        names.push("source");
        problems.add(format!(
            "{} must be one of the stream's profiles: {}",
            path(field, "profile"),
            names.join(", ")
        ));
    }
}

/// Checks a multistream target's name and URL; `field` as for [`validate_target_ref`].
pub fn validate_target_spec(problems: &mut Problems, field: &str, name: Option<&str>, url: &str) {
    if let Some(name) = name {
        problems.text_len(&path(field, "name"), name, 1, MAX_NAME_LEN);
    }
    if url.len() > 2048 || !is_url_with_scheme(url, &["rtmp", "rtmps", "srt"]) {
        problems.add(format!(
            "{} must be an rtmp://, rtmps:// or srt:// URL",
            path(field, "url")
        ));
    }
}

/// Checks the fields of a new stream that need no database.
pub fn validate_new_stream(
    payload: &NewStreamPayload,
    profiles: &[FfmpegProfile],
) -> Result<(), crate::error::ApiError> {
    let mut problems = Problems::default();
    validate_name(&mut problems, &payload.name);
    if payload.pull.is_some() {
        problems.add("pull: pulling a stream from a URL is not supported by this server");
    }
    if let Some(tags) = &payload.user_tags {
        validate_user_tags(&mut problems, tags);
    }
    if let Some(policy) = &payload.playback_policy {
        validate_playback_policy(&mut problems, policy);
    }
    validate_ffmpeg_profiles(&mut problems, "profiles", profiles);
    if let Some(spec) = &payload.recording_spec
        && let Some(profiles) = &spec.profiles
    {
        validate_transcode_profiles(&mut problems, "recordingSpec.profiles", profiles);
    }
    if let Some(multistream) = &payload.multistream {
        validate_multistream(&mut problems, multistream, profiles);
    }
    if let Some(creator) = &payload.creator_id {
        validate_creator_id(&mut problems, creator);
    }
    problems.into_result()
}

pub fn validate_creator_id(problems: &mut Problems, creator: &CreatorIdInput) {
    let value = match creator {
        CreatorIdInput::Object(c) => &c.value,
        CreatorIdInput::Value(v) => v,
    };
    problems.text_len("creatorId.value", value, 1, 256);
}
