//! Deleting an asset. `DELETE /asset/{id}` marks it deleted at once (its playback, HLS, MP4 and
//! playback info answer 404 from that moment, on every node: they look it up) with
//! `asset.deleted`, and spawns an internal `purge-asset` task that removes its media from the
//! store: the HLS and MP4s, the uploaded source, the TUS pieces. The task first stops the
//! asset's processing (cancels its `upload` or `recording` task and waits for it to end), so
//! nothing writes media after it; then the asset's phase is `deleted`.

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::Row;
use studio_media_core::store::ObjectStore;

use super::repo;
use crate::clock::now_ms;
use crate::db::Database;
use crate::tasks::runner::{Job, JobError, TaskHandler};
use crate::tasks::{TaskType, repo as tasks_repo};

/// Removes deleted assets' media: the handler of `purge-asset` tasks.
pub struct AssetPurges {
    db: Database,
    store: Arc<dyn ObjectStore>,
}

impl AssetPurges {
    pub fn new(db: Database, store: Arc<dyn ObjectStore>) -> AssetPurges {
        AssetPurges { db, store }
    }

    async fn purge(&self, job: &Job) -> Result<serde_json::Value, JobError> {
        let project_id = job.task.project_id.as_str();
        let id = job
            .task
            .output_asset_id
            .as_deref()
            .ok_or_else(|| JobError::Fatal("the task names no asset".into()))?;
        let asset = repo::get_any(self.db.reader(), project_id, id)
            .await
            .map_err(JobError::database)?
            .ok_or_else(|| JobError::Fatal("no such asset".into()))?;
        // Whatever still makes the asset's media stops first.
        for kind in [TaskType::Upload, TaskType::Recording] {
            let Some(task) = tasks_repo::find_unique(&self.db, project_id, kind, id)
                .await
                .map_err(JobError::database)?
            else {
                continue;
            };
            if !task.status.phase.is_final() {
                tasks_repo::cancel(&self.db, project_id, &task.id, now_ms())
                    .await
                    .map_err(|e| JobError::Retriable(e.to_string()))?;
                return Err(JobError::Retriable(
                    "waiting for the asset's processing to stop".into(),
                ));
            }
        }
        let mut removed = self
            .store
            .delete_folder(&format!("hls/{}", asset.playback_id))
            .await
            .map_err(JobError::media_store)?;
        removed += self
            .store
            .delete_folder(&format!("uploads/{id}"))
            .await
            .map_err(JobError::media_store)?;
        let uploads: Vec<String> =
            sqlx::query("SELECT id FROM tus_uploads WHERE project_id = $1 AND asset_id = $2")
                .bind(project_id)
                .bind(id)
                .fetch_all(self.db.reader())
                .await
                .map_err(JobError::database)?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()
                .map_err(JobError::database)?;
        for upload in uploads {
            removed += self
                .store
                .delete_folder(&format!("tus/{upload}"))
                .await
                .map_err(JobError::media_store)?;
            let mut tx = self.db.begin().await.map_err(JobError::database)?;
            for table in [
                "DELETE FROM tus_parts WHERE upload_id = $1",
                "DELETE FROM tus_uploads WHERE id = $1",
            ] {
                sqlx::query(table)
                    .bind(&upload)
                    .execute(&mut *tx)
                    .await
                    .map_err(JobError::database)?;
            }
            tx.commit().await.map_err(JobError::database)?;
        }
        repo::mark_purged(&self.db, project_id, id, now_ms())
            .await
            .map_err(JobError::database)?;
        tracing::info!(asset = %id, objects = removed, "deleted asset's media removed");
        Ok(serde_json::json!({ "assetId": id }))
    }
}

impl TaskHandler for AssetPurges {
    fn task_type(&self) -> TaskType {
        TaskType::PurgeAsset
    }

    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move { self.purge(&job).await })
    }
}
