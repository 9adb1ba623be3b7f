//! The job runner: claims due tasks with a lease, runs each with its handler, renews the lease
//! while the job runs, and records how the attempt ended.
//!
//! - A node that dies stops renewing; once its lease expires any node (itself after a restart
//!   included) claims the task again, as a new attempt.
//! - Retriable errors queue the task again with exponential backoff until `max_attempts`.
//! - Cancellation and lost leases are noticed at the next heartbeat (a third of the lease); the
//!   job's future is then dropped, which stops its FFmpeg jobs (`ffmpeg_job` kills on drop).
//! - Each attempt has a deadline; past it the task fails.
//! - Concurrency is sized to the machine: jobs that keep cores busy share the node's cores
//!   (a job is not claimed unless its cores are free), jobs that mostly wait share I/O slots.
//! - On shutdown the runner stops claiming, lets running jobs finish within the shutdown timeout,
//!   and hands back the leases of the others so another node can start them at once.
//!
//! Every statement that ends an attempt checks that this node still holds the lease, so a node
//! that lost it (a long pause, a network partition) never overwrites the work of the node that
//! took over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::model::{Task, TaskPhase, TaskType};
use super::repo::{self, Claimed, Finish, Heartbeat};
use crate::clock::now_ms;
use crate::db::Database;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (a store or network hiccup, a busy dependency).
    #[error("{0}")]
    Retriable(String),
    /// Trying again would fail the same way (bad input, missing source).
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    /// The database failed (worth trying again).
    pub fn database(err: sqlx::Error) -> JobError {
        JobError::Retriable(format!("the database: {err}"))
    }

    /// The media store failed (worth trying again).
    pub fn media_store(err: impl std::fmt::Display) -> JobError {
        JobError::Retriable(format!("the media store: {err}"))
    }

    /// The job's scratch directory failed (worth trying again, maybe on another node).
    pub fn scratch(err: std::io::Error) -> JobError {
        JobError::Retriable(format!("the scratch directory: {err}"))
    }
}

/// What one attempt of a task gets: the task, a scratch directory of its own (removed when the
/// attempt ends, whatever the outcome), a cancellation signal, and a way to report progress.
/// Handlers hold the narrow interfaces they need (repository, store, transcoder) themselves.
pub struct Job {
    pub task: Task,
    /// 1 for the first claim; a retry or a takeover after a dead node counts.
    pub attempt: i64,
    pub scratch: PathBuf,
    /// Cancelled when the job should stop (cancellation, deadline, lost lease, shutdown); the
    /// future is dropped right after, so long waits should select on it to clean up first.
    pub cancel: CancellationToken,
    progress: Arc<AtomicU64>,
    /// The node holding the task's lease.
    owner: String,
}

impl Job {
    /// This type's parameters (the task's `params` under its type's key).
    pub fn params(&self) -> &serde_json::Value {
        self.task
            .params
            .get(self.task.task_type.params_key())
            .unwrap_or(&serde_json::Value::Null)
    }

    /// Completes the task with `output` in the caller's transaction, so that what the task made
    /// (an asset turning `ready`) and its completion are seen together. False when the task is no
    /// longer this node's (the caller should then roll back). The runner finds it completed when
    /// the handler returns.
    pub async fn complete_in(
        &self,
        tx: &mut crate::db::Tx,
        output: serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        repo::finish_in(
            tx,
            &self.task,
            &self.owner,
            &Finish::Completed(output),
            now_ms(),
        )
        .await
    }

    /// Reports progress (0 to 1); written with the next heartbeat.
    pub fn set_progress(&self, progress: f64) {
        self.progress
            .store(progress.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
}

/// Runs the tasks of one type.
pub trait TaskHandler: Send + Sync + 'static {
    fn task_type(&self) -> TaskType;

    /// Cores one job of this kind keeps busy (e.g. an FFmpeg transcode); 0 for work that mostly
    /// waits on I/O. A job is only claimed when that many of the node's cores are free.
    fn cores(&self) -> usize {
        0
    }

    /// Does the work; the value is stored as the task's `output` under its type's key.
    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>>;

    /// Called once the task has failed for good, whatever the cause (the handler's error, its
    /// deadline, too many attempts), so that what it was making (an asset) fails too. Called
    /// at most once per failure by the node that recorded it; if that node dies first, the
    /// handler's own recovery must notice the failed task.
    fn failed<'a>(&'a self, _task: &'a Task, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Names this node in leases; unique per process.
    pub node_id: String,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often to look for due work when nothing wakes the runner.
    pub poll: Duration,
    /// Cores CPU-bound jobs may use together.
    pub cores: usize,
    /// Jobs that mostly wait, at once.
    pub io_slots: usize,
    /// Where jobs get their scratch directories (in `{scratch_dir}/{node_id}`); what runners
    /// that are gone left there is removed when a runner starts.
    pub scratch_dir: PathBuf,
    /// First retry delay; doubles per retry up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RunnerConfig {
    /// Defaults sized to this machine.
    pub fn for_machine(scratch_dir: PathBuf) -> RunnerConfig {
        RunnerConfig {
            node_id: format!("node-{}", crate::ids::new_id()),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            io_slots: 8,
            scratch_dir,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
        }
    }

    /// The delay before retry number `retry` (0 for the first).
    pub fn backoff(&self, retry: i64) -> Duration {
        let factor = 2u32.saturating_pow(retry.clamp(0, 30) as u32);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How long a stopping runner waits for the leases of unfinished jobs to be handed back.
pub const RELEASE_WITHIN: Duration = Duration::from_secs(2);

/// The runner of one node.
pub struct Runner {
    db: Database,
    config: RunnerConfig,
    handlers: HashMap<TaskType, Arc<dyn TaskHandler>>,
    wake: Arc<Notify>,
    webhooks: Option<Arc<Notify>>,
    /// The node's cores and I/O slots, shared by the claim loop and [`Runner::run_now`].
    free_cores: Arc<Semaphore>,
    free_io: Arc<Semaphore>,
    /// Cancelled when a stopping runner hands back the leases of unfinished jobs.
    stop: CancellationToken,
    /// This runner's scratch space, `scratch_dir/{node_id}`, locked while the runner lives.
    scratch: Scratch,
}

/// How one attempt stopped, short of an outcome from the handler.
enum Interrupted {
    Deadline,
    Cancelled,
    LeaseLost,
    Shutdown,
}

impl Runner {
    pub fn new(db: Database, config: RunnerConfig) -> Runner {
        let scratch = Scratch::claim(&config.scratch_dir, &config.node_id);
        Runner {
            db,
            free_cores: Arc::new(Semaphore::new(config.cores.max(1))),
            free_io: Arc::new(Semaphore::new(config.io_slots.max(1))),
            stop: CancellationToken::new(),
            scratch,
            config,
            handlers: HashMap::new(),
            wake: Arc::new(Notify::new()),
            webhooks: None,
        }
    }

    /// Adds the handler of its type (replacing any other of the same type).
    pub fn with_handler(mut self, handler: Arc<dyn TaskHandler>) -> Runner {
        self.handlers.insert(handler.task_type(), handler);
        self
    }

    /// Notified after each change that wrote an event, so webhook delivery starts at once.
    pub fn with_webhook_wake(mut self, wake: Arc<Notify>) -> Runner {
        self.webhooks = Some(wake);
        self
    }

    /// Uses `wake` to start claiming at once (notified after a task is spawned), instead of
    /// waiting for the next poll.
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Runner {
        self.wake = wake;
        self
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// This node's scratch space (`{scratch_dir}/{node_id}`), for work outside jobs too (an
    /// upload being received): whatever the node leaves there when it dies is removed by the
    /// next runner to start.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self.scratch.dir
    }

    fn cores_of(&self, handler: &dyn TaskHandler) -> usize {
        // A job wider than the machine still runs, alone.
        handler.cores().min(self.config.cores.max(1))
    }

    /// Claims what fits in `free_cores` and `free_io` slots.
    async fn claim(
        &self,
        free_cores: usize,
        free_io: usize,
    ) -> Result<Vec<(Claimed, usize)>, sqlx::Error> {
        let now = now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        let owner = &self.config.node_id;
        let mut claimed = Vec::new();
        let io_types: Vec<TaskType> = self
            .handlers
            .values()
            .filter(|h| self.cores_of(h.as_ref()) == 0)
            .map(|h| h.task_type())
            .collect();
        for c in repo::claim(&self.db, owner, &io_types, free_io as i64, lease_until, now).await? {
            claimed.push((c, 0));
        }
        let mut free_cores = free_cores;
        let mut cpu: Vec<(&Arc<dyn TaskHandler>, usize)> = self
            .handlers
            .values()
            .map(|h| (h, self.cores_of(h.as_ref())))
            .filter(|(_, cores)| *cores > 0)
            .collect();
        // Narrow jobs first would starve wide ones; in type order every kind gets its turn.
        cpu.sort_by_key(|(h, _)| h.task_type().as_str());
        for (handler, cores) in cpu {
            let fits = free_cores / cores;
            if fits == 0 {
                continue;
            }
            let got = repo::claim(
                &self.db,
                owner,
                &[handler.task_type()],
                fits as i64,
                lease_until,
                now,
            )
            .await?;
            free_cores = free_cores.saturating_sub(got.len() * cores);
            claimed.extend(got.into_iter().map(|c| (c, cores)));
        }
        Ok(claimed)
    }

    /// Claims the tasks that are due and fit, runs them to their end, and returns how many it
    /// ran. Tests use it to run jobs without the server; [`Runner::run`] is the loop.
    pub async fn run_due(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let claimed = self
            .claim(self.config.cores.max(1), self.config.io_slots.max(1))
            .await?;
        let count = claimed.len();
        let mut jobs = JoinSet::new();
        for (c, _) in claimed {
            let runner = self.clone();
            jobs.spawn(async move { runner.execute(c, CancellationToken::new()).await });
        }
        while jobs.join_next().await.is_some() {}
        Ok(count)
    }

    /// The claim loop, until `shutdown`; then running jobs get `shutdown_timeout` to finish, and
    /// the leases of those that do not are handed back (within [`RELEASE_WITHIN`]).
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        shutdown_timeout: Duration,
    ) {
        let mut jobs: JoinSet<()> = JoinSet::new();
        let mut last_depth = Instant::now() - Duration::from_secs(60);
        while !*shutdown.borrow() {
            if !self.handlers.is_empty() {
                let free_cores = self.free_cores.available_permits();
                let free_io = self.free_io.available_permits();
                match self.claim(free_cores, free_io).await {
                    Ok(claimed) => {
                        for (c, cores) in claimed {
                            // `run_now` may have taken the slot since; the task goes back.
                            let Some(permit) = self.try_reserve(cores) else {
                                let _ = repo::release(
                                    &self.db,
                                    &c.task,
                                    &self.config.node_id,
                                    now_ms(),
                                )
                                .await;
                                continue;
                            };
                            let runner = self.clone();
                            jobs.spawn(async move {
                                runner.execute(c, runner.stop.clone()).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "claiming tasks failed; retrying"),
                }
                if last_depth.elapsed() >= Duration::from_secs(5) {
                    last_depth = Instant::now();
                    self.record_queue_depth().await;
                }
            }
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
        let drained = tokio::time::timeout(shutdown_timeout, async {
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = jobs.len(),
                "shutdown timeout: handing back the leases of tasks still running"
            );
            self.stop.cancel();
            // Releasing is one UPDATE per job; if the database does not answer, the leases
            // expire on their own.
            let _ = tokio::time::timeout(RELEASE_WITHIN, async {
                while jobs.join_next().await.is_some() {}
            })
            .await;
            jobs.abort_all();
        }
    }

    /// Runs task `id` of the project here and now if it is still claimable, as soon as the
    /// node has room for it: the node that spawns a task (a session that ended) starts it
    /// without waiting for a poll, and keeps doing so while it drains on shutdown, when the
    /// claim loop no longer claims. Returns once the attempt ended (or at once when another
    /// node, or the claim loop, has the task).
    pub async fn run_now(self: Arc<Self>, task_type: TaskType, project_id: String, id: String) {
        let Some(handler) = self.handlers.get(&task_type).cloned() else {
            return;
        };
        let cores = self.cores_of(handler.as_ref());
        let semaphore = if cores == 0 {
            &self.free_io
        } else {
            &self.free_cores
        };
        let Ok(permit) = semaphore
            .clone()
            .acquire_many_owned(cores.max(1) as u32)
            .await
        else {
            return;
        };
        let now = now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        match repo::claim_one(
            &self.db,
            &self.config.node_id,
            &project_id,
            &id,
            lease_until,
            now,
        )
        .await
        {
            Ok(Some(claimed)) => self.execute(claimed, self.stop.clone()).await,
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(task = %id, error = %err, "claiming a task to run it at once failed; the claim loop will")
            }
        }
        drop(permit);
    }

    /// Takes room for a job of `cores` cores (an I/O slot for 0), if there is some now.
    fn try_reserve(&self, cores: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if cores == 0 {
            self.free_io.clone().try_acquire_owned().ok()
        } else {
            self.free_cores
                .clone()
                .try_acquire_many_owned(cores as u32)
                .ok()
        }
    }

    async fn record_queue_depth(&self) {
        if let Ok(depths) = repo::queue_depth(&self.db).await {
            let mut seen: HashMap<String, i64> = TaskType::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), 0))
                .collect();
            seen.extend(depths);
            for (task_type, queued) in seen {
                metrics::gauge!("studio_tasks_queued", "type" => task_type).set(queued as f64);
            }
        }
    }

    /// Runs one claimed attempt to its end and records the outcome.
    async fn execute(&self, claimed: Claimed, stop: CancellationToken) {
        let type_name = claimed.task.task_type.as_str();
        let owner = self.config.node_id.as_str();
        let task = &claimed.task;
        let Some(handler) = self.handlers.get(&task.task_type).cloned() else {
            // Claims only name our handlers' types; nothing to do but hand it back.
            let _ = repo::release(&self.db, task, owner, now_ms()).await;
            return;
        };
        let outcome = if claimed.cancel_requested {
            Some(Finish::Cancelled)
        } else if claimed.attempts > claimed.max_attempts {
            Some(Finish::Failed(format!(
                "gave up after {} attempts: the node running it stopped each time",
                claimed.max_attempts
            )))
        } else {
            None
        };
        if let Some(outcome) = outcome {
            self.record(task, &outcome, owner, handler.as_ref()).await;
            return;
        }
        let started = Instant::now();
        tracing::info!(task = %task.id, r#type = type_name, attempt = claimed.attempts, "task started");
        metrics::gauge!("studio_tasks_running", "type" => type_name).increment(1.0);
        let scratch = ScratchDir(
            self.scratch
                .dir
                .join(format!("{}-{}", task.id, claimed.attempts)),
        );
        let outcome = match tokio::fs::create_dir_all(&scratch.0).await {
            Err(err) => Err(Finish::Retry {
                error: format!(
                    "could not create the scratch directory {}: {err}",
                    scratch.0.display()
                ),
                run_at: now_ms() + self.config.backoff(task.status.retries).as_millis() as i64,
            }),
            Ok(()) => Ok(self
                .attempt(&claimed, handler.as_ref(), &scratch, &stop)
                .await),
        };
        drop(scratch);
        let finish = match outcome {
            Err(finish) => Some(finish),
            Ok(Ok(output)) => Some(Finish::Completed(output)),
            Ok(Err(Ok(JobError::Fatal(error)))) => Some(Finish::Failed(error)),
            Ok(Err(Ok(JobError::Retriable(error)))) => {
                Some(if claimed.attempts >= claimed.max_attempts {
                    Finish::Failed(format!(
                        "{error} (gave up after {} attempts)",
                        claimed.attempts
                    ))
                } else {
                    Finish::Retry {
                        error,
                        run_at: now_ms()
                            + self.config.backoff(task.status.retries).as_millis() as i64,
                    }
                })
            }
            Ok(Err(Err(Interrupted::Deadline))) => Some(Finish::Failed(format!(
                "did not finish within its deadline of {} s",
                claimed.deadline_ms as f64 / 1000.0
            ))),
            Ok(Err(Err(Interrupted::Cancelled))) => Some(Finish::Cancelled),
            Ok(Err(Err(Interrupted::LeaseLost))) => {
                tracing::warn!(task = %task.id, "lost the lease of a running task; another node has it");
                None
            }
            Ok(Err(Err(Interrupted::Shutdown))) => {
                if let Err(err) = repo::release(&self.db, task, owner, now_ms()).await {
                    tracing::warn!(task = %task.id, error = %err, "could not hand back a task; its lease will expire");
                }
                None
            }
        };
        metrics::gauge!("studio_tasks_running", "type" => type_name).decrement(1.0);
        if let Some(finish) = finish {
            let outcome = match &finish {
                Finish::Completed(_) => "completed",
                Finish::Retry { .. } => "retry",
                Finish::Failed(_) => "failed",
                Finish::Cancelled => "cancelled",
            };
            metrics::histogram!("studio_task_duration_seconds", "type" => type_name, "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            self.record(task, &finish, owner, handler.as_ref()).await;
        }
    }

    /// Runs the handler under the deadline, renewing the lease, until it ends or is interrupted.
    async fn attempt(
        &self,
        claimed: &Claimed,
        handler: &dyn TaskHandler,
        scratch: &ScratchDir,
        stop: &CancellationToken,
    ) -> Result<serde_json::Value, Result<JobError, Interrupted>> {
        let progress = Arc::new(AtomicU64::new(claimed.task.status.progress.to_bits()));
        let cancel = CancellationToken::new();
        let job = Job {
            task: claimed.task.clone(),
            attempt: claimed.attempts,
            scratch: scratch.0.clone(),
            cancel: cancel.clone(),
            progress: progress.clone(),
            owner: self.config.node_id.clone(),
        };
        let work = handler.run(job);
        tokio::pin!(work);
        let deadline = tokio::time::sleep(Duration::from_millis(claimed.deadline_ms.max(0) as u64));
        tokio::pin!(deadline);
        let mut beat = tokio::time::interval(self.config.lease / 3);
        beat.tick().await;
        let interrupted = loop {
            tokio::select! {
                result = &mut work => return result.map_err(Ok),
                _ = &mut deadline => break Interrupted::Deadline,
                _ = stop.cancelled() => break Interrupted::Shutdown,
                _ = beat.tick() => {
                    let now = now_ms();
                    let lease_until = now + self.config.lease.as_millis() as i64;
                    let progress = f64::from_bits(progress.load(Ordering::Relaxed));
                    match repo::heartbeat(&self.db, &claimed.task, &self.config.node_id, lease_until, progress, now).await {
                        Ok(Heartbeat::Held) => {}
                        Ok(Heartbeat::CancelRequested) => break Interrupted::Cancelled,
                        Ok(Heartbeat::Lost) => break Interrupted::LeaseLost,
                        // The lease outlives a few missed beats; keep working.
                        Err(err) => tracing::warn!(task = %claimed.task.id, error = %err, "renewing a task's lease failed"),
                    }
                }
            }
        };
        cancel.cancel();
        Err(Err(interrupted))
    }

    /// Writes the outcome; logs when it cannot (the lease then expires and the task is retried).
    async fn record(&self, task: &Task, finish: &Finish, owner: &str, handler: &dyn TaskHandler) {
        let type_name = task.task_type.as_str();
        match repo::finish(&self.db, task, owner, finish, now_ms()).await {
            Ok(true) => {
                if let Finish::Failed(error) = finish {
                    metrics::counter!("studio_tasks_failed_total", "type" => type_name)
                        .increment(1);
                    tracing::warn!(task = %task.id, r#type = type_name, %error, "task failed");
                    handler.failed(task, error).await;
                }
                if let Some(wake) = &self.webhooks {
                    wake.notify_one();
                }
            }
            Ok(false) => {
                // A handler that completed its task in its own transaction (`Job::complete_in`).
                let completed_here = matches!(finish, Finish::Completed(_))
                    && matches!(
                        repo::get_in(self.db.reader(), &task.project_id, &task.id).await,
                        Ok(Some(t)) if t.status.phase == TaskPhase::Completed
                    );
                if !completed_here {
                    tracing::warn!(task = %task.id, "task no longer ours when its attempt ended; result dropped")
                }
            }
            Err(err) => {
                tracing::warn!(task = %task.id, error = %err, "recording a task's outcome failed; it will be retried after its lease")
            }
        }
    }
}

/// A runner's scratch space: `{scratch_dir}/{node_id}`, with a lock file held while the runner
/// lives. Several nodes may share a data directory; a runner starting removes the spaces whose
/// lock nobody holds (their process is gone), never those of a live runner.
struct Scratch {
    dir: PathBuf,
    _lock: Option<std::fs::File>,
}

impl Scratch {
    fn claim(base: &std::path::Path, node_id: &str) -> Scratch {
        let _ = std::fs::create_dir_all(base);
        if let Ok(entries) = std::fs::read_dir(base) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "lock")
                    && let Ok(file) = std::fs::File::open(&path)
                    && file.try_lock().is_ok()
                {
                    let _ = std::fs::remove_dir_all(path.with_extension(""));
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let dir = base.join(node_id);
        let lock = std::fs::File::create(base.join(format!("{node_id}.lock")))
            .ok()
            .filter(|file| file.lock().is_ok());
        Scratch { dir, _lock: lock }
    }
}

/// A job's scratch directory, removed when the attempt ends however it ends (a panic included).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_runner_removes_only_the_scratch_of_runners_that_are_gone() {
        let base = std::env::temp_dir().join(format!("scratch-{}", crate::ids::new_id()));
        let live = Scratch::claim(&base, "node-live");
        std::fs::create_dir_all(live.dir.join("job")).unwrap();
        std::fs::create_dir_all(base.join("node-dead/job")).unwrap();
        std::fs::write(base.join("node-dead.lock"), b"").unwrap();
        let _new = Scratch::claim(&base, "node-new");
        assert!(
            live.dir.join("job").exists(),
            "a live runner's scratch stays"
        );
        assert!(
            !base.join("node-dead").exists(),
            "a dead runner's scratch goes"
        );
        assert!(!base.join("node-dead.lock").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut config = RunnerConfig::for_machine(PathBuf::from("/nonexistent"));
        config.initial_backoff = Duration::from_secs(5);
        config.max_backoff = Duration::from_secs(60);
        let delays: Vec<u64> = (0..6).map(|r| config.backoff(r).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(config.backoff(10_000), Duration::from_secs(60));
        assert!(config.cores >= 1);
    }
}
