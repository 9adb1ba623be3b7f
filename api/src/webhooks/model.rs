//! Webhooks and their delivery logs, as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::EventType;
use crate::http::validate::{Problems, is_url_with_scheme};

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_SECRET_LEN: usize = 256;

/// A subscription: events of the project are POSTed to `url`, signed with `sharedSecret`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Webhook)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    /// Always `webhook`.
    pub kind: String,
    pub user_id: String,
    pub project_id: String,
    pub created_at: i64,
    pub events: Vec<EventType>,
    pub url: String,
    /// The HMAC-SHA256 key of the `Livepeer-Signature` header.
    pub shared_secret: String,
    /// When set, only events of this stream are delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    pub status: WebhookStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_triggered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<WebhookFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookFailure {
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the receiver's answer, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// `POST /webhook` and `PUT /webhook/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookInput)]
pub struct WebhookPayload {
    #[schema(min_length = 1, max_length = 500)]
    pub name: String,
    #[schema(pattern = "^https?://", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub events: Option<Vec<EventType>>,
    /// Legacy single event, accepted on create.
    #[serde(default)]
    pub event: Option<EventType>,
    /// Generated when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub shared_secret: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub stream_id: Option<String>,
    /// Ignored when sent back (clients PUT what they read).
    #[serde(default)]
    #[schema(ignore)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub kind: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub user_id: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub project_id: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub created_at: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub status: Option<serde_json::Value>,
}

/// `PATCH /webhook/{id}`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookPatchPayload)]
pub struct WebhookPatch {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^https?://", max_length = 2048)]
    pub url: Option<String>,
    #[serde(default)]
    #[schema(min_items = 1)]
    pub events: Option<Vec<EventType>>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub shared_secret: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub stream_id: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookLog)]
pub struct WebhookLog {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub created_at: i64,
    /// Seconds the attempt took.
    pub duration: f64,
    pub success: bool,
    pub request: WebhookLogRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<WebhookLogResponse>,
    /// Why the attempt failed before a response arrived (refused destination, timeout, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookLogRequest {
    pub url: String,
    pub method: String,
    #[schema(value_type = Object)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookLogResponse {
    /// The start of the answer (at most 1024 bytes), base64.
    pub body: String,
    pub status: i64,
    pub status_text: String,
}

/// Checks name, URL, events and secret.
pub fn validate(
    problems: &mut Problems,
    name: Option<&str>,
    url: Option<&str>,
    events: Option<&[EventType]>,
    secret: Option<&str>,
    stream_id: Option<&str>,
) {
    if let Some(name) = name {
        problems.text_len("name", name, 1, 500);
    }
    if let Some(url) = url
        && (url.len() > MAX_URL_LEN || !is_url_with_scheme(url, &["http", "https"]))
    {
        problems.add(format!(
            "url must be an http:// or https:// URL of at most {MAX_URL_LEN} characters"
        ));
    }
    if let Some(events) = events
        && events.len() > crate::events::ALL_NAMES.len()
    {
        problems.add("events has more entries than there are events");
    }
    if let Some(secret) = secret {
        problems.text_len("sharedSecret", secret, 1, MAX_SECRET_LEN);
    }
    if let Some(stream_id) = stream_id {
        problems.text_len("streamId", stream_id, 1, 128);
    }
}
