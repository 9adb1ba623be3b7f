//! TUS 1.0.0 resumable uploads (the `tusEndpoint` of `request-upload`): core protocol plus the
//! creation, creation-with-upload, termination and expiration extensions, written for this
//! server so that an upload resumes on any node and after a restart.
//!
//! - The upload's state (length, offset, expiry) is a row in the database; its bytes are
//!   objects in the media store, one per stored piece (`tus/{uploadId}/{start}-{nonce}`, up to
//!   [`PIECE_BYTES`] each), listed in `tus_parts`. A `PATCH` stores its body piece by piece (each
//!   written to a scratch file as it arrives, made durable and stored while the next arrives), so a connection that breaks keeps every piece stored before (and
//!   what it had received of the last one), and `HEAD` tells the client where to resume.
//! - Each piece is committed by one conditional update of the offset: two writers at the same
//!   offset (two nodes, a client retrying) cannot both win; the loser's object is removed and it
//!   gets 409, as for a wrong `Upload-Offset`.
//! - The piece that completes the upload hands the asset to its `upload` task in the same
//!   transaction; the task reads the pieces in order (and computes the file's digests).
//! - Uploads past their expiry (`Upload-Expires`, the upload URL's lifetime) are refused (410)
//!   and removed, pieces and all, by [`expire`].
//!
//! The upload URL (`Location`) is a capability: its id is 128 random bits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sqlx::Row;

use super::spool::Spool;
use super::{AssetPhase, repo as assets_repo};
use crate::app::AppState;
use crate::clock::now_ms;
use crate::db::Database;
use crate::error::{ApiError, ErrorBody};

/// The protocol version this server speaks.
const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration";
/// The largest piece stored as one object (written to a scratch file as it arrives).
pub const PIECE_BYTES: u64 = 32 * 1024 * 1024;
/// Largest `Upload-Metadata` header kept.
const MAX_METADATA_BYTES: usize = 4096;
/// A `PATCH` body that sends nothing for this long is cut; what it sent is kept.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
static TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
static TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
static TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
static UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
static UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
static UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
static UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
static UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");

/// A TUS answer: a status, TUS headers, and (for errors) a Studio-style error body.
struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    error: Option<String>,
}

impl Answer {
    fn new(status: StatusCode) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            error: None,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer {
            error: Some(message.into()),
            ..Answer::new(status)
        }
    }

    fn header(mut self, name: &HeaderName, value: impl ToString) -> Answer {
        self.headers.push((name.clone(), value.to_string()));
        self
    }
}

impl From<ApiError> for Answer {
    fn from(err: ApiError) -> Answer {
        let status = err.status();
        if let ApiError::Internal(cause) = &err {
            tracing::error!(error = format!("{cause:#}"), "TUS upload failed");
            return Answer::error(status, "internal server error");
        }
        Answer::error(status, err.to_string())
    }
}

impl From<sqlx::Error> for Answer {
    fn from(err: sqlx::Error) -> Answer {
        ApiError::from(err).into()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = match self.error {
            Some(message) => (
                self.status,
                axum::Json(ErrorBody {
                    errors: vec![message],
                }),
            )
                .into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(VERSION));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// Every request but `OPTIONS` must speak 1.0.0 (412 otherwise).
fn check_version(headers: &HeaderMap) -> Result<(), Answer> {
    match headers.get(&TUS_RESUMABLE).and_then(|v| v.to_str().ok()) {
        Some(VERSION) => Ok(()),
        _ => Err(Answer::error(
            StatusCode::PRECONDITION_FAILED,
            "Tus-Resumable: 1.0.0 is required",
        )
        .header(&TUS_VERSION, VERSION)),
    }
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, Answer> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Answer::error(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a non-negative integer"),
                )
            }),
    }
}

fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// `OPTIONS`: what this server supports.
pub(super) async fn options(State(state): State<AppState>) -> Response {
    Answer::new(StatusCode::NO_CONTENT)
        .header(&TUS_VERSION, VERSION)
        .header(&TUS_EXTENSION, EXTENSIONS)
        .header(&TUS_MAX_SIZE, state.config().vod.max_upload_bytes)
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// `POST ?token=`: creates the upload of the token's asset (with its first bytes when the
/// body has some: creation-with-upload).
pub(super) async fn create(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match create_upload(&state, query, &headers, body).await {
        Ok(answer) | Err(answer) => answer.into_response(),
    }
}

async fn create_upload(
    state: &AppState,
    query: TokenQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, Answer> {
    check_version(headers)?;
    let token = query
        .token
        .ok_or_else(|| Answer::error(StatusCode::FORBIDDEN, "the upload URL has no token"))?;
    let (project_id, asset_id) = state.upload_tokens().verify(&token)?;
    let asset = assets_repo::get(state.db().reader(), &project_id, &asset_id)
        .await?
        .ok_or_else(|| Answer::from(ApiError::not_found()))?;
    if asset.status.phase != AssetPhase::Uploading {
        return Err(ApiError::invalid("the asset's file has already been uploaded").into());
    }
    if headers.contains_key(&UPLOAD_DEFER_LENGTH) {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "Upload-Defer-Length is not supported: send Upload-Length",
        ));
    }
    let length = number(headers, &UPLOAD_LENGTH)?
        .ok_or_else(|| Answer::error(StatusCode::BAD_REQUEST, "Upload-Length is required"))?;
    let max = state.config().vod.max_upload_bytes;
    if length > max {
        return Err(Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Upload-Length {length} is larger than the {max} bytes allowed"),
        )
        .header(&TUS_MAX_SIZE, max));
    }
    if length == 0 {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "the upload is empty",
        ));
    }
    // An empty Upload-Metadata header is valid (tuspy sends one).
    let metadata = headers
        .get(&UPLOAD_METADATA)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if metadata
        .as_ref()
        .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
    {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            format!("Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let now = now_ms();
    let expires_at = now + state.config().vod.upload_url_ttl_secs.max(60) as i64 * 1000;
    sqlx::query(
        "INSERT INTO tus_uploads (id, project_id, asset_id, length, metadata, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&project_id)
    .bind(&asset_id)
    .bind(length as i64)
    .bind(&metadata)
    .bind(now)
    .bind(expires_at)
    .execute(state.db().writer())
    .await?;
    let location = format!("{}/api/asset/upload/tus/{id}", state.public_url());
    let mut answer = Answer::new(StatusCode::CREATED)
        .header(&header::LOCATION, &location)
        .header(&UPLOAD_EXPIRES, http_date(expires_at));
    let has_body = content_type_is_offset_stream(headers)
        && number(headers, &header::CONTENT_LENGTH)?.is_none_or(|n| n > 0);
    if has_body {
        let upload = load(state.db(), &id).await?.ok_or_else(gone)?;
        match receive(state, &upload, 0, body).await {
            Ok(offset) => answer = answer.header(&UPLOAD_OFFSET, offset),
            // The upload exists; the client learns how far it got with HEAD.
            Err(err) => {
                tracing::warn!(upload = %id, error = err.error.as_deref().unwrap_or(""), "the first bytes of a TUS upload were not all stored")
            }
        }
    } else {
        answer = answer.header(&UPLOAD_OFFSET, 0);
    }
    Ok(answer)
}

fn content_type_is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// An upload as the database has it.
#[derive(Clone)]
struct Upload {
    id: String,
    project_id: String,
    asset_id: String,
    length: u64,
    offset: u64,
    expires_at: i64,
    completed: bool,
}

async fn load(db: &Database, id: &str) -> Result<Option<Upload>, sqlx::Error> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, project_id, asset_id, length, upload_offset, expires_at, completed_at FROM tus_uploads WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.writer())
    .await?;
    row.map(|row| {
        Ok(Upload {
            id: row.try_get("id")?,
            project_id: row.try_get("project_id")?,
            asset_id: row.try_get("asset_id")?,
            length: row.try_get::<i64, _>("length")?.max(0) as u64,
            offset: row.try_get::<i64, _>("upload_offset")?.max(0) as u64,
            expires_at: row.try_get("expires_at")?,
            completed: row.try_get::<Option<i64>, _>("completed_at")?.is_some(),
        })
    })
    .transpose()
}

fn gone() -> Answer {
    Answer::error(StatusCode::NOT_FOUND, "no such upload")
}

/// The upload, unless it is unknown (404) or expired (410).
async fn live_upload(state: &AppState, id: &str) -> Result<Upload, Answer> {
    let upload = load(state.db(), id).await?.ok_or_else(gone)?;
    if !upload.completed && upload.expires_at <= now_ms() {
        return Err(Answer::error(StatusCode::GONE, "the upload has expired"));
    }
    Ok(upload)
}

/// `HEAD`: how far the upload got.
pub(super) async fn head(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        check_version(&headers)?;
        let upload = live_upload(&state, &id).await?;
        Ok::<Answer, Answer>(
            Answer::new(StatusCode::OK)
                .header(&UPLOAD_OFFSET, upload.offset)
                .header(&UPLOAD_LENGTH, upload.length)
                .header(&UPLOAD_EXPIRES, http_date(upload.expires_at)),
        )
    }
    .await;
    let (Ok(answer) | Err(answer)) = answer;
    // HEAD answers carry no body.
    let mut response = answer.into_response();
    *response.body_mut() = Body::empty();
    response
}

/// `PATCH`: more bytes at `Upload-Offset`.
pub(super) async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let checked = async {
        check_version(&headers)?;
        if !content_type_is_offset_stream(&headers) {
            return Err(Answer::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be {OFFSET_OCTET_STREAM}"),
            ));
        }
        let offset = number(&headers, &UPLOAD_OFFSET)?
            .ok_or_else(|| Answer::error(StatusCode::BAD_REQUEST, "Upload-Offset is required"))?;
        let upload = live_upload(&state, &id).await?;
        if offset != upload.offset {
            return Err(Answer::error(
                StatusCode::CONFLICT,
                format!(
                    "Upload-Offset {offset} does not match the upload's offset {}",
                    upload.offset
                ),
            ));
        }
        Ok((upload, offset))
    }
    .await;
    let (upload, offset) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            super::upload::drain_refused(&headers, body).await;
            return refusal.into_response();
        }
    };
    match receive(&state, &upload, offset, body).await {
        Ok(offset) => Answer::new(StatusCode::NO_CONTENT)
            .header(&UPLOAD_OFFSET, offset)
            .header(&UPLOAD_EXPIRES, http_date(upload.expires_at))
            .into_response(),
        Err(answer) => answer.into_response(),
    }
}

/// `DELETE`: the upload and its pieces go (termination). A finished upload belongs to its
/// asset and stays.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        check_version(&headers)?;
        let upload = load(state.db(), &id).await?.ok_or_else(gone)?;
        if upload.completed {
            return Err(Answer::error(
                StatusCode::CONFLICT,
                "the upload is complete and belongs to its asset",
            ));
        }
        remove(&state, &upload.id).await?;
        Ok(Answer::new(StatusCode::NO_CONTENT))
    }
    .await;
    let (Ok(answer) | Err(answer)) = answer;
    answer.into_response()
}

/// Stores `body` from `offset` on, piece by piece; returns the offset reached. A body that
/// breaks off keeps what was received; one that goes past `Upload-Length` is cut there (400).
/// Each piece is written to a scratch file as its bytes arrive and stored (moved into a local
/// media directory, uploaded to S3) while the next one arrives: memory holds a write buffer,
/// whatever the piece size.
async fn receive(
    state: &AppState,
    upload: &Upload,
    offset: u64,
    body: Body,
) -> Result<u64, Answer> {
    let mut stream = body.into_data_stream();
    let mut writer = PieceWriter::new(state, upload, offset);
    let mut piece: Option<PieceFile> = None;
    loop {
        let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, stream.next()).await;
        let chunk = match next {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                // Keep what arrived; the client resumes from the offset HEAD tells.
                if let Some(piece) = piece.take() {
                    writer.push(piece).await?;
                }
                let offset = writer.settle().await?;
                return Err(Answer::error(
                    StatusCode::BAD_REQUEST,
                    "the upload broke off; resume from the offset HEAD gives",
                )
                .header(&UPLOAD_OFFSET, offset));
            }
        };
        let mut chunk: Bytes = chunk;
        let filling = piece.as_ref().map_or(0, PieceFile::size);
        let remaining = upload.length - writer.next_start - filling;
        let too_long = chunk.len() as u64 > remaining;
        if too_long {
            chunk.truncate(remaining as usize);
        }
        while !chunk.is_empty() {
            let file = match &mut piece {
                Some(file) => file,
                None => piece.insert(PieceFile::create(state, upload).await?),
            };
            let room = PIECE_BYTES - file.size();
            let take = chunk.split_to((room as usize).min(chunk.len()));
            file.write(&take).await?;
            if file.size() == PIECE_BYTES {
                writer.push(piece.take().expect("a piece is open")).await?;
            }
        }
        if too_long {
            if let Some(piece) = piece.take() {
                writer.push(piece).await?;
            }
            let offset = writer.settle().await?;
            return Err(
                Answer::error(StatusCode::BAD_REQUEST, "the body goes past Upload-Length")
                    .header(&UPLOAD_OFFSET, offset),
            );
        }
    }
    if let Some(piece) = piece.take() {
        writer.push(piece).await?;
    }
    writer.settle().await
}

/// A piece being received: a file in this node's scratch space.
struct PieceFile(Spool);

impl PieceFile {
    async fn create(state: &AppState, upload: &Upload) -> Result<PieceFile, Answer> {
        let path = state.runner().scratch_dir().join("uploads").join(format!(
            "tus-{}-{}",
            upload.id,
            crate::ids::new_id()
        ));
        let spool = Spool::create(path)
            .await
            .map_err(|e| scratch_error("creating an upload piece", e))?;
        Ok(PieceFile(spool))
    }

    fn size(&self) -> u64 {
        self.0.size()
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Answer> {
        self.0
            .write(data)
            .await
            .map_err(|e| scratch_error("writing an upload piece", e))
    }

    /// The finished file's path and size.
    async fn finish(self) -> Result<(std::path::PathBuf, u64), Answer> {
        let path = self.0.path().to_path_buf();
        match self.0.finish().await {
            Ok(done) => Ok(done),
            Err(err) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(scratch_error("writing an upload piece", err))
            }
        }
    }
}

fn scratch_error(what: &str, err: std::io::Error) -> Answer {
    Answer::from(ApiError::Internal(anyhow::anyhow!("{what}: {err}")))
}

/// Pieces being stored at once (synced and moved into the store while the ones before commit,
/// in order), all while the next arrives.
const PIECES_IN_FLIGHT: usize = 3;

/// Stores an upload's pieces, committed in order, while the next ones arrive.
struct PieceWriter {
    state: AppState,
    upload: Arc<Upload>,
    /// The offset committed so far.
    committed: u64,
    /// Where the next piece starts: the committed offset plus the pieces being stored.
    next_start: u64,
    /// Storing the last piece pushed; each piece's task waits for the one before to commit.
    last: Option<tokio::task::JoinHandle<Result<u64, Answer>>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl PieceWriter {
    fn new(state: &AppState, upload: &Upload, offset: u64) -> PieceWriter {
        PieceWriter {
            state: state.clone(),
            upload: Arc::new(upload.clone()),
            committed: offset,
            next_start: offset,
            last: None,
            slots: Arc::new(tokio::sync::Semaphore::new(PIECES_IN_FLIGHT)),
        }
    }

    /// Starts storing `piece`: synced to disk and moved into the store at once, committed once
    /// the piece before it is (waits while [`PIECES_IN_FLIGHT`] pieces are being stored).
    async fn push(&mut self, piece: PieceFile) -> Result<(), Answer> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (state, upload, start) = (self.state.clone(), self.upload.clone(), self.next_start);
        self.next_start += piece.size();
        let before = self.last.take();
        self.last = Some(tokio::spawn(async move {
            let _slot = slot;
            let stored = async {
                let (path, size) = piece.finish().await?;
                let key = store_piece(&state, &upload, start, &path).await;
                let _ = tokio::fs::remove_file(&path).await;
                Ok::<_, Answer>((key?, size))
            }
            .await;
            // The piece before commits first; if it failed, so does this one.
            let before = match before {
                Some(task) => task.await.map_err(task_failed).and_then(|r| r),
                None => Ok(start),
            };
            let (key, size) = match (before, stored) {
                (Ok(_), Ok(stored)) => stored,
                (Ok(_), Err(err)) => return Err(err),
                (Err(err), stored) => {
                    if let Ok((key, _)) = stored {
                        let _ = state.media_store().delete(&key).await;
                    }
                    return Err(err);
                }
            };
            commit_stored(&state, &upload, start, &key, size).await
        }));
        Ok(())
    }

    /// Waits for every piece being stored; returns the committed offset.
    async fn settle(&mut self) -> Result<u64, Answer> {
        if let Some(storing) = self.last.take() {
            self.committed = storing.await.map_err(task_failed)??;
            self.next_start = self.committed;
        }
        Ok(self.committed)
    }
}

fn task_failed(err: tokio::task::JoinError) -> Answer {
    Answer::from(ApiError::Internal(anyhow::anyhow!(
        "storing an upload piece: {err}"
    )))
}

/// Moves the piece in the file `path` into the store; returns its key.
async fn store_piece(
    state: &AppState,
    upload: &Upload,
    start: u64,
    path: &std::path::Path,
) -> Result<String, Answer> {
    let key = format!(
        "tus/{}/{start:020}-{:08x}",
        upload.id,
        rand::random::<u32>()
    );
    state
        .media_store()
        .put_file_moved(&key, path)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing an upload piece: {e}")))?;
    Ok(key)
}

/// Commits the stored piece `key` (`size` bytes at `start`); the piece that completes the upload
/// hands the asset to its task. Returns the new offset.
async fn commit_stored(
    state: &AppState,
    upload: &Upload,
    start: u64,
    key: &str,
    size: u64,
) -> Result<u64, Answer> {
    match commit_piece(state, upload, start, key, size).await {
        Ok(true) => Ok(start + size),
        Ok(false) => {
            let _ = state.media_store().delete(key).await;
            Err(Answer::error(
                StatusCode::CONFLICT,
                "another request wrote this part of the upload first; resume from the offset HEAD gives",
            ))
        }
        Err(err) => {
            let _ = state.media_store().delete(key).await;
            Err(err)
        }
    }
}

async fn commit_piece(
    state: &AppState,
    upload: &Upload,
    start: u64,
    key: &str,
    size: u64,
) -> Result<bool, Answer> {
    let now = now_ms();
    let end = start + size;
    let complete = end == upload.length;
    let mut tx = state.db().begin().await?;
    let moved = sqlx::query(
        "UPDATE tus_uploads SET upload_offset = $1, completed_at = $2 \
         WHERE id = $3 AND upload_offset = $4 AND completed_at IS NULL AND expires_at > $5",
    )
    .bind(end as i64)
    .bind(complete.then_some(now))
    .bind(&upload.id)
    .bind(start as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !moved {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO tus_parts (upload_id, start, object_key, size) VALUES ($1, $2, $3, $4)",
    )
    .bind(&upload.id)
    .bind(start as i64)
    .bind(key)
    .bind(size as i64)
    .execute(&mut *tx)
    .await?;
    if complete {
        let asset = assets_repo::get(&mut *tx, &upload.project_id, &upload.asset_id)
            .await?
            .ok_or_else(|| Answer::from(ApiError::not_found()))?;
        let arrived = super::source_arrived(
            &mut tx,
            &asset,
            None,
            serde_json::json!({ "tusUpload": upload.id, "size": upload.length }),
            state.public_url(),
        )
        .await?;
        if !arrived {
            return Err(ApiError::invalid("the asset's file has already been uploaded").into());
        }
    }
    tx.commit().await?;
    if complete {
        state.wake_webhooks();
        state.wake_tasks();
        tracing::info!(upload = %upload.id, asset = %upload.asset_id, bytes = upload.length, "TUS upload complete");
    }
    Ok(true)
}

/// The object keys of a finished upload's pieces, in order.
pub(crate) async fn parts(db: &Database, upload_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT object_key FROM tus_parts WHERE upload_id = $1 ORDER BY start")
        .bind(upload_id)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(|row| row.try_get("object_key"))
        .collect()
}

/// Removes an unfinished upload: its pieces from the store, then its rows.
async fn remove(state: &AppState, id: &str) -> Result<(), Answer> {
    for key in parts(state.db(), id).await? {
        state
            .media_store()
            .delete(&key)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("removing an upload piece: {e}")))?;
    }
    let mut tx = state.db().begin().await?;
    sqlx::query("DELETE FROM tus_parts WHERE upload_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM tus_uploads WHERE id = $1 AND completed_at IS NULL")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes unfinished uploads past their expiry (every node runs it now and then; removing
/// twice is harmless).
pub async fn expire(state: &AppState) -> anyhow::Result<()> {
    let expired: Vec<String> = sqlx::query(
        "SELECT id FROM tus_uploads WHERE completed_at IS NULL AND expires_at <= $1 LIMIT 100",
    )
    .bind(now_ms())
    .fetch_all(state.db().reader())
    .await?
    .iter()
    .map(|row| row.try_get("id"))
    .collect::<Result<_, _>>()?;
    for id in expired {
        if remove(state, &id).await.is_ok() {
            tracing::info!(upload = %id, "removed an expired TUS upload");
        }
    }
    Ok(())
}
