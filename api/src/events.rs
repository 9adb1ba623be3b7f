//! Events that webhooks subscribe to, and the outbox they are written to.
//!
//! An event is inserted in the same transaction as the change that causes it, so a change is never
//! committed without its event, nor an event without its change. The webhook dispatcher
//! (`webhooks::delivery`) picks events up from there.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{self, Tx};
use crate::streams::model::Stream;

/// Every event name a webhook may subscribe to (Studio's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookEvent)]
pub enum EventType {
    #[serde(rename = "stream.started")]
    StreamStarted,
    #[serde(rename = "stream.detection")]
    StreamDetection,
    #[serde(rename = "stream.idle")]
    StreamIdle,
    #[serde(rename = "recording.ready")]
    RecordingReady,
    #[serde(rename = "recording.started")]
    RecordingStarted,
    #[serde(rename = "recording.waiting")]
    RecordingWaiting,
    #[serde(rename = "multistream.connected")]
    MultistreamConnected,
    #[serde(rename = "multistream.error")]
    MultistreamError,
    #[serde(rename = "multistream.disconnected")]
    MultistreamDisconnected,
    #[serde(rename = "playback.user.new")]
    PlaybackUserNew,
    #[serde(rename = "playback.accessControl")]
    PlaybackAccessControl,
    #[serde(rename = "asset.created")]
    AssetCreated,
    #[serde(rename = "asset.updated")]
    AssetUpdated,
    #[serde(rename = "asset.failed")]
    AssetFailed,
    #[serde(rename = "asset.ready")]
    AssetReady,
    #[serde(rename = "asset.deleted")]
    AssetDeleted,
    #[serde(rename = "task.spawned")]
    TaskSpawned,
    #[serde(rename = "task.updated")]
    TaskUpdated,
    #[serde(rename = "task.completed")]
    TaskCompleted,
    #[serde(rename = "task.failed")]
    TaskFailed,
}

impl EventType {
    /// The wire name, e.g. `stream.started`. The variants are declared in the order of
    /// [`ALL_NAMES`] (a test checks every name round-trips through serde).
    pub fn as_str(self) -> &'static str {
        ALL_NAMES[self as usize]
    }
}

/// The wire names, in Studio's order.
pub const ALL_NAMES: &[&str] = &[
    "stream.started",
    "stream.detection",
    "stream.idle",
    "recording.ready",
    "recording.started",
    "recording.waiting",
    "multistream.connected",
    "multistream.error",
    "multistream.disconnected",
    "playback.user.new",
    "playback.accessControl",
    "asset.created",
    "asset.updated",
    "asset.failed",
    "asset.ready",
    "asset.deleted",
    "task.spawned",
    "task.updated",
    "task.completed",
    "task.failed",
];

/// An event about to be written to the outbox.
pub struct NewEvent<'a> {
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub event: EventType,
    /// The stream the event is about, if any; webhooks with a `streamId` only get its events.
    pub stream: Option<&'a Stream>,
    pub payload: Option<serde_json::Value>,
}

/// Writes `event` to the outbox inside `tx`; returns its id. Call
/// [`crate::app::AppState::wake_webhooks`] after the commit so delivery starts at once.
pub async fn emit(tx: &mut Tx, event: NewEvent<'_>, now: i64) -> Result<String, sqlx::Error> {
    let id = crate::ids::new_id();
    // Webhook receivers get the stream without its secret key.
    let stream_snapshot = event.stream.map(|s| {
        let mut s = s.clone();
        s.stream_key = None;
        db::to_json(&s)
    });
    sqlx::query(
        "INSERT INTO events (id, project_id, user_id, event, stream_id, stream, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(event.project_id)
    .bind(event.user_id)
    .bind(event.event.as_str())
    .bind(event.stream.map(|s| s.id.clone()))
    .bind(stream_snapshot)
    .bind(event.payload.as_ref().map(db::to_json))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ALL_NAMES {
            let event: EventType =
                serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap();
            assert_eq!(event.as_str(), *name);
        }
    }
}
