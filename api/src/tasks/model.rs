//! A task as the API shows it (Studio's `task`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a task does (Studio's closed list; SDKs reject any other value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = TaskType)]
pub enum TaskType {
    Upload,
    Export,
    ExportData,
    TranscodeFile,
    Clip,
    // The server's own work runs on the same job system under internal types, which never
    // appear in the API, its document or webhooks.
    /// Makes a recorded session's asset.
    #[serde(skip)]
    Recording,
    /// Removes a deleted asset's media from the store.
    #[serde(skip)]
    PurgeAsset,
}

impl TaskType {
    /// The types the API shows.
    pub const PUBLIC: [TaskType; 5] = [
        TaskType::Upload,
        TaskType::Export,
        TaskType::ExportData,
        TaskType::TranscodeFile,
        TaskType::Clip,
    ];

    pub const ALL: [TaskType; 7] = [
        TaskType::Upload,
        TaskType::Export,
        TaskType::ExportData,
        TaskType::TranscodeFile,
        TaskType::Clip,
        TaskType::Recording,
        TaskType::PurgeAsset,
    ];

    /// Internal work: not listed by `/task`, no `task.*` webhooks.
    pub fn is_internal(self) -> bool {
        !TaskType::PUBLIC.contains(&self)
    }

    /// The wire name, e.g. `transcode-file`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Upload => "upload",
            TaskType::Export => "export",
            TaskType::ExportData => "export-data",
            TaskType::TranscodeFile => "transcode-file",
            TaskType::Clip => "clip",
            TaskType::Recording => "recording",
            TaskType::PurgeAsset => "purge-asset",
        }
    }

    pub fn parse(text: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The key of this type's entry in `params` and `output` (`exportData` for `export-data`).
    pub fn params_key(self) -> &'static str {
        match self {
            TaskType::ExportData => "exportData",
            TaskType::TranscodeFile => "transcode-file",
            other => other.as_str(),
        }
    }
}

/// Where a task is: pending (created) -> waiting (queued, also between retries) -> running ->
/// completed | failed | cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = TaskPhase)]
pub enum TaskPhase {
    Pending,
    Waiting,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Pending => "pending",
            TaskPhase::Waiting => "waiting",
            TaskPhase::Running => "running",
            TaskPhase::Completed => "completed",
            TaskPhase::Failed => "failed",
            TaskPhase::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<TaskPhase> {
        [
            TaskPhase::Pending,
            TaskPhase::Waiting,
            TaskPhase::Running,
            TaskPhase::Completed,
            TaskPhase::Failed,
            TaskPhase::Cancelled,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// Whether the task is over (nothing will run it again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskPhase::Completed | TaskPhase::Failed | TaskPhase::Cancelled
        )
    }
}

/// Progress of a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TaskStatus)]
pub struct TaskStatus {
    pub phase: TaskPhase,
    /// When the status last changed (ms).
    pub updated_at: i64,
    /// 0 to 1, while running.
    pub progress: f64,
    /// Why the task failed, or why its last attempt did (while waiting for a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Attempts that ended in an error worth retrying.
    pub retries: i64,
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Task)]
pub struct Task {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub user_id: String,
    pub project_id: String,
    pub created_at: i64,
    /// When the task was (or will be) queued to run (ms).
    pub scheduled_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_asset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_asset_id: Option<String>,
    /// What to do, keyed by type (e.g. `{"upload": {...}}`).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub status: TaskStatus,
    /// What the task produced, keyed by type, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Who asked for a clip: a digest of the caller's address and the clipped playback id
    /// (clips only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in TaskType::PUBLIC {
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, t.as_str());
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
        }
        assert!(TaskType::Recording.is_internal());
        assert_eq!(TaskType::parse("recording"), Some(TaskType::Recording));
        for p in [
            "pending",
            "waiting",
            "running",
            "completed",
            "failed",
            "cancelled",
        ] {
            let phase = TaskPhase::parse(p).unwrap();
            assert_eq!(serde_json::to_value(phase).unwrap(), p);
        }
    }
}
