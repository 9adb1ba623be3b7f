//! The transcode API (`POST /transcode`, `transcode.create` in the SDKs): a file from a URL or
//! the caller's S3 bucket, made into HLS and/or static MP4s in the caller's S3 bucket, by a
//! `transcode-file` task that runs the asset pipeline with another destination. No asset is made.
//!
//! The buckets' credentials never come back: the task's `params` name the buckets and paths
//! only, the credentials are kept apart (`secret_params`) and removed when the task ends. The
//! S3 endpoints go through the same guard as webhooks (private and loopback addresses refused
//! unless private destinations are allowed); the check is made when the request comes and when
//! the job starts.

use std::sync::Arc;

use aws_smithy_runtime_api::client::dns::SharedDnsResolver;
use axum::Json;
use axum::extract::State;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use studio_media_core::store::ObjectStore;
use studio_media_core::store::s3::{S3Settings, S3Store};
use utoipa::ToSchema;

use super::pipeline::{AssetTasks, Destination};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::http::validate::Problems;
use crate::profiles::TranscodeProfile;
use crate::tasks::repo::NewTask;
use crate::tasks::runner::{Job, JobError, TaskHandler};
use crate::tasks::{Task, TaskType};
use crate::webhooks::destination;

/// An S3 bucket's credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TranscodeS3Credentials)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Where the file comes from: a URL, or an object of an S3 bucket.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TranscodeInput)]
pub struct TranscodeInput {
    /// An http(s), `ipfs://` or `ar://` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `s3` for a bucket's object.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub credentials: Option<S3Credentials>,
}

/// Where the outputs go: an S3 bucket.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TranscodeStorage)]
pub struct TranscodeStorage {
    /// `s3` (`web3.storage` is not supported).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
}

/// A folder of the output bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TranscodeOutputPath)]
pub struct OutputPath {
    pub path: String,
}

/// What to make.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TranscodeOutputs)]
pub struct TranscodeOutputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls: Option<OutputPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mp4: Option<OutputPath>,
    /// Fragmented MP4 (not supported by this server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmp4: Option<OutputPath>,
}

/// `POST /transcode` (Studio's `transcode-payload`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TranscodePayload)]
pub struct TranscodePayload {
    pub input: TranscodeInput,
    pub storage: TranscodeStorage,
    pub outputs: TranscodeOutputs,
    #[serde(default)]
    pub profiles: Option<Vec<TranscodeProfile>>,
    #[serde(default)]
    pub target_segment_size_secs: Option<f64>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub creator_id: Option<serde_json::Value>,
    #[serde(default)]
    pub c2pa: Option<bool>,
}

/// A bucket as a job reaches it (from the task's secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    endpoint: String,
    bucket: String,
    credentials: S3Credentials,
}

impl Bucket {
    /// Connects to the bucket; every connection's address passes the destination guard (the
    /// check when the request came proves nothing about what the name resolves to now).
    async fn open(&self, allow_private: bool) -> Result<S3Store, JobError> {
        let settings = S3Settings {
            bucket: self.bucket.clone(),
            prefix: String::new(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            access_key_id: Some(self.credentials.access_key_id.clone()),
            secret_access_key: Some(self.credentials.secret_access_key.clone()),
            session_token: None,
            force_path_style: true,
        };
        let resolver = SharedDnsResolver::new(destination::GuardedResolver { allow_private });
        S3Store::connect_resolving(&settings, resolver)
            .await
            .map_err(|e| JobError::Fatal(format!("opening the bucket {}: {e}", self.bucket)))
    }
}

/// A folder path as an object key prefix: no leading or trailing slash, nothing that escapes.
fn folder(field: &str, path: &str, problems: &mut Problems) -> String {
    let trimmed = path.trim_matches('/').to_string();
    if trimmed.is_empty() || studio_media_core::store::validate_key(&trimmed).is_err() {
        problems.add(format!(
            "{field} must be a path of the bucket (letters, digits, '-', '_', '.', '/'), got {path:?}"
        ));
    }
    trimmed
}

fn bucket_of(
    field: &str,
    kind: Option<&str>,
    endpoint: Option<&String>,
    bucket: Option<&String>,
    credentials: Option<S3Credentials>,
    problems: &mut Problems,
) -> Option<Bucket> {
    if kind != Some("s3") {
        problems.add(format!(
            "{field}.type must be \"s3\" (other storage is not supported by this server)"
        ));
        return None;
    }
    let endpoint =
        endpoint.filter(|e| crate::http::validate::is_url_with_scheme(e, &["http", "https"]));
    let bucket = bucket.filter(|b| !b.is_empty() && b.len() <= 63);
    if endpoint.is_none() {
        problems.add(format!(
            "{field}.endpoint must be an http:// or https:// URL"
        ));
    }
    if bucket.is_none() {
        problems.add(format!("{field}.bucket is required"));
    }
    if credentials.is_none() {
        problems.add(format!("{field}.credentials is required"));
    }
    Some(Bucket {
        endpoint: endpoint?.clone(),
        bucket: bucket?.clone(),
        credentials: credentials?,
    })
}

/// Refuses endpoints on private, loopback or link-local addresses (unless allowed).
async fn check_endpoint(endpoint: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| format!("{endpoint} is not a URL"))?;
    destination::check_literal_host(&url, false).map_err(|e| e.to_string())?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?;
        for addr in addrs {
            if destination::is_internal(addr.ip()) {
                return Err(
                    destination::RefusedDestination(format!("{host} ({})", addr.ip())).to_string(),
                );
            }
        }
    }
    Ok(())
}

/// Transcode a file into your S3 bucket.
#[utoipa::path(post, path = "/transcode", tag = "transcode", operation_id = "transcodeVideo",
    request_body = TranscodePayload,
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn transcode(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<TranscodePayload>,
) -> ApiResult<Json<Task>> {
    let mut problems = Problems::default();
    let input = &payload.input;
    let (input_url, input_bucket, input_path) = match &input.url {
        Some(url) => {
            if input.kind.is_some() || input.bucket.is_some() || input.credentials.is_some() {
                problems.add("input takes either url or an S3 object (type, endpoint, bucket, path, credentials)");
            }
            (
                Some(super::import::resolve(url, state.config())?),
                None,
                None,
            )
        }
        None => {
            let bucket = bucket_of(
                "input",
                input.kind.as_deref(),
                input.endpoint.as_ref(),
                input.bucket.as_ref(),
                input.credentials.clone(),
                &mut problems,
            );
            let path = folder(
                "input.path",
                input.path.as_deref().unwrap_or(""),
                &mut problems,
            );
            (None, bucket, Some(path))
        }
    };
    // Credentials are an S3 bucket's only for S3 storage (the type is checked below).
    let credentials = match payload.storage.kind.as_str() {
        "s3" => payload
            .storage
            .credentials
            .clone()
            .map(serde_json::from_value::<S3Credentials>)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("storage.credentials: {e}")))?,
        _ => None,
    };
    let output_bucket = bucket_of(
        "storage",
        Some(payload.storage.kind.as_str()),
        payload.storage.endpoint.as_ref(),
        payload.storage.bucket.as_ref(),
        credentials,
        &mut problems,
    );
    let outputs = &payload.outputs;
    if outputs.fmp4.is_some() {
        problems.add("outputs.fmp4: fragmented MP4 output is not supported by this server");
    }
    if outputs.hls.is_none() && outputs.mp4.is_none() {
        problems.add("outputs must name hls and/or mp4");
    }
    let hls = outputs
        .hls
        .as_ref()
        .map(|o| folder("outputs.hls.path", &o.path, &mut problems));
    let mp4 = outputs
        .mp4
        .as_ref()
        .map(|o| folder("outputs.mp4.path", &o.path, &mut problems));
    super::validate_ladder(
        &mut problems,
        payload.profiles.as_deref(),
        payload.target_segment_size_secs,
    );
    if payload.profiles.as_ref().is_some_and(Vec::is_empty) {
        problems.add("profiles must name at least one profile");
    }
    problems.into_result()?;
    let allow_private = state.config().webhooks.allow_private_destinations;
    for bucket in input_bucket.iter().chain(output_bucket.iter()) {
        check_endpoint(&bucket.endpoint, allow_private)
            .await
            .map_err(|e| ApiError::invalid(format!("endpoint refused: {e}")))?;
    }
    let output_bucket = output_bucket.expect("validated above");

    let shown_bucket =
        |b: &Bucket| serde_json::json!({"type": "s3", "endpoint": b.endpoint, "bucket": b.bucket});
    let mut params = serde_json::json!({
        "input": match (&input_url, &input_bucket) {
            (Some(url), _) => serde_json::json!({ "url": url }),
            (None, Some(bucket)) => {
                let mut shown = shown_bucket(bucket);
                shown["path"] = serde_json::json!(input_path);
                shown
            }
            (None, None) => serde_json::Value::Null,
        },
        "storage": shown_bucket(&output_bucket),
        "outputs": {},
    });
    // Absent outputs are left out (the SDKs refuse null ones).
    for (name, path) in [("hls", &hls), ("mp4", &mp4)] {
        if let Some(path) = path {
            params["outputs"][name] = serde_json::json!({ "path": path });
        }
    }
    if let Some(profiles) = &payload.profiles {
        params["profiles"] = serde_json::to_value(profiles).map_err(anyhow::Error::from)?;
    }
    if let Some(secs) = payload.target_segment_size_secs {
        params["targetSegmentSizeSecs"] = serde_json::json!(secs);
    }
    let mut new = NewTask::new(
        &principal.project_id,
        &principal.user_id,
        TaskType::TranscodeFile,
        params,
    );
    new.max_attempts = 3;
    new.secrets = Some(serde_json::json!({
        "input": input_bucket,
        "storage": output_bucket,
    }));
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let (task, _) = crate::tasks::repo::spawn(&mut tx, &new, now).await?;
    tx.commit().await?;
    state.wake_webhooks();
    state.wake_tasks();
    Ok(Json(task))
}

/// Runs `transcode-file` tasks with the asset pipeline.
pub struct TranscodeFiles {
    pipeline: Arc<AssetTasks>,
    db: crate::db::Database,
    allow_private: bool,
}

impl TranscodeFiles {
    pub fn new(
        pipeline: Arc<AssetTasks>,
        db: crate::db::Database,
        allow_private: bool,
    ) -> TranscodeFiles {
        TranscodeFiles {
            pipeline,
            db,
            allow_private,
        }
    }

    async fn run_job(&self, job: &Job) -> Result<serde_json::Value, JobError> {
        let secrets = crate::tasks::repo::secrets(&self.db, &job.task.project_id, &job.task.id)
            .await
            .map_err(JobError::database)?
            .ok_or_else(|| JobError::Fatal("the task's credentials are gone".into()))?;
        let bucket = |name: &str| -> Result<Option<Bucket>, JobError> {
            serde_json::from_value(secrets.get(name).cloned().unwrap_or_default())
                .map_err(|e| JobError::Fatal(format!("the task's {name} bucket: {e}")))
        };
        let (input_bucket, output_bucket) = (bucket("input")?, bucket("storage")?);
        let output_bucket = output_bucket
            .ok_or_else(|| JobError::Fatal("the task names no output bucket".into()))?;
        for b in input_bucket.iter().chain(std::iter::once(&output_bucket)) {
            check_endpoint(&b.endpoint, self.allow_private)
                .await
                .map_err(|e| JobError::Fatal(format!("endpoint refused: {e}")))?;
        }
        let params = job.params().clone();
        let source = job.scratch.join("source");
        match (params["input"]["url"].as_str(), &input_bucket) {
            (Some(url), _) => {
                self.pipeline.fetch_url(url, &source).await?;
            }
            (None, Some(bucket)) => {
                let store = bucket.open(self.allow_private).await?;
                let key = params["input"]["path"].as_str().unwrap_or_default();
                super::pipeline::download(&store, &[key.to_string()], &source, |key| {
                    format!("{key} is not in the bucket {}", bucket.bucket)
                })
                .await?;
            }
            (None, None) => return Err(JobError::Fatal("the task names no input".into())),
        }
        job.set_progress(0.05);
        let info = self.pipeline.probe(&source).await?;
        let profiles: Option<Vec<TranscodeProfile>> = params
            .get("profiles")
            .filter(|p| !p.is_null())
            .map(|p| serde_json::from_value(p.clone()))
            .transpose()
            .map_err(|e| JobError::Fatal(format!("profiles: {e}")))?;
        let renditions = self.pipeline.ladder(profiles.as_deref(), &info);
        let target = self.pipeline.segment_target(job);
        let output = output_bucket.open(self.allow_private).await?;
        let hls = params["outputs"]["hls"]["path"]
            .as_str()
            .map(str::to_string);
        let mp4 = params["outputs"]["mp4"]["path"]
            .as_str()
            .map(str::to_string);
        let dest = Destination {
            store: &output as &dyn ObjectStore,
            // Without an HLS output, the HLS is made in the job's own folder of the bucket and
            // removed once the MP4s are made.
            hls: hls.clone().unwrap_or_else(|| {
                format!(
                    "{}/.transcode-{}",
                    mp4.as_deref().unwrap_or(""),
                    job.task.id
                )
            }),
            mp4: mp4.clone(),
            asset: None,
            name: &job.task.id,
        };
        let packaged = self
            .pipeline
            .package(job, &dest, &source, &info, renditions, target)
            .await?;
        let files = self
            .pipeline
            .static_mp4s(job, &dest, packaged.mp4_sources, &info)
            .await?;
        if hls.is_none() {
            output
                .delete_folder(&dest.hls)
                .await
                .map_err(|e| JobError::Retriable(format!("the output bucket: {e}")))?;
        }
        let mut output = serde_json::json!({
            "mp4": files.iter().map(|f| serde_json::json!({
                "path": f.path, "size": f.size, "width": f.width, "height": f.height, "bitrate": f.bitrate,
            })).collect::<Vec<_>>(),
            "duration": info.duration_s,
        });
        if let Some(hls) = hls {
            output["hls"] = serde_json::json!({ "path": format!("{hls}/index.m3u8") });
        }
        Ok(output)
    }
}

impl TaskHandler for TranscodeFiles {
    fn task_type(&self) -> TaskType {
        TaskType::TranscodeFile
    }

    /// Transcoding a ladder keeps every core busy.
    fn cores(&self) -> usize {
        usize::MAX
    }

    fn run<'a>(&'a self, job: Job) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move { self.run_job(&job).await })
    }
}
