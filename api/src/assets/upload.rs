//! Uploads. `POST /asset/request-upload` creates the asset (`uploading`) and its `upload` task,
//! held `pending` until the file arrives, and answers two URLs that carry a signed, expiring
//! token naming the asset: `url` for one direct `PUT` of the file, `tusEndpoint` for TUS.
//!
//! A direct `PUT` is streamed to a scratch file (memory stays bounded whatever the size), then
//! stored in the object store under a key of its own (`uploads/{assetId}/{uploadId}`, never
//! served; a local media directory takes the file as it is). Its MD5 and SHA-256 are computed by
//! the asset's job, off the upload's path. The asset moves to `waiting` and the task is
//! queued in one transaction, which only one upload can win: a second `PUT` of the same asset
//! gets 422 and its object is removed. Any origin may upload (the token is the credential).

use std::path::Path;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spool::Spool;
use super::{Asset, AssetPhase, AssetSource, NewAssetPayload, repo};
use crate::app::AppState;
use crate::auth::Principal;
use crate::config::Config;
use crate::db::Database;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::tasks::TaskType;
use crate::tasks::repo::NewTask;

/// The token's audience: upload URLs and nothing else.
const AUDIENCE: &str = "studio-upload";
/// A `PUT` body that sends nothing for this long is dropped.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Refused uploads up to this size are read to their end before the refusal is sent.
const DRAIN_BEFORE_REFUSING: u64 = 16 * 1024 * 1024;

/// What an upload token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The asset.
    sub: String,
    /// Its project.
    project: String,
    aud: String,
    exp: u64,
}

/// Signs and checks upload tokens (HS256).
pub struct UploadTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl UploadTokens {
    /// The configured secret, or the one kept in the database (made on first start).
    pub async fn load(config: &Config, db: &Database) -> anyhow::Result<UploadTokens> {
        let secret = match &config.vod.upload_token_secret {
            Some(secret) => secret.expose().to_string(),
            None => crate::secrets::server_secret(db, "upload_token_secret").await?,
        };
        Ok(UploadTokens {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl: Duration::from_secs(config.vod.upload_url_ttl_secs.max(60)),
        })
    }

    fn sign(&self, project_id: &str, asset_id: &str) -> ApiResult<String> {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + self.ttl;
        let claims = Claims {
            sub: asset_id.into(),
            project: project_id.into(),
            aud: AUDIENCE.into(),
            exp: exp.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing an upload token: {e}")))
    }

    /// The (project, asset) a valid token names; 403 otherwise.
    pub fn verify(&self, token: &str) -> ApiResult<(String, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Forbidden("the upload URL has expired: request a new one".into())
                }
                _ => ApiError::Forbidden("invalid upload token".into()),
            },
        )?;
        Ok((data.claims.project, data.claims.sub))
    }
}

/// The answer to `request-upload`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RequestUploadResponse)]
pub struct RequestUploadResponse {
    /// `PUT` the file's bytes here.
    pub url: String,
    /// Or upload it with TUS here.
    pub tus_endpoint: String,
    pub asset: Asset,
    pub task: TaskRef,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskRef)]
pub struct TaskRef {
    pub id: String,
}

/// Create an asset to upload a file to.
#[utoipa::path(post, path = "/asset/request-upload", tag = "asset", operation_id = "requestUpload",
    request_body = NewAssetPayload,
    responses((status = 200, body = RequestUploadResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn request_upload(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(payload): JsonBody<NewAssetPayload>,
) -> ApiResult<Json<RequestUploadResponse>> {
    let (asset, task) = super::create(
        &state,
        &principal,
        payload,
        AssetSource::DirectUpload {},
        AssetPhase::Uploading,
        serde_json::json!({}),
        true,
    )
    .await?;
    let token = state.upload_tokens().sign(&asset.project_id, &asset.id)?;
    let base = state.public_url();
    Ok(Json(RequestUploadResponse {
        url: format!("{base}/api/asset/upload/direct?token={token}"),
        tus_endpoint: format!("{base}/api/asset/upload/tus?token={token}"),
        asset: asset.for_response(base, false),
        task: TaskRef { id: task },
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// Upload the file of an asset in one request (the `url` of `request-upload`).
#[utoipa::path(put, path = "/asset/upload/direct", tag = "asset", operation_id = "uploadDirect",
    params(("token" = String, Query, description = "The token of the upload URL")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Uploaded; processing starts"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(()))]
pub(super) async fn upload_direct(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let limit = state.config().vod.max_upload_bytes;
    let declared = declared_length(&headers);
    let asset = match accept_upload(&state, query, declared, limit).await {
        Ok(asset) => asset,
        Err(refusal) => {
            drain_refused(&headers, body).await;
            return Err(refusal);
        }
    };
    // In this node's scratch space: a file left by a crash goes with it.
    let scratch = state.runner().scratch_dir().join("uploads").join(format!(
        "{}-{}",
        asset.id,
        crate::ids::new_id()
    ));
    let received = receive(body, &scratch, limit).await;
    let outcome = match received {
        Ok(size) => store_upload(&state, &asset, &scratch, size).await,
        Err(err) => Err(err),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    outcome.map(|()| StatusCode::OK)
}

/// The asset a direct upload is for, if the upload may go ahead.
async fn accept_upload(
    state: &AppState,
    query: TokenQuery,
    declared: Option<u64>,
    limit: u64,
) -> ApiResult<Asset> {
    let token = query
        .token
        .ok_or_else(|| ApiError::Forbidden("the upload URL has no token".into()))?;
    let (project_id, asset_id) = state.upload_tokens().verify(&token)?;
    let asset = repo::get(state.db().reader(), &project_id, &asset_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if asset.status.phase != AssetPhase::Uploading {
        return Err(ApiError::invalid(
            "the asset's file has already been uploaded",
        ));
    }
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    Ok(asset)
}

/// The body length a request declares (`Content-Length`), if it does.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads and drops the body of a refused upload request, if it is small: a client still
/// sending it reads the refusal only if it is let finish (a large one is cut, which is
/// cheaper). At most a few seconds.
pub(super) async fn drain_refused(headers: &HeaderMap, body: Body) {
    if declared_length(headers).is_none_or(|n| n > DRAIN_BEFORE_REFUSING) {
        return;
    }
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("the file is larger than the {limit} bytes allowed"))
}

/// What a received upload is: its size and digests.
pub struct Received {
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

impl Received {
    /// The digests as the asset shows them.
    pub fn hashes(&self) -> Vec<super::Hash> {
        vec![
            super::Hash {
                hash: self.md5.clone(),
                algorithm: "md5".into(),
            },
            super::Hash {
                hash: self.sha256.clone(),
                algorithm: "sha256".into(),
            },
        ]
    }
}

/// MD5 and SHA-256 of a byte stream, fed as it goes by.
#[derive(Default)]
pub struct Digests {
    md5: md5::Md5,
    sha256: sha2::Sha256,
    size: u64,
}

impl Digests {
    pub fn update(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        md5::Digest::update(&mut self.md5, chunk);
        sha2::Digest::update(&mut self.sha256, chunk);
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Received {
        Received {
            size: self.size,
            md5: hex::encode(md5::Digest::finalize(self.md5)),
            sha256: hex::encode(sha2::Digest::finalize(self.sha256)),
        }
    }
}

/// Streams `body` into the file `path`, at most `limit` bytes; returns its size.
/// (The file's digests are computed by its job, off the upload's path.)
async fn receive(body: Body, path: &Path, limit: u64) -> ApiResult<u64> {
    let internal =
        |e: std::io::Error| ApiError::Internal(anyhow::anyhow!("writing the upload: {e}"));
    let mut spool = Spool::create(path.to_path_buf()).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let received = async {
        loop {
            let chunk = match tokio::time::timeout(BODY_IDLE_TIMEOUT, stream.next()).await {
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "the upload sent nothing for {} s",
                        BODY_IDLE_TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(err))) => {
                    return Err(ApiError::BadRequest(format!("the upload broke off: {err}")));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if spool.size() + chunk.len() as u64 > limit {
                return Err(too_large(limit));
            }
            spool.write(&chunk).await.map_err(internal)?;
        }
    }
    .await;
    if let Err(err) = received {
        spool.discard().await;
        return Err(err);
    }
    let (_, size) = spool.finish().await.map_err(internal)?;
    if size == 0 {
        return Err(ApiError::invalid("the upload is empty"));
    }
    Ok(size)
}

/// Puts the received file in the store and hands the asset to its task; only the first upload
/// of an asset does.
async fn store_upload(
    state: &AppState,
    asset: &Asset,
    path: &std::path::Path,
    size: u64,
) -> ApiResult<()> {
    let key = format!("uploads/{}/{}", asset.id, crate::ids::new_id());
    state
        .media_store()
        .put_file_moved(&key, path)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing the upload: {e}")))?;
    let arrived = async {
        let mut tx = state.db().begin().await?;
        let won = super::source_arrived(
            &mut tx,
            asset,
            None,
            serde_json::json!({ "sourceKey": key, "size": size }),
            state.public_url(),
        )
        .await?;
        if won {
            tx.commit().await?;
        }
        Ok::<bool, ApiError>(won)
    }
    .await;
    match arrived {
        Ok(true) => {
            state.wake_webhooks();
            state.wake_tasks();
            Ok(())
        }
        Ok(false) => {
            let _ = state.media_store().delete(&key).await;
            Err(ApiError::invalid(
                "the asset's file has already been uploaded",
            ))
        }
        Err(err) => {
            let _ = state.media_store().delete(&key).await;
            Err(err)
        }
    }
}

/// The `upload` task of a new asset.
pub(super) fn upload_task(asset: &Asset, params: serde_json::Value, held: bool) -> NewTask {
    let mut task = NewTask::new(&asset.project_id, &asset.user_id, TaskType::Upload, params);
    task.output_asset_id = Some(asset.id.clone());
    task.unique_key = Some(asset.id.clone());
    task.held = held;
    task.max_attempts = 3;
    task
}
