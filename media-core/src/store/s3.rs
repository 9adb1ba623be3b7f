//! An S3-compatible bucket as the object store: what several nodes share. Uploads stream from
//! files (multipart above one part), reads are ranged GETs streamed chunk by chunk.

use futures_util::StreamExt;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::dns::SharedDnsResolver;
use bytes::Bytes;

use super::{ObjectStore, ObjectStream, StoreError, StoreFuture, validate_key};

/// Smallest part of a multipart upload: files up to this size go in one PUT. S3 needs parts of
/// at least 5 MiB; 8 MiB keeps the part count of a 1 GiB recording at 128.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;
/// S3's limit on parts per upload; larger files get larger parts.
const MAX_PARTS: u64 = 10_000;

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended to every key (`prefix/key`), without slashes at its ends; may be empty.
    pub prefix: String,
    /// `AWS_REGION`; S3-compatible servers accept any, so `us-east-1` when unset.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL`: an S3-compatible server instead of AWS.
    pub endpoint_url: Option<String>,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`); without them
    /// requests go unsigned.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Bucket in the path (`http://host/bucket/key`) instead of the host name: servers on an IP
    /// address, or without wildcard DNS, need it.
    pub force_path_style: bool,
}

// By hand: the secret must never reach a log line.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// Objects in one bucket, below an optional prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// A store on `settings.bucket`, checked to exist and answer: a missing or unreachable
    /// bucket is an error here, at start-up, rather than at the first segment.
    pub async fn connect(settings: &S3Settings) -> Result<S3Store, StoreError> {
        S3Store::check(S3Store::new(settings), settings).await
    }

    /// Like [`S3Store::connect`], with every connection's host name resolved by `resolver`
    /// (which may refuse addresses: a bucket a user names must not lead to the server's own
    /// network, whatever its DNS answers later).
    pub async fn connect_resolving(
        settings: &S3Settings,
        resolver: SharedDnsResolver,
    ) -> Result<S3Store, StoreError> {
        let store = S3Store::build(settings, Some(resolver));
        S3Store::check(store, settings).await
    }

    async fn check(store: S3Store, settings: &S3Settings) -> Result<S3Store, StoreError> {
        let where_ = settings
            .endpoint_url
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        match store
            .client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(store),
            Err(err) => Err(StoreError::Remote(match status(&err) {
                Some(404) => format!("the S3 bucket {:?} does not exist{where_}", store.bucket),
                Some(code @ (401 | 403)) => format!(
                    "the S3 server{where_} refused access to the bucket {:?} ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    store.bucket
                ),
                _ => format!(
                    "cannot reach the S3 bucket {:?}{where_}: {}",
                    store.bucket,
                    describe(&err)
                ),
            })),
        }
    }

    /// A store on `settings.bucket`, unchecked.
    pub fn new(settings: &S3Settings) -> S3Store {
        S3Store::build(settings, None)
    }

    fn build(settings: &S3Settings, resolver: Option<SharedDnsResolver>) -> S3Store {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(
                settings
                    .region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".to_string()),
            ))
            .force_path_style(settings.force_path_style)
            // Connecting must be quick (a dead server fails health and start-up fast); a read
            // stalled this long is dead. No whole-operation limit: a 1 GiB download takes time.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            config = config.credentials_provider(Credentials::new(
                id,
                secret,
                settings.session_token.clone(),
                None,
                "studio-environment",
            ));
        }
        if let Some(resolver) = resolver {
            config = config.http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .build_with_resolver(resolver),
            );
        }
        S3Store {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.trim_matches('/').to_string(),
        }
    }

    /// The bucket's key of `key`, once `key` is valid.
    fn object_key(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// Uploads `path` (`size` bytes) in parts of `part_size`, aborting the upload on failure so
    /// no parts linger in the bucket.
    async fn put_multipart(&self, object: &str, path: &Path, size: u64) -> Result<(), StoreError> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS));
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| remote("starting a multipart upload of", object, e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| StoreError::Remote(format!("no upload id for {object}")))?
            .to_string();
        let result = async {
            use futures_util::{StreamExt, TryStreamExt};
            let ranges = (0..size.div_ceil(part_size)).map(|index| {
                let offset = index * part_size;
                // S3 numbers parts from 1.
                (index as i32 + 1, offset, part_size.min(size - offset))
            });
            let upload_id = &upload_id;
            let parts: Vec<CompletedPart> = futures_util::stream::iter(ranges)
                .map(|(number, offset, length)| async move {
                    // Read from the file as the request goes out: no part is ever in memory.
                    let body = ByteStream::read_from()
                        .path(path)
                        .offset(offset)
                        .length(Length::Exact(length))
                        .build()
                        .await
                        .map_err(|e| {
                            StoreError::Remote(format!("reading {}: {e}", path.display()))
                        })?;
                    let part = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(object)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_length(length as i64)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| remote("uploading a part of", object, e))?;
                    Ok::<_, StoreError>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(part.e_tag().map(str::to_string))
                            .build(),
                    )
                })
                // A few parts in flight hide each request's round trip; `buffered` keeps them
                // in order, as completing the upload requires.
                .buffered(PARTS_IN_FLIGHT)
                .try_collect()
                .await?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| remote("completing the upload of", object, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(err) = abort {
                tracing::warn!(key = object, error = %describe(&err), "aborting a failed multipart upload failed");
            }
        }
        result
    }

    /// A ranged GET: `None` when the object does not exist, an empty body for an empty range.
    async fn get_object_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, StoreError> {
        let object = self.object_key(key)?;
        if end <= start {
            return Ok(self.size(key).await?.map(|_| ByteStream::from_static(b"")));
        }
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .range(range_header(start, end))
            .send()
            .await;
        match response {
            Ok(output) => Ok(Some(output.body)),
            Err(err) if status(&err) == Some(404) => Ok(None),
            // A range starting past the end: an empty answer if the object exists.
            Err(err) if status(&err) == Some(416) => {
                Ok(self.size(key).await?.map(|_| ByteStream::from_static(b"")))
            }
            Err(err) => Err(remote("reading", &object, err)),
        }
    }
}

/// `Range` for bytes `start..end`; an end beyond any object's size is left open (`bytes=N-`),
/// which some servers require of ranges past `i64::MAX`.
fn range_header(start: u64, end: u64) -> String {
    if end > i64::MAX as u64 {
        format!("bytes={start}-")
    } else {
        format!("bytes={start}-{}", end - 1)
    }
}

/// What went wrong, in a line: the server's status, code and message when it answered (its raw
/// response is noise in a log), else the chain of causes (connection refused, timeout...).
fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match status(err) {
        Some(status) => format!(
            "HTTP {status} {}: {}",
            err.code().unwrap_or("(no code)"),
            err.message().unwrap_or("(no message)")
        ),
        None => DisplayErrorContext(err).to_string(),
    }
}

/// The HTTP status of a failed request, if the server answered.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn remote<E>(doing: &str, object: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError::Remote(format!("{doing} {object}: {}", describe(&err)))
}

/// The chunks of a GET's body as they arrive.
fn into_chunks(object: String, body: ByteStream) -> ObjectStream {
    Box::pin(futures_util::stream::try_unfold(
        (object, body),
        |(object, mut body)| async move {
            match body.next().await {
                None => Ok(None),
                Some(Ok(chunk)) => Ok(Some((chunk, (object, body)))),
                Some(Err(e)) => Err(StoreError::Remote(format!("reading {object}: {e}"))),
            }
        },
    ))
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            // A PUT replaces an object atomically: readers never see a partial one.
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| remote("writing", &object, e))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(output) => {
                    let data = output
                        .body
                        .collect()
                        .await
                        .map_err(|e| StoreError::Remote(format!("reading {object}: {e}")))?;
                    Ok(Some(data.into_bytes()))
                }
                Err(err) if status(&err) == Some(404) => Ok(None),
                Err(err) => Err(remote("reading", &object, err)),
            }
        })
    }

    fn put_file<'a>(&'a self, key: &'a str, path: &'a Path) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            let size = tokio::fs::metadata(path).await?.len();
            if size > PART_SIZE {
                return self.put_multipart(&object, path, size).await;
            }
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| StoreError::Remote(format!("reading {}: {e}", path.display())))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .content_length(size as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| remote("writing", &object, e))?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            match self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(err) if status(&err) == Some(404) => Ok(()),
                Err(err) => Err(remote("removing", &object, err)),
            }
        })
    }

    fn delete_folder<'a>(&'a self, folder: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let prefix = format!("{}/", self.object_key(folder)?);
            let mut removed = 0u64;
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| remote("listing", &prefix, e))?;
                let keys: Vec<String> = page
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .collect();
                let deletes = futures_util::stream::iter(keys.into_iter().map(|key| async move {
                    match self
                        .client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(err) if status(&err) == Some(404) => Ok(()),
                        Err(err) => Err(remote("removing", &key, err)),
                    }
                }))
                .buffer_unordered(16);
                let results: Vec<Result<(), StoreError>> = deletes.collect().await;
                for result in results {
                    result?;
                    removed += 1;
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated() == Some(true) => {
                        token = Some(next.to_string())
                    }
                    _ => break,
                }
            }
            Ok(removed)
        })
    }

    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let object = self.object_key(key)?;
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
                Err(err) if status(&err) == Some(404) => Ok(None),
                Err(err) => Err(remote("looking up", &object, err)),
            }
        })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let Some(body) = self.get_object_range(key, start, end).await? else {
                return Ok(None);
            };
            let data = body
                .collect()
                .await
                .map_err(|e| StoreError::Remote(format!("reading {key}: {e}")))?;
            Ok(Some(data.into_bytes()))
        })
    }

    fn stream_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<ObjectStream>> {
        Box::pin(async move {
            Ok(self
                .get_object_range(key, start, end)
                .await?
                .map(|body| into_chunks(key.to_string(), body)))
        })
    }
}
