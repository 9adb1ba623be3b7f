//! Task rows. What the API reads is always within a project; the runner's claim is the one
//! statement that spans projects (it hands out work), and every later statement about a claimed
//! task names its project again.
//!
//! Every change of phase writes its `task.*` event to the outbox in the same transaction.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::model::{Task, TaskPhase, TaskStatus, TaskType};
use crate::db::{self, Backend, Database, Tx};
use crate::error::ApiResult;
use crate::events::{self, EventType, NewEvent};
use crate::http::list::{FieldKind, ListRequest, ListSpec, PageInfo, Sql, field};

const COLUMNS: &str = "id, project_id, user_id, type, phase, progress, error_message, retries, input_asset_id, \
    output_asset_id, params, output, created_at, updated_at, scheduled_at, attempts, max_attempts, deadline_ms, \
    cancel_requested, requester_id";

/// Studio's filter and order whitelist for tasks (plus `phase`, which Studio's list lacks and
/// users filter by most).
pub const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("type", "type", FieldKind::Text),
        field("phase", "phase", FieldKind::Text),
        field("inputAssetId", "input_asset_id", FieldKind::Text),
        field("outputAssetId", "output_asset_id", FieldKind::Text),
        field("userId", "user_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
        field("createdAt", "created_at", FieldKind::Number),
        field("updatedAt", "updated_at", FieldKind::Number),
        field("scheduledAt", "scheduled_at", FieldKind::Number),
    ],
    default_order: &[("updated_at", true), ("created_at", true)],
};

/// Defaults for a task's attempts and deadline.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 5;
pub const DEFAULT_DEADLINE_MS: i64 = 3_600_000;

/// A task about to be spawned.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub project_id: String,
    pub user_id: String,
    pub task_type: TaskType,
    /// This type's parameters; stored keyed by type (`{"upload": params}`).
    pub params: serde_json::Value,
    pub input_asset_id: Option<String>,
    pub output_asset_id: Option<String>,
    /// Spawning again with the same key (in the project, for the type) returns the first task.
    pub unique_key: Option<String>,
    /// Not before this time (ms); now when `None`.
    pub scheduled_at: Option<i64>,
    /// Held `pending` until [`schedule`] queues it (an upload waits for its file).
    pub held: bool,
    /// What the job needs but the API never shows (credentials); removed when the task ends.
    pub secrets: Option<serde_json::Value>,
    /// Claims allowed before the task fails, a dead node's included.
    pub max_attempts: i64,
    /// How long one attempt may run (ms).
    pub deadline_ms: i64,
    /// Who asked for a clip (Studio's `requesterId`), for the clip quota.
    pub requester_id: Option<String>,
}

impl NewTask {
    pub fn new(
        project_id: &str,
        user_id: &str,
        task_type: TaskType,
        params: serde_json::Value,
    ) -> NewTask {
        NewTask {
            project_id: project_id.into(),
            user_id: user_id.into(),
            task_type,
            params,
            input_asset_id: None,
            output_asset_id: None,
            unique_key: None,
            scheduled_at: None,
            held: false,
            secrets: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline_ms: DEFAULT_DEADLINE_MS,
            requester_id: None,
        }
    }
}

/// A task a runner holds, with what the runner needs beyond the API view.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub task: Task,
    /// This claim included.
    pub attempts: i64,
    pub max_attempts: i64,
    pub deadline_ms: i64,
    pub cancel_requested: bool,
}

fn from_row(row: &AnyRow) -> Result<Task, sqlx::Error> {
    let decode = |column: &str, what: &str, text: String| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("unknown task {what} {text:?}").into(),
    };
    let task_type: String = row.try_get("type")?;
    let phase: String = row.try_get("phase")?;
    Ok(Task {
        id: row.try_get("id")?,
        task_type: TaskType::parse(&task_type)
            .ok_or_else(|| decode("type", "type", task_type.clone()))?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        created_at: row.try_get("created_at")?,
        scheduled_at: row.try_get("scheduled_at")?,
        input_asset_id: row.try_get("input_asset_id")?,
        output_asset_id: row.try_get("output_asset_id")?,
        params: db::get_json(row, "params")?.unwrap_or(serde_json::Value::Null),
        status: TaskStatus {
            phase: TaskPhase::parse(&phase)
                .ok_or_else(|| decode("phase", "phase", phase.clone()))?,
            updated_at: row.try_get("updated_at")?,
            progress: row.try_get("progress")?,
            error_message: row.try_get("error_message")?,
            retries: row.try_get("retries")?,
        },
        output: db::get_json(row, "output")?,
        requester_id: row.try_get("requester_id")?,
    })
}

fn claimed_from_row(row: &AnyRow) -> Result<Claimed, sqlx::Error> {
    Ok(Claimed {
        task: from_row(row)?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        deadline_ms: row.try_get("deadline_ms")?,
        cancel_requested: db::get_bool(row, "cancel_requested")?,
    })
}

/// Writes the event of `task`'s current state: `task.spawned`/`task.updated` carry
/// `{task: {id, type, snapshot}}`, `task.completed`/`task.failed` carry `{success, task}`.
/// Internal tasks have no events.
async fn emit(tx: &mut Tx, event: EventType, task: &Task, now: i64) -> Result<(), sqlx::Error> {
    if task.task_type.is_internal() {
        return Ok(());
    }
    let snapshot = serde_json::to_value(task).expect("a task serializes");
    let payload = match event {
        EventType::TaskCompleted | EventType::TaskFailed => serde_json::json!({
            "success": event == EventType::TaskCompleted,
            "task": snapshot,
        }),
        _ => serde_json::json!({
            "task": {"id": task.id, "type": task.task_type, "snapshot": snapshot},
        }),
    };
    events::emit(
        tx,
        NewEvent {
            project_id: &task.project_id,
            user_id: &task.user_id,
            event,
            stream: None,
            payload: Some(payload),
        },
        now,
    )
    .await?;
    Ok(())
}

/// Spawns `new` (phase `pending`) with its `task.spawned` event, or, when a task with the same
/// unique key exists, returns that one. The flag says whether the task is new.
pub async fn spawn(tx: &mut Tx, new: &NewTask, now: i64) -> Result<(Task, bool), sqlx::Error> {
    let id = crate::ids::new_id();
    let scheduled_at = new.scheduled_at.unwrap_or(now);
    let params = serde_json::json!({ new.task_type.params_key(): new.params });
    // ON CONFLICT DO NOTHING rather than catching the violation: on PostgreSQL a failed
    // statement would abort the caller's transaction.
    let inserted = sqlx::query(
        "INSERT INTO tasks (id, project_id, user_id, type, phase, params, input_asset_id, output_asset_id, \
         created_at, updated_at, scheduled_at, unique_key, run_at, max_attempts, deadline_ms, secret_params, requester_id) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (project_id, type, unique_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&new.project_id)
    .bind(&new.user_id)
    .bind(new.task_type.as_str())
    .bind(db::to_json(&params))
    .bind(&new.input_asset_id)
    .bind(&new.output_asset_id)
    .bind(now)
    .bind(now)
    .bind(scheduled_at)
    .bind(&new.unique_key)
    .bind(if new.held { i64::MAX } else { scheduled_at })
    .bind(new.max_attempts.max(1))
    .bind(new.deadline_ms.max(1))
    .bind(new.secrets.as_ref().map(db::to_json))
    .bind(&new.requester_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        let key = new.unique_key.as_deref().unwrap_or_default();
        let task = find_unique_in(&mut **tx, &new.project_id, new.task_type, key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return Ok((task, false));
    }
    let task = get_in(&mut **tx, &new.project_id, &id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    emit(tx, EventType::TaskSpawned, &task, now).await?;
    Ok((task, true))
}

/// Queues the held task of `task_type` with `unique_key` (phase `waiting`, due now) with
/// `params` merged into its type's parameters, and writes `task.updated`; false when there is
/// no such task held `pending` (already queued, or cancelled).
pub async fn schedule(
    tx: &mut Tx,
    project_id: &str,
    task_type: TaskType,
    unique_key: &str,
    params: serde_json::Value,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let Some(task) = find_unique_in(&mut **tx, project_id, task_type, unique_key).await? else {
        return Ok(false);
    };
    let id = task.id.as_str();
    let mut all = task.params.clone();
    if let (Some(mine), serde_json::Value::Object(extra)) = (
        all.get_mut(task.task_type.params_key())
            .and_then(|v| v.as_object_mut()),
        params,
    ) {
        mine.extend(extra);
    }
    let queued = sqlx::query(
        "UPDATE tasks SET phase = 'waiting', run_at = $1, scheduled_at = $2, updated_at = $3, params = $4 \
         WHERE project_id = $5 AND id = $6 AND phase = 'pending' AND run_at = $7",
    )
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(db::to_json(&all))
    .bind(project_id)
    .bind(id)
    .bind(i64::MAX)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if queued {
        let task = get_in(&mut **tx, project_id, id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        emit(tx, EventType::TaskUpdated, &task, now).await?;
    }
    Ok(queued)
}

/// The task of `task_type` with `unique_key` in the project.
pub async fn find_unique(
    db: &Database,
    project_id: &str,
    task_type: TaskType,
    unique_key: &str,
) -> Result<Option<Task>, sqlx::Error> {
    find_unique_in(db.reader(), project_id, task_type, unique_key).await
}

/// Like [`find_unique`], on any executor (e.g. inside a transaction).
async fn find_unique_in<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    task_type: TaskType,
    unique_key: &str,
) -> Result<Option<Task>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND type = $2 AND unique_key = $3"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(task_type.as_str())
        .bind(unique_key)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A task of the project as the API shows it (internal tasks are not shown).
pub async fn get(db: &Database, project_id: &str, id: &str) -> ApiResult<Option<Task>> {
    let task = get_in(db.reader(), project_id, id).await?;
    Ok(task.filter(|t| !t.task_type.is_internal()))
}

/// Like [`get`], on any executor (e.g. inside a transaction).
pub async fn get_in<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> Result<Option<Task>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A page of the project's tasks.
pub async fn list(
    db: &Database,
    project_id: &str,
    req: &ListRequest,
) -> ApiResult<(Vec<Task>, PageInfo)> {
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(project_id).push(" AND type IN (");
    for (i, t) in TaskType::PUBLIC.iter().enumerate() {
        if i > 0 {
            scope.push(", ");
        }
        scope.bind(t.as_str());
    }
    scope.push(")");
    let (rows, page) = req.fetch(db, COLUMNS, "tasks", scope).await?;
    Ok((
        rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?,
        page,
    ))
}

/// Cancels a task of the project: one not yet running ends `cancelled` at once; a running one
/// is marked, and its runner stops the job at its next heartbeat. Returns the task as it is
/// after the call; `None` when the project has no such task. A finished task is left as is.
pub async fn cancel(
    db: &Database,
    project_id: &str,
    id: &str,
    now: i64,
) -> ApiResult<Option<Task>> {
    let mut tx = db.begin().await?;
    let queued = sqlx::query(
        "UPDATE tasks SET phase = 'cancelled', error_message = 'cancelled', updated_at = $1, lease_owner = NULL, lease_until = 0, \
         secret_params = NULL \
         WHERE project_id = $2 AND id = $3 AND phase IN ('pending', 'waiting')",
    )
    .bind(now)
    .bind(project_id)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !queued {
        sqlx::query(
            "UPDATE tasks SET cancel_requested = 1 WHERE project_id = $1 AND id = $2 AND phase = 'running'",
        )
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let task = get_in(&mut *tx, project_id, id).await?;
    if queued && let Some(task) = &task {
        emit(&mut tx, EventType::TaskUpdated, task, now).await?;
    }
    tx.commit().await?;
    Ok(task)
}

/// Leases up to `max` due tasks of `types` to `owner` until `lease_until`: queued tasks whose
/// time has come, and running tasks whose holder's lease expired (a node that died, or
/// stopped renewing), those of projects with the fewest tasks running first. Each claim counts
/// as an attempt.
///
/// On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets nodes claim concurrently without waiting on
/// each other; SQLite has one writer, so the conditional UPDATE is already atomic. Both
/// re-check the condition on the row they update, so a task is never held by two nodes.
pub async fn claim(
    db: &Database,
    owner: &str,
    types: &[TaskType],
    max: i64,
    lease_until: i64,
    now: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    if max <= 0 || types.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    let postgres = db.backend() == Backend::Postgres;
    if postgres {
        // In a CTE the locking subquery runs once: inside `id IN (...)` PostgreSQL may run it
        // again per row, and SKIP LOCKED then yields other rows, exceeding the LIMIT.
        sql.push("WITH due AS (SELECT id FROM tasks q WHERE ");
        push_due(&mut sql, types, max, now);
        sql.push(" FOR UPDATE SKIP LOCKED) ");
    }
    sql.push("UPDATE tasks SET phase = 'running', lease_owner = ")
        .bind(owner)
        .push(", lease_until = ")
        .bind(lease_until)
        .push(", heartbeat_at = ")
        .bind(now)
        .push(", updated_at = ")
        .bind(now)
        .push(", attempts = attempts + 1");
    if postgres {
        sql.push(" FROM due WHERE tasks.id = due.id");
    } else {
        // SQLite has one writer: the subquery and the update see the same rows.
        sql.push(" WHERE id IN (SELECT id FROM tasks q WHERE ");
        push_due(&mut sql, types, max, now);
        sql.push(")");
    }
    sql.push(" AND ");
    push_claimable(&mut sql, now);
    if postgres {
        // `due` has an `id` too.
        let qualified: Vec<String> = COLUMNS
            .split(',')
            .map(|c| format!("tasks.{}", c.trim()))
            .collect();
        sql.push(&format!(" RETURNING {}", qualified.join(", ")));
    } else {
        sql.push(&format!(" RETURNING {COLUMNS}"));
    }
    let rows = sql.query().fetch_all(db.writer()).await?;
    rows.iter().map(claimed_from_row).collect()
}

/// Leases task `id` of the project to `owner` if it is claimable (as [`claim`] would): the node
/// that spawned a task can run it at once. `None` when it is not (taken, finished, not due).
pub async fn claim_one(
    db: &Database,
    owner: &str,
    project_id: &str,
    id: &str,
    lease_until: i64,
    now: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let mut sql = Sql::new("UPDATE tasks SET phase = 'running', lease_owner = ");
    sql.bind(owner)
        .push(", lease_until = ")
        .bind(lease_until)
        .push(", heartbeat_at = ")
        .bind(now)
        .push(", updated_at = ")
        .bind(now)
        .push(", attempts = attempts + 1 WHERE project_id = ")
        .bind(project_id)
        .push(" AND id = ")
        .bind(id)
        .push(" AND ");
    push_claimable(&mut sql, now);
    sql.push(&format!(" RETURNING {COLUMNS}"));
    let row = sql.query().fetch_optional(db.writer()).await?;
    row.as_ref().map(claimed_from_row).transpose()
}

/// The claimable tasks of `types` (the candidates are `q`), at most `max`: those of projects
/// with the fewest tasks running first, so that one project's queue never holds back another's,
/// then first due first.
fn push_due(sql: &mut Sql, types: &[TaskType], max: i64, now: i64) {
    push_claimable(sql, now);
    sql.push(" AND type IN (");
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(t.as_str());
    }
    sql.push(
        ") ORDER BY (SELECT COUNT(*) FROM tasks r WHERE r.project_id = q.project_id AND r.phase = 'running'), \
         q.run_at, q.id LIMIT ",
    )
    .bind(max);
}

fn push_claimable(sql: &mut Sql, now: i64) {
    sql.push("((phase IN ('pending', 'waiting') AND run_at <= ")
        .bind(now)
        .push(") OR (phase = 'running' AND lease_until <= ")
        .bind(now)
        .push("))");
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is renewed.
    Held,
    /// The lease is renewed and someone asked to cancel the task.
    CancelRequested,
    /// The task is no longer ours (the lease expired and another node took it, or it ended).
    Lost,
}

/// Renews `owner`'s lease on a running task and records its progress.
pub async fn heartbeat(
    db: &Database,
    task: &Task,
    owner: &str,
    lease_until: i64,
    progress: f64,
    now: i64,
) -> Result<Heartbeat, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE tasks SET lease_until = $1, heartbeat_at = $2, progress = $3 \
         WHERE project_id = $4 AND id = $5 AND lease_owner = $6 AND phase = 'running' \
         RETURNING cancel_requested",
    )
    .bind(lease_until)
    .bind(now)
    .bind(progress.clamp(0.0, 1.0))
    .bind(&task.project_id)
    .bind(&task.id)
    .bind(owner)
    .fetch_optional(db.writer())
    .await?;
    Ok(match row {
        None => Heartbeat::Lost,
        Some(row) if db::get_bool(&row, "cancel_requested")? => Heartbeat::CancelRequested,
        Some(_) => Heartbeat::Held,
    })
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Completed(serde_json::Value),
    /// Queued again (phase `waiting`) until `run_at`.
    Retry {
        error: String,
        run_at: i64,
    },
    Failed(String),
    Cancelled,
}

/// Ends `owner`'s attempt on `task` with its event, in one transaction. Returns false (and
/// changes nothing) when the task is no longer `owner`'s: a stale runner never overwrites the
/// work of the node that took over.
pub async fn finish(
    db: &Database,
    task: &Task,
    owner: &str,
    outcome: &Finish,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    if !finish_in(&mut tx, task, owner, outcome, now).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Like [`finish`], in the caller's transaction (a handler completing its task together with
/// what the task made).
pub async fn finish_in(
    tx: &mut Tx,
    task: &Task,
    owner: &str,
    outcome: &Finish,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut sql = Sql::new("UPDATE tasks SET lease_owner = NULL, lease_until = 0, updated_at = ");
    sql.bind(now);
    if !matches!(outcome, Finish::Retry { .. }) {
        // The task is over: what it needed to keep secret goes.
        sql.push(", secret_params = NULL");
    }
    let event = match outcome {
        Finish::Completed(output) => {
            let output = serde_json::json!({ task.task_type.params_key(): output });
            sql.push(", phase = 'completed', progress = 1, error_message = NULL, output = ")
                .bind(db::to_json(&output));
            EventType::TaskCompleted
        }
        Finish::Retry { error, run_at } => {
            sql.push(", phase = 'waiting', retries = retries + 1, error_message = ")
                .bind(error.as_str())
                .push(", run_at = ")
                .bind(*run_at);
            EventType::TaskUpdated
        }
        Finish::Failed(error) => {
            sql.push(", phase = 'failed', error_message = ")
                .bind(error.as_str());
            EventType::TaskFailed
        }
        Finish::Cancelled => {
            sql.push(", phase = 'cancelled', error_message = 'cancelled'");
            EventType::TaskUpdated
        }
    };
    sql.push(" WHERE project_id = ")
        .bind(task.project_id.as_str())
        .push(" AND id = ")
        .bind(task.id.as_str())
        .push(" AND lease_owner = ")
        .bind(owner)
        .push(" AND phase = 'running'");
    if sql.query().execute(&mut **tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    let task = get_in(&mut **tx, &task.project_id, &task.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    emit(tx, event, &task, now).await?;
    Ok(true)
}

/// Hands a running task back to the queue without counting the attempt (this node is stopping,
/// not failing): any node may claim it at once.
pub async fn release(
    db: &Database,
    task: &Task,
    owner: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tasks SET phase = 'waiting', lease_owner = NULL, lease_until = 0, run_at = $1, \
         attempts = attempts - 1, updated_at = $2 \
         WHERE project_id = $3 AND id = $4 AND lease_owner = $5 AND phase = 'running'",
    )
    .bind(now)
    .bind(now)
    .bind(&task.project_id)
    .bind(&task.id)
    .bind(owner)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Tasks waiting to run, per type (a metric: the queue depth).
pub async fn queue_depth(db: &Database) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT type, COUNT(*) AS queued FROM tasks WHERE phase IN ('pending', 'waiting') GROUP BY type",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("type")?, row.try_get("queued")?)))
        .collect()
}

/// The secret parameters of a task (`None` once it ended, or when it has none).
pub async fn secrets(
    db: &Database,
    project_id: &str,
    id: &str,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let row = sqlx::query("SELECT secret_params FROM tasks WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    match row {
        Some(row) => db::get_json(&row, "secret_params"),
        None => Ok(None),
    }
}
