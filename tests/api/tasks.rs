//! Tasks: the job runner on both databases (one run per task, retries, a dead node's task taken
//! over, cancellation, deadlines, core budgets, shutdown), and `GET /task` with paging, filters
//! and tenant isolation. Jobs run through the runner directly, without HTTP.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;
use studio_api::clock::now_ms;
use studio_api::db::Database;
use studio_api::tasks::repo::{self, Finish, NewTask};
use studio_api::tasks::runner::{Job, JobError, Runner, RunnerConfig, TaskHandler};
use studio_api::tasks::{Task, TaskPhase, TaskType};
use studio_tests::{Backend, TempDir, TestApp, eventually, on_both_databases, urlencode};

on_both_databases!(
    a_task_runs_once_and_its_events_are_in_the_outbox,
    retriable_errors_are_retried_with_backoff_and_fatal_ones_fail,
    a_dead_nodes_task_is_taken_over_after_its_lease,
    cancellation_and_deadlines_stop_running_jobs,
    cpu_heavy_jobs_never_oversubscribe_the_cores,
    two_nodes_claiming_at_once_run_each_task_once,
    shutdown_hands_back_unfinished_jobs,
    task_list_pages_filters_and_isolates_tenants,
    one_projects_queue_does_not_hold_back_anothers,
);

#[derive(Clone, Copy)]
enum Script {
    Succeed,
    /// A retriable error on the first attempt, then success.
    FlakyOnce,
    AlwaysRetriable,
    Fatal,
    /// Never ends on its own.
    Hang,
    /// Succeeds after this many ms.
    Slow(u64),
}

/// A handler that does what its script says and records what it saw.
struct Scripted {
    task_type: TaskType,
    cores: usize,
    script: Script,
    runs: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    scratch: Mutex<Vec<PathBuf>>,
}

impl Scripted {
    fn new(task_type: TaskType, cores: usize, script: Script) -> Arc<Scripted> {
        Arc::new(Scripted {
            task_type,
            cores,
            script,
            runs: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            scratch: Mutex::new(Vec::new()),
        })
    }
}

type Work<'a> = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send + 'a>>;

impl TaskHandler for Scripted {
    fn task_type(&self) -> TaskType {
        self.task_type
    }

    fn cores(&self) -> usize {
        self.cores
    }

    fn run<'a>(&'a self, job: Job) -> Work<'a> {
        Box::pin(async move {
            let runs = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(running, Ordering::SeqCst);
            assert!(job.scratch.is_dir(), "the job gets its scratch directory");
            std::fs::write(job.scratch.join("partial.ts"), b"work in progress").unwrap();
            self.scratch.lock().unwrap().push(job.scratch.clone());
            job.set_progress(0.5);
            let result = match self.script {
                Script::Succeed => Ok(json!({"echo": job.params().clone()})),
                Script::FlakyOnce if runs == 1 => {
                    Err(JobError::Retriable("the store is busy".into()))
                }
                Script::FlakyOnce => Ok(json!({"attempt": job.attempt})),
                Script::AlwaysRetriable => Err(JobError::Retriable("the store is busy".into())),
                Script::Fatal => Err(JobError::Fatal("the source is not a video".into())),
                Script::Hang => std::future::pending().await,
                Script::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({}))
                }
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }
}

/// A server whose own runner runs no jobs: the tests run them with runners of their own.
async fn jobless_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| c.tasks.run = false).await
}

fn db(app: &TestApp) -> Database {
    app.server.as_ref().unwrap().state.db().clone()
}

fn config(dir: &TempDir, node: &str) -> RunnerConfig {
    RunnerConfig {
        node_id: node.into(),
        lease: Duration::from_millis(600),
        poll: Duration::from_millis(50),
        cores: 2,
        io_slots: 4,
        scratch_dir: dir.0.join(node),
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(2),
    }
}

fn runner(app: &TestApp, config: RunnerConfig, handlers: &[&Arc<Scripted>]) -> Arc<Runner> {
    let mut runner = Runner::new(db(app), config);
    for h in handlers {
        runner = runner.with_handler(Arc::clone(h) as Arc<dyn TaskHandler>);
    }
    Arc::new(runner)
}

async fn spawn(app: &TestApp, new: NewTask) -> (Task, bool) {
    let db = db(app);
    let mut tx = db.begin().await.unwrap();
    let spawned = repo::spawn(&mut tx, &new, now_ms()).await.unwrap();
    tx.commit().await.unwrap();
    spawned
}

fn upload(app: &TestApp) -> NewTask {
    NewTask::new(
        &app.project_id,
        &app.user_id,
        TaskType::Upload,
        json!({"url": "https://example.com/video.mp4"}),
    )
}

async fn task(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/task/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

async fn phase_becomes(app: &TestApp, id: &str, phase: &str) -> Value {
    let found = eventually(Duration::from_secs(10), || async {
        let t = task(app, id).await;
        (t["status"]["phase"] == phase).then_some(t)
    })
    .await;
    match found {
        Some(t) => t,
        None => panic!("task {id} never reached {phase}: {}", task(app, id).await),
    }
}

/// The task events of the project's outbox about `task_id`, oldest first, with their payloads.
async fn events_of(app: &TestApp, task_id: &str) -> Vec<(String, Value)> {
    let rows = sqlx::query(
        "SELECT event, payload FROM events WHERE project_id = $1 AND event LIKE 'task.%' ORDER BY created_at, id",
    )
    .bind(&app.project_id)
    .fetch_all(db(app).reader())
    .await
    .unwrap();
    rows.iter()
        .map(|row| {
            let payload: Value = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
            (row.get::<String, _>("event"), payload)
        })
        .filter(|(_, payload)| payload["task"]["id"] == task_id)
        .collect()
}

fn assert_scratch_removed(handler: &Scripted) {
    let seen = handler.scratch.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the job ran with a scratch directory");
    for dir in seen {
        assert!(!dir.exists(), "scratch {} left behind", dir.display());
    }
}

async fn a_task_runs_once_and_its_events_are_in_the_outbox(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    let handler = Scripted::new(TaskType::Upload, 0, Script::Succeed);
    let runner = runner(&app, config(&dir, "node-a"), &[&handler]);

    let mut new = upload(&app);
    new.unique_key = Some("import-1".into());
    let (first, created) = spawn(&app, new.clone()).await;
    assert!(created);
    assert_eq!(first.status.phase, TaskPhase::Pending);
    // The same unique key yields the same task, not a second one.
    let (again, created) = spawn(&app, new).await;
    assert!(!created);
    assert_eq!(again.id, first.id);

    assert_eq!(runner.run_due().await.unwrap(), 1);
    assert_eq!(runner.run_due().await.unwrap(), 0, "nothing runs twice");
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    assert_scratch_removed(&handler);

    let t = task(&app, &first.id).await;
    assert_eq!(t["type"], "upload");
    assert_eq!(t["status"]["phase"], "completed");
    assert_eq!(t["status"]["progress"], 1.0);
    assert_eq!(t["status"]["retries"], 0);
    assert!(t["status"]["updatedAt"].as_i64().unwrap() >= t["createdAt"].as_i64().unwrap());
    assert_eq!(
        t["params"]["upload"]["url"],
        "https://example.com/video.mp4"
    );
    assert_eq!(
        t["output"]["upload"]["echo"]["url"],
        "https://example.com/video.mp4"
    );

    let events = events_of(&app, &first.id).await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["task.spawned", "task.completed"]);
    assert_eq!(events[0].1["task"]["type"], "upload");
    assert_eq!(
        events[0].1["task"]["snapshot"]["status"]["phase"],
        "pending"
    );
    assert_eq!(events[1].1["success"], true);
    assert_eq!(events[1].1["task"]["status"]["phase"], "completed");
}

async fn retriable_errors_are_retried_with_backoff_and_fatal_ones_fail(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    let flaky = Scripted::new(TaskType::Upload, 0, Script::FlakyOnce);
    let fatal = Scripted::new(TaskType::Clip, 0, Script::Fatal);
    let stubborn = Scripted::new(TaskType::Export, 0, Script::AlwaysRetriable);
    let runner = runner(&app, config(&dir, "node-a"), &[&flaky, &fatal, &stubborn]);

    let (t, _) = spawn(&app, upload(&app)).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    let waiting = task(&app, &t.id).await;
    assert_eq!(waiting["status"]["phase"], "waiting");
    assert_eq!(waiting["status"]["retries"], 1);
    assert_eq!(waiting["status"]["errorMessage"], "the store is busy");
    // Backing off: not claimable yet.
    assert_eq!(runner.run_due().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    let done = task(&app, &t.id).await;
    assert_eq!(done["status"]["phase"], "completed");
    assert_eq!(done["status"]["retries"], 1);
    assert!(done["status"].get("errorMessage").is_none());
    assert_eq!(done["output"]["upload"]["attempt"], 2);
    let names: Vec<String> = events_of(&app, &t.id)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["task.spawned", "task.updated", "task.completed"]);

    let clip = NewTask::new(&app.project_id, &app.user_id, TaskType::Clip, json!({}));
    let (c, _) = spawn(&app, clip).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    let failed = task(&app, &c.id).await;
    assert_eq!(failed["status"]["phase"], "failed");
    assert_eq!(
        failed["status"]["errorMessage"],
        "the source is not a video"
    );
    assert_eq!(
        fatal.runs.load(Ordering::SeqCst),
        1,
        "fatal errors are not retried"
    );
    let events = events_of(&app, &c.id).await;
    assert_eq!(events.last().unwrap().0, "task.failed");
    assert_eq!(events.last().unwrap().1["success"], false);

    let mut export = NewTask::new(&app.project_id, &app.user_id, TaskType::Export, json!({}));
    export.max_attempts = 2;
    let (e, _) = spawn(&app, export).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    let gave_up = task(&app, &e.id).await;
    assert_eq!(gave_up["status"]["phase"], "failed");
    assert_eq!(
        gave_up["status"]["errorMessage"],
        "the store is busy (gave up after 2 attempts)"
    );
    assert_eq!(stubborn.runs.load(Ordering::SeqCst), 2);
    assert_scratch_removed(&stubborn);
}

async fn a_dead_nodes_task_is_taken_over_after_its_lease(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    let handler = Scripted::new(TaskType::Upload, 0, Script::Succeed);
    let survivor = runner(&app, config(&dir, "node-b"), &[&handler]);
    let (t, _) = spawn(&app, upload(&app)).await;

    // node-a claims the task and dies: it never renews its lease nor finishes.
    let now = now_ms();
    let held = repo::claim(&db(&app), "node-a", &[TaskType::Upload], 10, now + 400, now)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(task(&app, &t.id).await["status"]["phase"], "running");
    assert_eq!(
        survivor.run_due().await.unwrap(),
        0,
        "a live lease is respected"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(survivor.run_due().await.unwrap(), 1);
    let done = task(&app, &t.id).await;
    assert_eq!(done["status"]["phase"], "completed");
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);

    // node-a comes back with its stale result: it is not written over the survivor's.
    let stale = Finish::Failed("stale".into());
    assert!(
        !repo::finish(&db(&app), &held[0].task, "node-a", &stale, now_ms())
            .await
            .unwrap()
    );
    assert_eq!(task(&app, &t.id).await["status"]["phase"], "completed");

    // A task whose every holder died fails once its attempts are spent, with a clear message.
    let mut fragile = upload(&app);
    fragile.max_attempts = 1;
    let (f, _) = spawn(&app, fragile).await;
    let now = now_ms();
    repo::claim(&db(&app), "node-a", &[TaskType::Upload], 10, now + 100, now)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(survivor.run_due().await.unwrap(), 1);
    let failed = task(&app, &f.id).await;
    assert_eq!(failed["status"]["phase"], "failed");
    assert_eq!(
        failed["status"]["errorMessage"],
        "gave up after 1 attempts: the node running it stopped each time"
    );
}

async fn cancellation_and_deadlines_stop_running_jobs(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    let handler = Scripted::new(TaskType::Upload, 0, Script::Hang);
    let runner = runner(&app, config(&dir, "node-a"), &[&handler]);

    let (t, _) = spawn(&app, upload(&app)).await;
    let running = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run_due().await.unwrap() }
    });
    let seen = phase_becomes(&app, &t.id, "running").await;
    assert_eq!(seen["status"]["phase"], "running");
    // The heartbeat writes the job's progress.
    eventually(Duration::from_secs(5), || async {
        (task(&app, &t.id).await["status"]["progress"] == 0.5).then_some(())
    })
    .await
    .expect("progress reported by the heartbeat");
    repo::cancel(&db(&app), &app.project_id, &t.id, now_ms())
        .await
        .unwrap()
        .unwrap();
    let cancelled = phase_becomes(&app, &t.id, "cancelled").await;
    assert_eq!(cancelled["status"]["errorMessage"], "cancelled");
    assert_eq!(running.await.unwrap(), 1);
    assert_scratch_removed(&handler);

    // A queued task is cancelled at once and never runs.
    let mut later = upload(&app);
    later.scheduled_at = Some(now_ms() + 3_600_000);
    let (l, _) = spawn(&app, later).await;
    let cancelled = repo::cancel(&db(&app), &app.project_id, &l.id, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status.phase, TaskPhase::Cancelled);
    // Another project cannot cancel it (nor see it).
    let other = app.other_tenant("mallory").await;
    assert!(
        repo::cancel(&db(&app), &other.project_id, &t.id, now_ms())
            .await
            .unwrap()
            .is_none()
    );

    // Past its deadline, a job is stopped and the task fails.
    let mut bounded = upload(&app);
    bounded.deadline_ms = 300;
    let (b, _) = spawn(&app, bounded).await;
    assert_eq!(runner.run_due().await.unwrap(), 1);
    let failed = task(&app, &b.id).await;
    assert_eq!(failed["status"]["phase"], "failed");
    assert_eq!(
        failed["status"]["errorMessage"],
        "did not finish within its deadline of 0.3 s"
    );
    assert_scratch_removed(&handler);
    assert_eq!(handler.runs.load(Ordering::SeqCst), 2);
}

async fn cpu_heavy_jobs_never_oversubscribe_the_cores(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    // Each transcode keeps both of the node's two cores busy; uploads only wait on I/O.
    let heavy = Scripted::new(TaskType::TranscodeFile, 2, Script::Slow(300));
    let light = Scripted::new(TaskType::Upload, 0, Script::Slow(300));
    let runner = runner(&app, config(&dir, "node-a"), &[&heavy, &light]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let new = NewTask::new(
            &app.project_id,
            &app.user_id,
            TaskType::TranscodeFile,
            json!({}),
        );
        ids.push(spawn(&app, new).await.0.id);
        ids.push(spawn(&app, upload(&app)).await.0.id);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(runner.clone().run(stopped, Duration::from_secs(5)));
    for id in &ids {
        phase_becomes(&app, id, "completed").await;
    }
    stop.send(true).unwrap();
    looping.await.unwrap();
    assert_eq!(heavy.runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        heavy.max_running.load(Ordering::SeqCst),
        1,
        "two transcodes would need four cores"
    );
    assert_eq!(light.runs.load(Ordering::SeqCst), 3);
    assert!(
        light.max_running.load(Ordering::SeqCst) > 1,
        "I/O-bound jobs run side by side"
    );
}

async fn two_nodes_claiming_at_once_run_each_task_once(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    // One handler shared by both nodes counts every run, wherever it happens.
    let handler = Scripted::new(TaskType::Upload, 0, Script::Slow(20));
    let mut ids = Vec::new();
    for _ in 0..24 {
        ids.push(spawn(&app, upload(&app)).await.0.id);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let nodes: Vec<_> = ["node-a", "node-b"]
        .into_iter()
        .map(|node| {
            let runner = runner(&app, config(&dir, node), &[&handler]);
            tokio::spawn(runner.run(stopped.clone(), Duration::from_secs(5)))
        })
        .collect();
    for id in &ids {
        phase_becomes(&app, id, "completed").await;
    }
    stop.send(true).unwrap();
    for node in nodes {
        node.await.unwrap();
    }
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        ids.len(),
        "no task ran twice"
    );
}

async fn shutdown_hands_back_unfinished_jobs(backend: Backend) {
    let app = jobless_app(backend).await;
    let dir = TempDir::new();
    let stuck = Scripted::new(TaskType::Upload, 0, Script::Hang);
    let stopping = runner(&app, config(&dir, "node-a"), &[&stuck]);
    let (t, _) = spawn(&app, upload(&app)).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(stopping.clone().run(stopped, Duration::from_millis(200)));
    phase_becomes(&app, &t.id, "running").await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), looping)
        .await
        .expect("the runner stops within the shutdown timeout")
        .unwrap();
    let released = task(&app, &t.id).await;
    assert_eq!(released["status"]["phase"], "waiting", "{released}");
    assert_scratch_removed(&stuck);

    // Another node takes it at once (no lease to wait for), as a fresh attempt.
    let handler = Scripted::new(TaskType::Upload, 0, Script::FlakyOnce);
    let next = runner(&app, config(&dir, "node-b"), &[&handler]);
    assert_eq!(next.run_due().await.unwrap(), 1);
    let t2 = task(&app, &t.id).await;
    assert_eq!(
        t2["status"]["phase"], "waiting",
        "flaky first attempt: {t2}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(next.run_due().await.unwrap(), 1);
    let done = task(&app, &t.id).await;
    assert_eq!(done["status"]["phase"], "completed");
    assert_eq!(
        done["output"]["upload"]["attempt"], 2,
        "the released attempt does not count"
    );
}

async fn task_list_pages_filters_and_isolates_tenants(backend: Backend) {
    let app = jobless_app(backend).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(spawn(&app, upload(&app)).await.0.id);
    }
    let mut clip = NewTask::new(
        &app.project_id,
        &app.user_id,
        TaskType::Clip,
        json!({"url": "u"}),
    );
    clip.input_asset_id = Some("asset-1".into());
    let clip_id = spawn(&app, clip.clone()).await.0.id;
    let other = app.other_tenant("mallory").await;
    let theirs = NewTask::new(
        &other.project_id,
        &other.user_id,
        TaskType::Upload,
        json!({}),
    );
    let their_id = spawn(&app, theirs).await.0.id;

    let page = app.get("/task?limit=2&count=1").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json.as_array().unwrap().len(), 2);
    assert_eq!(page.header("x-total-count"), Some("4"));
    let link = page.header("link").expect("a full page links to the next");
    assert!(link.contains("cursor=skip2"), "{link}");
    let rest = app.get("/task?limit=2&cursor=skip2").await;
    let mut listed: Vec<String> = page
        .json
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.json.as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.push(clip_id.clone());
    expected.sort();
    assert_eq!(
        listed, expected,
        "every task of the project once, none of another's"
    );

    let filters = urlencode(&json!([{"id": "type", "value": "clip"}]).to_string());
    let clips = app.get(&format!("/task?filters={filters}")).await;
    let clips = clips.json.as_array().unwrap();
    assert_eq!(clips.len(), 1);
    assert_eq!(clips[0]["id"], clip_id);
    assert_eq!(clips[0]["inputAssetId"], "asset-1");
    assert_eq!(clips[0]["status"]["phase"], "pending");
    assert_eq!(clips[0]["params"]["clip"]["url"], "u");
    let filters = urlencode(&json!([{"id": "phase", "value": "completed"}]).to_string());
    assert_eq!(
        app.get(&format!("/task?filters={filters}")).await.json,
        json!([])
    );

    // Another tenant's task does not exist for this one, and the other way round.
    app.get(&format!("/task/{their_id}"))
        .await
        .assert_error(404, "not found");
    let theirs = app
        .call(Some(&other.key), reqwest::Method::GET, "/task", None)
        .await;
    let theirs: Vec<&str> = theirs
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(theirs, [their_id.as_str()]);
    app.call(
        Some(&other.key),
        reqwest::Method::GET,
        &format!("/task/{clip_id}"),
        None,
    )
    .await
    .assert_error(404, "not found");

    // Bad input gets Studio's error body.
    let filters = urlencode(&json!([{"id": "secret", "value": 1}]).to_string());
    app.get(&format!("/task?filters={filters}"))
        .await
        .assert_error(400, "unknown field");
    let bad = app.get("/task?limit=0").await;
    assert!(bad.status.is_client_error());
    assert!(!bad.errors().is_empty());
    app.call(None, reqwest::Method::GET, "/task", None)
        .await
        .assert_error(401, "");
}

/// Project A queues three jobs, then project B one: with room for one job at a time, B's job
/// runs second, not after all of A's.
async fn one_projects_queue_does_not_hold_back_anothers(backend: Backend) {
    let app = jobless_app(backend).await;
    let other = app.other_project("b").await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(spawn(&app, upload(&app)).await.0.id);
        // Distinct due times: equal ones are taken in id order, which is random.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = spawn(
        &app,
        NewTask::new(
            &other.project_id,
            &other.user_id,
            TaskType::Upload,
            json!({}),
        ),
    )
    .await
    .0
    .id;
    let mut order = Vec::new();
    for _ in 0..4 {
        let now = now_ms();
        let claimed = repo::claim(
            &db(&app),
            "node-a",
            &[TaskType::Upload],
            1,
            now + 60_000,
            now,
        )
        .await
        .unwrap();
        assert_eq!(claimed.len(), 1);
        order.push(claimed[0].task.id.clone());
    }
    assert_eq!(order, [a[0].clone(), b, a[1].clone(), a[2].clone()]);
}
