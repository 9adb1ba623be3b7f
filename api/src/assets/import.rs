//! URL imports. `POST /asset/upload/url` creates the asset (`waiting`) and its queued `upload`
//! task; the task downloads the file ([`Importer`]) and processes it like an upload. Importing
//! the same URL again while its asset is still waiting or processing (within 15 minutes)
//! answers the first asset and task (200) instead of making another.
//!
//! Downloads go through the same guard as webhooks: hosts that are, or resolve to, private,
//! loopback or link-local addresses are refused unless private destinations are allowed, and
//! every redirect is checked again (at most 5). Size and time are bounded; `ipfs://` and `ar://`
//! URLs are fetched through the configured gateways.

use std::path::Path;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use super::upload::{Digests, Received, TaskRef};
use super::{Asset, AssetPhase, AssetSource, NewAssetPayload, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::tasks::TaskType;
use crate::webhooks::destination;

/// How long an import of the same URL answers the first asset.
const DEDUPE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// A download that receives nothing for this long is abandoned (and retried).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The answer to `upload/url`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UploadUrlResponse)]
pub struct UploadUrlResponse {
    pub asset: Asset,
    pub task: TaskRef,
}

/// Import an asset from a URL.
#[utoipa::path(post, path = "/asset/upload/url", tag = "asset", operation_id = "uploadAssetFromUrl",
    request_body = NewAssetPayload,
    responses((status = 201, body = UploadUrlResponse), (status = 200, body = UploadUrlResponse, description = "The same URL is already being imported"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn upload_url(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<NewAssetPayload>,
) -> ApiResult<(StatusCode, Json<UploadUrlResponse>)> {
    let url = payload
        .url
        .clone()
        .ok_or_else(|| ApiError::invalid("url is required"))?;
    let fetch_url = resolve(&url, state.config())?;
    let base = state.public_url();
    if let Some(asset) = repo::recent_import(
        state.db(),
        &principal.project_id,
        &url,
        now_ms() - DEDUPE_WINDOW_MS,
    )
    .await?
        && let Some(task) = crate::tasks::repo::find_unique(
            state.db(),
            &principal.project_id,
            TaskType::Upload,
            &asset.id,
        )
        .await?
    {
        return Ok((
            StatusCode::OK,
            Json(UploadUrlResponse {
                asset: asset.for_response(base, false),
                task: TaskRef { id: task.id },
            }),
        ));
    }
    let gateway_url = (fetch_url != url).then(|| fetch_url.clone());
    let (asset, task) = super::create(
        &state,
        &principal,
        payload,
        AssetSource::Url { url, gateway_url },
        AssetPhase::Waiting,
        serde_json::json!({ "url": fetch_url }),
        false,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadUrlResponse {
            asset: asset.for_response(base, false),
            task: TaskRef { id: task },
        }),
    ))
}

/// The http(s) URL to fetch for an import URL: itself, or its IPFS or Arweave gateway URL.
pub(crate) fn resolve(url: &str, config: &Config) -> ApiResult<String> {
    let bad = || {
        ApiError::invalid(format!(
            "url must be an http://, https://, ipfs:// or ar:// URL, got {url:?}"
        ))
    };
    if url.len() > 2048 {
        return Err(ApiError::invalid("url must be at most 2048 characters"));
    }
    let fetch = if let Some(rest) = url.strip_prefix("ipfs://") {
        format!("{}{rest}", config.vod.ipfs_gateway)
    } else if let Some(rest) = url.strip_prefix("ar://") {
        format!("{}{rest}", config.vod.arweave_gateway)
    } else {
        url.to_string()
    };
    let parsed = reqwest::Url::parse(&fetch).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad());
    }
    Ok(fetch)
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Trying again would fail the same way (refused, 4xx, too large).
    #[error("{0}")]
    Fatal(String),
    /// Worth trying again (a timeout, a 5xx, a dropped connection).
    #[error("{0}")]
    Retriable(String),
}

/// Downloads imports through the destination guard.
pub struct Importer {
    client: reqwest::Client,
    max_bytes: u64,
    allow_private: bool,
}

impl Importer {
    pub fn new(config: &Config) -> anyhow::Result<Importer> {
        let allow_private = config.webhooks.allow_private_destinations;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                attempt.error("a redirect left http(s)")
            } else if let Err(refused) =
                destination::check_literal_host(attempt.url(), allow_private)
            {
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(destination::resolver(allow_private))
            .redirect(redirects)
            .no_proxy()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(config.vod.import_timeout_secs.max(1)))
            .user_agent("livepeer.studio")
            .build()?;
        Ok(Importer {
            client,
            max_bytes: config.vod.max_upload_bytes,
            allow_private,
        })
    }

    /// Downloads `url` into the file `path`, hashing it; at most `max_upload_bytes`.
    pub async fn fetch(&self, url: &str, path: &Path) -> Result<Received, ImportError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| ImportError::Fatal(format!("{url} is not a URL")))?;
        let shown = shown(&parsed);
        destination::check_literal_host(&parsed, self.allow_private)
            .map_err(|e| ImportError::Fatal(format!("fetching {shown}: {e}")))?;
        let response = self.client.get(parsed).send().await.map_err(|e| {
            let refused = destination::is_refusal(&e);
            let message = format!("fetching {shown} failed: {}", describe(&e));
            if refused || e.is_redirect() || e.is_builder() {
                ImportError::Fatal(message)
            } else {
                ImportError::Retriable(message)
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("fetching {shown} failed: {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                ImportError::Retriable(message)
            } else {
                ImportError::Fatal(message)
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(self.too_large(&shown));
        }
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| ImportError::Retriable(format!("creating the scratch file: {e}")))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut digests = Digests::default();
        let mut body = response.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(READ_IDLE_TIMEOUT, body.next()).await {
                Err(_) => {
                    return Err(ImportError::Retriable(format!(
                        "fetching {shown} stalled: nothing received for {} s",
                        READ_IDLE_TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(ImportError::Retriable(format!(
                        "fetching {shown} broke off: {}",
                        describe(&e)
                    )));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if digests.size() + chunk.len() as u64 > self.max_bytes {
                return Err(self.too_large(&shown));
            }
            digests.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ImportError::Retriable(format!("writing the scratch file: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ImportError::Retriable(format!("writing the scratch file: {e}")))?;
        if digests.size() == 0 {
            return Err(ImportError::Fatal(format!("{shown} is empty")));
        }
        Ok(digests.finish())
    }

    fn too_large(&self, shown: &str) -> ImportError {
        ImportError::Fatal(format!(
            "{shown} is larger than the {} bytes allowed",
            self.max_bytes
        ))
    }
}

/// A URL as errors show it: without credentials, query or fragment (they may hold secrets).
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A reqwest error with its causes, without the URL (which may hold secrets).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "could not connect".to_string()
    } else {
        String::from("request failed")
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
