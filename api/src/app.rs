//! The application: shared state, the router, and a running server with its background workers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Notify, watch};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::cache::KeyCache;
use crate::config::{Config, StorageLocation};
use crate::db::Database;
use crate::error::{ApiError, ErrorBody};
use crate::http;
use crate::live::registry::Registry;
use crate::tasks::runner::{Runner, RunnerConfig, TaskHandler};
use crate::webhooks::delivery::{self, Sender};
use studio_media_core::ingest::{IngestLimits, MemoryBudget};
use studio_media_core::store::s3::{S3Settings, S3Store};
use studio_media_core::store::{LocalDirStore, ObjectStore};
use studio_media_core::transcode::Transcoder;
use tokio_util::task::TaskTracker;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    db: Database,
    public_url: String,
    webhook_wake: Arc<Notify>,
    task_wake: Arc<Notify>,
    webhook_sender: Sender,
    key_cache: Arc<KeyCache>,
    live: Arc<Registry>,
    media_store: Arc<dyn ObjectStore>,
    transcoder: Arc<dyn Transcoder>,
    recorder: crate::recording::Recorder,
    recordings: Arc<crate::recording::RecordingTasks>,
    upload_tokens: crate::assets::upload::UploadTokens,
    runner: Arc<Runner>,
    ingest_limits: IngestLimits,
    session_stats: crate::sessions::stats::SessionStats,
    tasks: TaskTracker,
    store_probe: crate::health::StoreProbe,
    metrics: PrometheusHandle,
    /// Salts clip requester ids (made on first use, shared by every node).
    clip_salt: tokio::sync::OnceCell<String>,
    gate: crate::access_control::PlaybackGate,
    views: crate::viewership::Views,
    /// The collector's end of `views`, taken by [`start`].
    view_hits: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<crate::viewership::Event>>>,
    player_sessions: crate::viewership::beacon::PlayerSessions,
    /// The WebRTC port (set when the ingest servers start).
    webrtc: std::sync::OnceLock<Arc<studio_media_core::webrtc::WebrtcServer>>,
}

impl AppState {
    pub fn new(
        config: Config,
        db: Database,
        public_url: String,
        transcoder: Arc<dyn Transcoder>,
        media_store: Arc<dyn ObjectStore>,
        upload_tokens: crate::assets::upload::UploadTokens,
    ) -> anyhow::Result<AppState> {
        let webhook_sender = Sender::new(&config.webhooks)?;
        let key_cache = Arc::new(KeyCache::new(db.backend()));
        let ingest_limits = ingest_limits(&config.ingest);
        let webhook_wake = Arc::new(Notify::new());
        let task_wake = Arc::new(Notify::new());
        let recordings = Arc::new(crate::recording::RecordingTasks::new(
            db.clone(),
            media_store.clone(),
            public_url.clone(),
            webhook_wake.clone(),
        ));
        let assets = Arc::new(crate::assets::pipeline::AssetTasks::new(
            &config,
            db.clone(),
            media_store.clone(),
            transcoder.clone(),
            public_url.clone(),
            webhook_wake.clone(),
        )?);
        let transcodes = Arc::new(crate::assets::transcode::TranscodeFiles::new(
            assets.clone(),
            db.clone(),
            config.webhooks.allow_private_destinations,
        ));
        let purges = Arc::new(crate::assets::purge::AssetPurges::new(
            db.clone(),
            media_store.clone(),
        ));
        let clips = Arc::new(crate::assets::clip::ClipTasks::new(
            assets.clone(),
            db.clone(),
            media_store.clone(),
        ));
        let handlers: Vec<Arc<dyn TaskHandler>> =
            vec![recordings.clone(), assets, clips, transcodes, purges];
        let runner = task_runner(&config, &db, &task_wake, &webhook_wake, handlers);
        let gate = crate::access_control::PlaybackGate::new(
            db.clone(),
            config.webhooks.allow_private_destinations,
        )?;
        let (views, view_hits) = crate::viewership::Views::new();
        Ok(AppState(Arc::new(Inner {
            recordings,
            upload_tokens,
            runner,
            ingest_limits,
            session_stats: Default::default(),
            tasks: TaskTracker::new(),
            transcoder,
            config,
            key_cache,
            live: Arc::new(Registry::default()),
            media_store,
            recorder: Default::default(),
            store_probe: Default::default(),
            db,
            public_url,
            webhook_wake,
            task_wake,
            webhook_sender,
            metrics: http::metrics::install_recorder(),
            clip_salt: tokio::sync::OnceCell::new(),
            gate,
            views,
            view_hits: std::sync::Mutex::new(Some(view_hits)),
            player_sessions: Default::default(),
            webrtc: Default::default(),
        })))
    }

    pub fn db(&self) -> &Database {
        &self.0.db
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The base of URLs the API returns, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.0.public_url
    }

    /// Segments and playlists.
    pub fn media_store(&self) -> &dyn ObjectStore {
        self.0.media_store.as_ref()
    }

    /// The media store, shared.
    pub fn media_store_arc(&self) -> Arc<dyn ObjectStore> {
        self.0.media_store.clone()
    }

    /// The base of media URLs in playback info (`{base}/hls/...`): `storage.public_base_url`
    /// when media is served from elsewhere (a CDN, the bucket), else this server's.
    pub fn media_base_url(&self) -> &str {
        match &self.0.config.storage.public_base_url {
            Some(base) => base.trim_end_matches('/'),
            None => &self.0.public_url,
        }
    }

    /// The recordings of the sessions this node ingests.
    pub fn recorder(&self) -> &crate::recording::Recorder {
        &self.0.recorder
    }

    /// Makes the assets of recorded sessions (the `recording` tasks).
    pub fn recordings(&self) -> &crate::recording::RecordingTasks {
        &self.0.recordings
    }

    /// The secret that salts clip requester ids.
    pub async fn clip_salt(&self) -> anyhow::Result<&str> {
        let salt = self
            .0
            .clip_salt
            .get_or_try_init(|| crate::secrets::server_secret(&self.0.db, "clip_requester_salt"))
            .await?;
        Ok(salt.as_str())
    }

    /// Decides who may play gated content.
    pub fn gate(&self) -> &crate::access_control::PlaybackGate {
        &self.0.gate
    }

    /// Where media requests are counted as views.
    pub fn views(&self) -> &crate::viewership::Views {
        &self.0.views
    }

    /// The WebRTC port of this node, once the ingest servers run.
    pub fn webrtc(&self) -> Option<&Arc<studio_media_core::webrtc::WebrtcServer>> {
        self.0.webrtc.get()
    }

    pub(crate) fn set_webrtc(&self, server: Arc<studio_media_core::webrtc::WebrtcServer>) {
        // Set once per server state; a second start of the same state keeps the first port.
        let _ = self.0.webrtc.set(server);
    }

    /// Player sessions whose beacons this node received.
    pub fn player_sessions(&self) -> &crate::viewership::beacon::PlayerSessions {
        &self.0.player_sessions
    }

    /// Signs and checks the tokens of upload URLs.
    pub fn upload_tokens(&self) -> &crate::assets::upload::UploadTokens {
        &self.0.upload_tokens
    }

    /// This node's job runner.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.0.runner
    }

    /// Turns source segments into renditions.
    pub fn transcoder(&self) -> Arc<dyn Transcoder> {
        self.0.transcoder.clone()
    }

    /// What every publish on this node is held to; one memory budget for RTMP and SRT.
    pub fn ingest_limits(&self) -> &IngestLimits {
        &self.0.ingest_limits
    }

    /// Segment statistics counted and not written yet (see `sessions::stats`).
    pub fn session_stats(&self) -> &crate::sessions::stats::SessionStats {
        &self.0.session_stats
    }

    /// Work that must finish before the server stops (live sessions, their renditions and
    /// recordings): spawn it here, and shutdown waits for it.
    pub fn tasks(&self) -> &TaskTracker {
        &self.0.tasks
    }

    /// The live publishers of this node.
    pub fn live(&self) -> &Registry {
        &self.0.live
    }

    /// API keys already looked up (see `auth::cache`).
    pub fn key_cache(&self) -> &KeyCache {
        &self.0.key_cache
    }

    pub fn webhook_sender(&self) -> &Sender {
        &self.0.webhook_sender
    }

    /// Tells the webhook worker that new events are in the outbox.
    pub fn wake_webhooks(&self) {
        self.0.webhook_wake.notify_one();
    }

    /// Tells the task runner that a task was spawned, so it is claimed without waiting a poll.
    pub fn wake_tasks(&self) {
        self.0.task_wake.notify_one();
    }
}

fn ingest_limits(config: &crate::config::IngestConfig) -> IngestLimits {
    IngestLimits {
        queue_stall_timeout: std::time::Duration::from_secs(config.queue_stall_timeout_secs),
        max_media_lead: std::time::Duration::from_secs(config.max_media_lead_secs),
        max_frame_bytes: config.max_frame_bytes,
        max_publish_bytes: config.max_publish_bytes,
        memory: Arc::new(MemoryBudget::new(config.memory_budget_bytes)),
        ..IngestLimits::default()
    }
}

/// The documented API, relative to `/api`.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .merge(crate::streams::routes::router())
        .merge(crate::sessions::routes::router())
        .merge(crate::assets::routes::router())
        .merge(crate::assets::clip::router())
        .merge(crate::multistream::router())
        .merge(crate::webhooks::routes::router())
        .merge(crate::access_control::signing_keys::router())
        .merge(crate::tasks::routes::router())
        .merge(crate::playback::info::router())
        .merge(crate::tenancy::routes::router())
        .merge(crate::viewership::routes::router())
        .routes(routes!(healthz))
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router().split_for_parts();
    let (uploads, _) = crate::assets::routes::upload_router().split_for_parts();
    let doc = crate::openapi::document();
    let body_limit = state.config().max_body_bytes;
    let timeout = state.config().request_timeout();
    Router::new()
        .nest("/api", api)
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
        .merge(crate::playback::hls::router())
        .merge(crate::live::webrtc::router())
        .route(
            "/analytics/log",
            axum::routing::post(crate::viewership::beacon::log),
        )
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(http::metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .nest(
            "/api",
            uploads.route_layer(axum::middleware::from_fn(http::metrics::track)),
        )
        .layer(axum::middleware::from_fn(http::guard::reject_nul_in_uri))
        .layer(axum::middleware::from_fn(
            http::guard::reject_repeated_authorization,
        ))
        .layer(axum::middleware::from_fn(http::cors::cors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Health: the database answers and the media store takes a write.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz", security(()),
    responses((status = 200, description = "The server answers, and so do its database and its media store"), (status = 503, body = ErrorBody)))]
async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    let (database, store) = tokio::join!(
        state.db().ping(),
        state.0.store_probe.store_writable(state.media_store())
    );
    let mut errors = Vec::new();
    if !database {
        errors.push("the database does not answer".to_string());
    }
    if !store {
        errors.push("the media store cannot be written".to_string());
    }
    if errors.is_empty() {
        Json(serde_json::json!({"ok": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(ErrorBody { errors })).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    state.0.metrics.render()
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            errors: vec!["method not allowed on this path".into()],
        }),
    )
}

/// A server accepting requests, with its webhook worker.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where encoders publish over RTMP (`rtmp://{rtmp_addr}/live/{stream key}`).
    pub rtmp_addr: SocketAddr,
    /// Where encoders publish over SRT (`srt://{srt_addr}?streamid={stream key}`).
    pub srt_addr: SocketAddr,
    /// The UDP port of WebRTC sessions (WHIP and WHEP).
    pub webrtc_addr: SocketAddr,
    ingest: crate::live::ingest::IngestServers,
    sweeper: tokio::task::JoinHandle<()>,
    session_stats: tokio::task::JoinHandle<()>,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    webhooks: tokio::task::JoinHandle<()>,
    task_runner: tokio::task::JoinHandle<()>,
    key_listener: Option<tokio::task::JoinHandle<()>>,
    views_stop: watch::Sender<bool>,
    view_collector: tokio::task::JoinHandle<()>,
}

/// The media store `storage.url` names. An S3 bucket must exist and answer: a node that could
/// not store segments must not start.
pub async fn open_media_store(config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match config.storage_location()? {
        StorageLocation::LocalDir(dir) => Arc::new(LocalDirStore::new(dir)),
        StorageLocation::S3 { bucket, prefix } => {
            let aws = &config.storage.aws;
            let settings = S3Settings {
                bucket,
                prefix,
                region: aws.region.clone(),
                endpoint_url: aws.endpoint_url.clone(),
                access_key_id: aws.access_key_id.clone(),
                secret_access_key: aws
                    .secret_access_key
                    .as_ref()
                    .map(|s| s.expose().to_string()),
                session_token: aws.session_token.as_ref().map(|s| s.expose().to_string()),
                force_path_style: config.storage.force_path_style,
            };
            let store = S3Store::connect(&settings)
                .await
                .map_err(|e| anyhow::anyhow!("opening the media store (storage.url): {e}"))?;
            tracing::info!(bucket = %settings.bucket, prefix = %settings.prefix, "media in S3");
            Arc::new(store)
        }
    })
}

/// Connects to the database, migrates it, binds the HTTP address and starts serving.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let db = Database::connect(&config.database_url(), config.database_max_connections).await?;
    db.migrate().await?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the HTTP address {}: {e}", config.http_addr))?;
    let addr = listener.local_addr()?;
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    };
    let database_url = config.database_url();
    let (rtmp_addr, srt_addr, webrtc_addr) =
        (config.rtmp_addr, config.srt_addr, config.webrtc_addr);
    let media_store = open_media_store(&config).await?;
    let transcoder = crate::live::transcoding::transcoder(&config).await?;
    let upload_tokens = crate::assets::upload::UploadTokens::load(&config, &db).await?;
    let state = AppState::new(
        config,
        db.clone(),
        public_url,
        transcoder,
        media_store,
        upload_tokens,
    )?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let key_listener = (db.backend() == crate::db::Backend::Postgres).then(|| {
        tokio::spawn(crate::auth::cache::listen(
            state.0.key_cache.clone(),
            database_url,
            shutdown_rx.clone(),
        ))
    });

    let webhooks = tokio::spawn(delivery::run(
        db.clone(),
        state.webhook_sender().clone(),
        state.0.webhook_wake.clone(),
        shutdown_rx.clone(),
    ));
    let task_runner = tokio::spawn(
        state.runner().clone().run(
            shutdown_rx.clone(),
            state
                .config()
                .shutdown_timeout()
                .saturating_sub(crate::tasks::runner::RELEASE_WITHIN),
        ),
    );
    let ingest = crate::live::ingest::start(
        state.clone(),
        rtmp_addr,
        srt_addr,
        webrtc_addr,
        shutdown_rx.clone(),
    )
    .await?;
    let sweeper = tokio::spawn(crate::live::sweeper::run(
        state.clone(),
        shutdown_rx.clone(),
    ));
    let session_stats = tokio::spawn(crate::sessions::stats::run(
        state.clone(),
        shutdown_rx.clone(),
    ));
    // Stopped after the HTTP server drained, so that the last requests are counted too.
    let (views_stop, views_stop_rx) = watch::channel(false);
    let view_hits = state
        .0
        .view_hits
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .expect("a server state is started once");
    let view_collector = tokio::spawn(crate::viewership::collector::run(
        view_hits,
        state.views().durations(),
        db.clone(),
        state.media_store_arc(),
        state.config().viewership.flush_interval(),
        state.config().viewership.session_retention(),
        views_stop_rx,
    ));
    let (rtmp_addr, srt_addr, webrtc_addr) =
        (ingest.rtmp_addr(), ingest.srt_addr(), ingest.webrtc_addr());
    let app = router(state.clone());
    // No request outlives the request timeout; draining longer would wait for nothing.
    let drain = state.config().request_timeout();
    let http = tokio::spawn(http::server::serve(listener, app, shutdown_rx, drain));
    tracing::info!(%addr, %rtmp_addr, %srt_addr, %webrtc_addr, public_url = state.public_url(), database = ?db.backend(), "studio is serving");
    Ok(RunningServer {
        addr,
        rtmp_addr,
        srt_addr,
        webrtc_addr,
        ingest,
        sweeper,
        session_stats,
        state,
        shutdown,
        http,
        webhooks,
        task_runner,
        key_listener,
        views_stop,
        view_collector,
    })
}

/// The job runner of this node, with a handler for each kind of task it does. A job's lease
/// lasts as long as a silent stream is presumed alive: the one bound after which a node that
/// shows no sign of life is taken for dead.
fn task_runner(
    config: &Config,
    db: &Database,
    wake: &Arc<Notify>,
    webhooks: &Arc<Notify>,
    handlers: Vec<Arc<dyn TaskHandler>>,
) -> Arc<Runner> {
    let mut runner_config =
        RunnerConfig::for_machine(config.data_dir.join("scratch").join("tasks"));
    runner_config.lease = std::time::Duration::from_secs(config.stream_idle_after_secs.max(1));
    let mut runner = Runner::new(db.clone(), runner_config)
        .with_waker(wake.clone())
        .with_webhook_wake(webhooks.clone());
    // Without handlers the runner claims nothing.
    if config.tasks.run {
        for handler in handlers {
            runner = runner.with_handler(handler);
        }
    }
    Arc::new(runner)
}

impl RunningServer {
    /// Stops the way SIGTERM should: stops accepting requests and publishers, ends every live
    /// session (playlists closed, sessions ended, recordings processed), lets requests and
    /// webhook attempts in flight finish, and only then closes the database; all within
    /// `shutdown_timeout_secs`. Past it, what is unfinished is left for the next start to
    /// recover, and the server stops anyway.
    pub async fn stop(self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.state.config().shutdown_timeout();
        let _ = self.shutdown.send(true);
        // Closing the ingest servers drops every publisher; their sessions end as they drain.
        self.ingest.close().await?;
        let tasks = self.state.tasks();
        tasks.close();
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = tasks.len(),
                "shutdown timeout: live sessions or recordings still running are left for the next start to recover"
            );
        }
        self.sweeper.await?;
        self.session_stats.await?;
        // Renditions finished after their sessions ended may have counted segments since.
        if let Err(err) = self.state.session_stats().flush(self.state.db()).await {
            tracing::error!(
                error = format!("{err:#}"),
                "writing the last session statistics failed"
            );
        }
        drain("HTTP", self.http, deadline).await;
        let _ = self.views_stop.send(true);
        drain("view collector", self.view_collector, deadline).await;
        drain("webhook delivery", self.webhooks, deadline).await;
        drain("task runner", self.task_runner, deadline).await;
        if let Some(listener) = self.key_listener {
            listener.await?;
        }
        self.state.db().close().await;
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
        Ok(())
    }
}

/// Waits for a task until `deadline`, then aborts it.
async fn drain<T>(
    what: &str,
    mut task: tokio::task::JoinHandle<T>,
    deadline: tokio::time::Instant,
) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        tracing::warn!("shutdown timeout: {what} did not drain in time");
        task.abort();
    }
}
