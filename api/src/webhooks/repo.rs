//! Webhook and webhook-log rows, always read within a project.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::model::{Webhook, WebhookFailure, WebhookLog, WebhookStatus};
use crate::db::{self, Database, Tx};
use crate::error::ApiResult;
use crate::http::list::{FieldKind, ListRequest, ListSpec, PageInfo, Sql, field};

const COLUMNS: &str = "id, project_id, user_id, name, url, events, shared_secret, stream_id, created_at, last_triggered_at, last_failure";
const LOG_COLUMNS: &str =
    "id, webhook_id, event, created_at, duration, success, status_code, error, request, response";

pub const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("url", "url", FieldKind::Text),
        field("createdAt", "created_at", FieldKind::Number),
        field("userId", "user_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
        field("streamId", "stream_id", FieldKind::Text),
    ],
    default_order: &[("created_at", true)],
};

pub const LOG_LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("createdAt", "created_at", FieldKind::Number),
        field("event", "event", FieldKind::Text),
        field("statusCode", "status_code", FieldKind::Number),
        field("success", "success", FieldKind::Bool),
        field("resourceId", "resource_id", FieldKind::FullText),
    ],
    default_order: &[("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: "webhook".into(),
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        created_at: row.try_get("created_at")?,
        events: db::get_json(row, "events")?.unwrap_or_default(),
        url: row.try_get("url")?,
        shared_secret: row.try_get("shared_secret")?,
        stream_id: row.try_get("stream_id")?,
        status: WebhookStatus {
            last_triggered_at: row.try_get("last_triggered_at")?,
            last_failure: db::get_json::<WebhookFailure>(row, "last_failure")?,
        },
    })
}

fn log_from_row(row: &AnyRow) -> Result<WebhookLog, sqlx::Error> {
    Ok(WebhookLog {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event: row.try_get("event")?,
        created_at: row.try_get("created_at")?,
        duration: row.try_get("duration")?,
        success: db::get_bool(row, "success")?,
        request: db::get_json(row, "request")?
            .ok_or_else(|| sqlx::Error::Decode("webhook log without request".into()))?,
        response: db::get_json(row, "response")?,
        error: row.try_get("error")?,
    })
}

pub async fn insert(tx: &mut Tx, w: &Webhook) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhooks (id, project_id, user_id, name, url, events, shared_secret, stream_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&w.id)
    .bind(&w.project_id)
    .bind(&w.user_id)
    .bind(&w.name)
    .bind(&w.url)
    .bind(db::to_json(&w.events))
    .bind(&w.shared_secret)
    .bind(&w.stream_id)
    .bind(w.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Live webhooks of the project.
pub async fn count(tx: &mut Tx, project_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM webhooks WHERE project_id = $1 AND deleted = 0")
        .bind(project_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)
}

/// The webhook `id` of `project_id`, unless deleted.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Webhook>> {
    let sql =
        format!("SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2 AND deleted = 0");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(
    db: &Database,
    project_id: &str,
    req: &ListRequest,
) -> ApiResult<(Vec<Webhook>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(project_id).push(" AND deleted = 0");
    let (rows, page) = req.fetch(db, COLUMNS, "webhooks", scope).await?;
    Ok((
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?,
        page,
    ))
}

/// The project's live webhooks, for fan-out.
pub async fn all_in_project(tx: &mut Tx, project_id: &str) -> Result<Vec<Webhook>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND deleted = 0");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Writes the editable fields.
pub async fn save(tx: &mut Tx, w: &Webhook) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks SET name = $1, url = $2, events = $3, shared_secret = $4, stream_id = $5 \
         WHERE project_id = $6 AND id = $7",
    )
    .bind(&w.name)
    .bind(&w.url)
    .bind(db::to_json(&w.events))
    .bind(&w.shared_secret)
    .bind(&w.stream_id)
    .bind(&w.project_id)
    .bind(&w.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn soft_delete(tx: &mut Tx, project_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhooks SET deleted = 1 WHERE project_id = $1 AND id = $2 AND deleted = 0",
    )
    .bind(project_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the outcome of an attempt on the webhook's `status`.
pub async fn record_outcome(
    db: &Database,
    project_id: &str,
    id: &str,
    at: i64,
    failure: Option<&WebhookFailure>,
) -> Result<(), sqlx::Error> {
    match failure {
        None => sqlx::query("UPDATE webhooks SET last_triggered_at = $1 WHERE project_id = $2 AND id = $3")
            .bind(at)
            .bind(project_id)
            .bind(id)
            .execute(db.writer())
            .await
            .map(drop),
        Some(failure) => {
            sqlx::query("UPDATE webhooks SET last_triggered_at = $1, last_failure = $2 WHERE project_id = $3 AND id = $4")
                .bind(at)
                .bind(db::to_json(failure))
                .bind(project_id)
                .bind(id)
                .execute(db.writer())
                .await
                .map(drop)
        }
    }
}

/// A log row about to be written.
pub struct NewLog<'a> {
    pub log: &'a WebhookLog,
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub event_id: &'a str,
    pub status_code: Option<i64>,
    pub resource_id: Option<&'a str>,
}

pub async fn insert_log<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    new: NewLog<'_>,
) -> Result<(), sqlx::Error> {
    let log = new.log;
    sqlx::query(
        "INSERT INTO webhook_logs (id, webhook_id, project_id, user_id, event_id, event, resource_id, created_at, \
         duration, success, status_code, error, request, response) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&log.id)
    .bind(&log.webhook_id)
    .bind(new.project_id)
    .bind(new.user_id)
    .bind(new.event_id)
    .bind(&log.event)
    .bind(new.resource_id)
    .bind(log.created_at)
    .bind(log.duration)
    .bind(log.success as i64)
    .bind(new.status_code)
    .bind(&log.error)
    .bind(db::to_json(&log.request))
    .bind(db::to_opt_json(&log.response))
    .execute(exec)
    .await?;
    Ok(())
}

pub async fn get_log(
    db: &Database,
    project_id: &str,
    webhook_id: &str,
    log_id: &str,
) -> ApiResult<Option<(WebhookLog, String)>> {
    let sql = format!(
        "SELECT {LOG_COLUMNS}, event_id FROM webhook_logs WHERE project_id = $1 AND webhook_id = $2 AND id = $3"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(webhook_id)
        .bind(log_id)
        .fetch_optional(db.reader())
        .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((log_from_row(&row)?, row.try_get("event_id")?))),
    }
}

pub async fn list_logs(
    db: &Database,
    project_id: &str,
    webhook_id: &str,
    req: &ListRequest,
) -> ApiResult<(Vec<WebhookLog>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope
        .bind(project_id)
        .push(" AND webhook_id = ")
        .bind(webhook_id);
    let (rows, page) = req.fetch(db, LOG_COLUMNS, "webhook_logs", scope).await?;
    Ok((
        rows.iter()
            .map(log_from_row)
            .collect::<Result<Vec<_>, _>>()?,
        page,
    ))
}
