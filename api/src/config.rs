//! The one typed configuration tree.
//!
//! Layers, lowest first: defaults in code, the TOML file named by `--config`, environment variables
//! (`STUDIO_...`), then command-line flags. [`Config::load`] is the one reader of the environment;
//! the command line applies its flags on top of what it returns.

mod sources;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use studio_network_client::keystore::SecretString;

/// Settings of a running server. Every field has a default; see README.md for the reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database and local media objects.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    pub http_addr: SocketAddr,
    /// Address the RTMP ingest listens on (`rtmp://host/live/<stream key>`).
    pub rtmp_addr: SocketAddr,
    /// Address (UDP) the SRT ingest listens on (`srt://host:port?streamid=<stream key>`).
    pub srt_addr: SocketAddr,
    /// Address (UDP) of every WebRTC session, WHIP publishers and WHEP viewers alike.
    pub webrtc_addr: SocketAddr,
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://<data_dir>/studio.db`.
    pub database_url: Option<String>,
    /// Base URL used in URLs the API returns (playback, uploads); defaults to `http://<http_addr>`.
    pub public_url: Option<String>,
    /// Largest number of database connections in the pool.
    pub database_max_connections: u32,
    /// Largest JSON request body accepted by the API, in bytes.
    pub max_body_bytes: usize,
    /// Deadline for one API request, in seconds.
    pub request_timeout_secs: u64,
    /// A stream marked live that received no segment for this long is made idle: its ingest node
    /// is gone. Longer than the longest segment the segmenter allows (30 s).
    pub stream_idle_after_secs: u64,
    /// On SIGTERM, how long ending the live sessions (playlists closed, recordings processed)
    /// and draining requests and deliveries may take before the server stops anyway.
    pub shutdown_timeout_secs: u64,
    pub ingest: IngestConfig,
    pub webhooks: WebhookConfig,
    pub transcode: TranscodeConfig,
    pub network: NetworkConfig,
    pub storage: StorageConfig,
    pub vod: VodConfig,
    pub tasks: TasksConfig,
    pub viewership: ViewershipConfig,
    pub webrtc: WebrtcConfig,
}

/// WebRTC (WHIP ingest, WHEP playback) on [`Config::webrtc_addr`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Addresses advertised to peers (the server's public IPs behind NAT or in the cloud).
    /// Empty: the bound address, or, bound to every interface, the one with the default route.
    pub public_ips: Vec<std::net::IpAddr>,
    /// WebRTC sessions (publishers and viewers) one node serves at once.
    pub max_sessions: usize,
    /// WHEP viewers of one stream on one node.
    pub max_viewers_per_stream: usize,
    /// Seconds a peer has to connect after its offer was answered.
    pub connect_timeout_secs: u64,
    /// A peer silent this long (no ICE consent checks, no media), in seconds, is closed.
    pub idle_timeout_secs: u64,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            public_ips: Vec::new(),
            max_sessions: 1000,
            max_viewers_per_stream: 500,
            connect_timeout_secs: 10,
            idle_timeout_secs: 15,
        }
    }
}

/// Viewership analytics.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewershipConfig {
    /// Whether media requests are counted as views (the beacon and the queries work either way).
    pub count_views: bool,
    /// How often each node writes the views it counted, in milliseconds.
    pub flush_interval_ms: u64,
    /// Days viewer sessions (the raw events) are kept; the hourly rollups are kept for good.
    pub session_retention_days: u64,
    /// A request header that carries the viewer's country (ISO 3166 alpha-2), set by a trusted
    /// proxy in front of the server (e.g. `cf-ipcountry`). Unset: countries are not recorded.
    pub country_header: Option<String>,
}

impl Default for ViewershipConfig {
    fn default() -> Self {
        ViewershipConfig {
            count_views: true,
            flush_interval_ms: 5_000,
            session_retention_days: 30,
            country_header: None,
        }
    }
}

impl ViewershipConfig {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.max(10))
    }

    pub fn session_retention(&self) -> Duration {
        Duration::from_secs(self.session_retention_days.max(1) * 86_400)
    }
}

/// Background jobs (Studio's tasks: uploads, imports, recordings).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// Whether this node runs jobs. Off, it serves the API and ingest only and leaves every
    /// job to the nodes that run them (on one shared database).
    pub run: bool,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig { run: true }
    }
}

/// Video on demand: uploads, URL imports and the asset pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VodConfig {
    /// Largest upload or import, in bytes.
    pub max_upload_bytes: u64,
    /// Longest media accepted, in seconds.
    pub max_source_duration_secs: u64,
    /// Largest picture accepted (width and height, either orientation).
    pub max_source_width: u32,
    pub max_source_height: u32,
    /// Signs upload URLs (HS256). Unset: a secret made on first start and kept in the
    /// database, which every node then shares.
    #[serde(deserialize_with = "secret")]
    pub upload_token_secret: Option<SecretString>,
    /// How long an upload URL stays valid, in seconds.
    pub upload_url_ttl_secs: u64,
    /// Where `ipfs://CID` imports are fetched (`{gateway}CID`).
    pub ipfs_gateway: String,
    /// Where `ar://TX` imports are fetched (`{gateway}TX`).
    pub arweave_gateway: String,
    /// How long downloading one import may take, in seconds.
    pub import_timeout_secs: u64,
    /// Length VOD segments aim for, in seconds (cut at the source's keyframes).
    pub segment_secs: u64,
}

impl Default for VodConfig {
    fn default() -> Self {
        VodConfig {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            max_source_duration_secs: 6 * 3600,
            max_source_width: 4096,
            max_source_height: 4096,
            upload_token_secret: None,
            upload_url_ttl_secs: 24 * 3600,
            ipfs_gateway: "https://ipfs.io/ipfs/".into(),
            arweave_gateway: "https://arweave.net/".into(),
            import_timeout_secs: 3600,
            segment_secs: 6,
        }
    }
}

/// Where media objects live (segments, playlists, recordings).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `file:///path` (a local directory) or `s3://bucket/optional/prefix`; defaults to
    /// `file://<data_dir>/media`.
    pub url: Option<String>,
    /// Address S3 buckets in the path rather than the host name (S3-compatible servers on an IP
    /// address need it).
    pub force_path_style: bool,
    /// Where players fetch media directly (a CDN, or the bucket itself); playback info then
    /// points there. Unset: this server serves media from the store.
    pub public_base_url: Option<String>,
    /// The standard AWS variables, read with the rest of the environment (not settings: they
    /// are AWS's names, shared with every other AWS tool).
    #[serde(skip)]
    pub aws: AwsEnvironment,
}

/// `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`.
#[derive(Debug, Clone, Default)]
pub struct AwsEnvironment {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
}

impl AwsEnvironment {
    /// Takes the variable if it is one of AWS's; empty values count as unset.
    fn read(&mut self, name: &str, value: &str) {
        let value = Some(value.to_string()).filter(|v| !v.is_empty());
        match name {
            "AWS_REGION" => self.region = value,
            // The older name, still set by some tools; AWS_REGION wins.
            "AWS_DEFAULT_REGION" if self.region.is_none() => self.region = value,
            "AWS_ENDPOINT_URL" | "AWS_ENDPOINT_URL_S3" => self.endpoint_url = value,
            "AWS_ACCESS_KEY_ID" => self.access_key_id = value,
            "AWS_SECRET_ACCESS_KEY" => self.secret_access_key = value.map(SecretString::from),
            "AWS_SESSION_TOKEN" => self.session_token = value.map(SecretString::from),
            _ => {}
        }
    }
}

/// What `storage.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    LocalDir(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Live ingest (RTMP and SRT): what encoders, and anyone else reaching the ingest ports, may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest segment (its frames' bytes): 32 MiB is 2 s at 128 Mbit/s. A publish that needs
    /// more (a huge bitrate, or keyframes too far apart) is ended.
    pub max_segment_bytes: u64,
    /// Largest single frame.
    pub max_frame_bytes: usize,
    /// Bytes of media one publish may hold in memory (queued and in its open segment).
    pub max_publish_bytes: usize,
    /// Bytes of media all publishes of the node may hold together; a publish whose next frame
    /// does not fit is ended.
    pub memory_budget_bytes: usize,
    /// How far a publish's timestamps may run ahead of real time before its connection is paused.
    pub max_media_lead_secs: u64,
    /// A publish whose pipeline takes none of its packets for this long is ended.
    pub queue_stall_timeout_secs: u64,
    /// RTMP connections in all.
    pub max_connections: usize,
    /// RTMP connections not yet publishing (before the stream key is authorized)...
    pub max_unauthorized: usize,
    /// ...and of those, from one IP address.
    pub max_unauthorized_per_address: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_segment_bytes: 32 * 1024 * 1024,
            max_frame_bytes: 8 * 1024 * 1024,
            max_publish_bytes: 64 * 1024 * 1024,
            memory_budget_bytes: 1024 * 1024 * 1024,
            max_media_lead_secs: 10,
            queue_stall_timeout_secs: 10,
            max_connections: 1024,
            max_unauthorized: 256,
            max_unauthorized_per_address: 16,
        }
    }
}

/// The bundled transcoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// The H.264 encoder: `auto` (NVENC when an NVIDIA encoder can be opened, else libx264),
    /// `nvenc` (refuse to start without it) or `libx264`.
    pub encoder: EncoderSetting,
    /// Segments transcoded at once on this node; 0 means one per CPU core.
    pub concurrency: usize,
    /// Who transcodes live segments: `local` (the bundled transcoder), `network` (orchestrators of
    /// the Livepeer network, see `[network]`) or `auto` (the network, and the bundled transcoder for
    /// any segment the network fails on).
    pub transcoder: TranscoderSetting,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TranscoderSetting {
    #[default]
    Local,
    Network,
    Auto,
}

/// The embedded Livepeer gateway (used when `transcode.transcoder` is `network` or `auto`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `offchain` (no tickets; orchestrators that do not charge) or `onchain` (pays with PM tickets).
    pub mode: NetworkMode,
    /// Orchestrators to use (`host:port` or `https://host:port`); a comma-separated list in
    /// `STUDIO_NETWORK__ORCHESTRATORS`. Takes precedence over the webhook and the chain.
    pub orchestrators: Vec<String>,
    /// A URL answering `[{"address": "https://host:port", "score": 1.0}]`.
    pub orchestrator_webhook: Option<String>,
    /// Highest price accepted, in wei per `pixels_per_unit` pixels; 0 accepts any price.
    pub max_price_per_unit: u64,
    pub pixels_per_unit: u64,
    /// Ethereum JSON-RPC (Arbitrum) for the sender's deposit and reserve and for on-chain discovery.
    pub eth_rpc_url: Option<String>,
    /// The protocol's Controller contract; defaults to Arbitrum One's.
    pub eth_controller: Option<String>,
    /// An encrypted JSON keystore holding the gateway's ETH key...
    pub eth_keystore: Option<PathBuf>,
    /// ...and its password (prefer `STUDIO_NETWORK__ETH_KEYSTORE_PASSWORD`).
    #[serde(deserialize_with = "secret")]
    pub eth_keystore_password: Option<SecretString>,
    /// Or the key itself as hex (prefer `STUDIO_NETWORK__ETH_PRIVATE_KEY`).
    #[serde(deserialize_with = "secret")]
    pub eth_private_key: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Offchain,
    Onchain,
}

/// A secret, kept out of `Debug` output.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderSetting {
    #[default]
    Auto,
    Nvenc,
    Libx264,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            encoder: EncoderSetting::Auto,
            concurrency: 0,
            transcoder: TranscoderSetting::Local,
        }
    }
}

/// The webhook delivery engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Deliver to destinations that resolve to loopback, private or link-local addresses.
    /// Off by default: a tenant must not be able to make the server call into its own network.
    pub allow_private_destinations: bool,
    /// Deadline for one delivery attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Delay before the first retry, in milliseconds; doubles with every attempt.
    pub initial_backoff_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Attempts per delivery before it is given up (the first attempt included).
    pub max_attempts: u32,
    /// Deliveries in flight at once, across all webhooks.
    pub concurrency: usize,
}

/// `STUDIO_*` variables that are not settings, skipped without a warning: the config file's name
/// and the log format (read by the command line), the log filter (read by the logger), and the
/// test tools' variables (`STUDIO_TEST_*`, ...).
const NOT_SETTINGS: &[&str] = &[
    "CONFIG",
    "LOG",
    "LOG_JSON",
    "PYTHON",
    "CACHE",
    "API_URL",
    "API_KEY",
    "BENCH_BINARY",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rtmp_addr: SocketAddr::from(([0, 0, 0, 0], 1935)),
            srt_addr: SocketAddr::from(([0, 0, 0, 0], 2935)),
            webrtc_addr: SocketAddr::from(([0, 0, 0, 0], 8189)),
            database_url: None,
            public_url: None,
            database_max_connections: 16,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            stream_idle_after_secs: 45,
            shutdown_timeout_secs: 30,
            ingest: IngestConfig::default(),
            webhooks: WebhookConfig::default(),
            transcode: TranscodeConfig::default(),
            network: NetworkConfig::default(),
            storage: StorageConfig::default(),
            vod: VodConfig::default(),
            tasks: TasksConfig::default(),
            viewership: ViewershipConfig::default(),
            webrtc: WebrtcConfig::default(),
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_destinations: false,
            timeout_ms: 10_000,
            initial_backoff_ms: 5_000,
            max_backoff_ms: 3_600_000,
            max_attempts: 20,
            concurrency: 32,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file at `file` (if any), then `STUDIO_*` variables from `env`;
    /// variables that name no setting are ignored with one warning naming them (not their
    /// values, which may be secrets).
    ///
    /// A variable names a key by its path: `STUDIO_HTTP_ADDR` is `http_addr`,
    /// `STUDIO_WEBHOOKS__TIMEOUT_MS` is `timeout_ms` in `[webhooks]`. Its text is read as the
    /// type of that key, and a value the key cannot take is an error naming the variable.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let (config, ignored) = Config::from_sources(file, env)?;
        if !ignored.is_empty() {
            tracing::warn!(
                variables = %ignored.join(", "),
                "ignoring STUDIO_* environment variables that name no setting"
            );
        }
        Ok(config)
    }

    /// [`Config::load`] without the warning: the configuration, and the names of the
    /// variables that were ignored, sorted.
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Config, Vec<String>)> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let mut root = sources::Node::from_file(table);
        let mut ignored = Vec::new();
        // Which variable set which key, to name it in errors.
        let mut origins = HashMap::new();
        let mut aws = AwsEnvironment::default();
        for (name, value) in env {
            aws.read(&name, &value);
            let Some(rest) = name.strip_prefix("STUDIO_") else {
                continue;
            };
            if NOT_SETTINGS.contains(&rest) || rest.starts_with("TEST_") {
                continue;
            }
            let path: Vec<String> = rest
                .to_ascii_lowercase()
                .split("__")
                .map(str::to_string)
                .collect();
            if path.iter().any(String::is_empty) {
                ignored.push(name);
                continue;
            }
            root.set(&path, &name, &value);
            origins.insert(path.join("."), name);
        }
        let ignored = RefCell::new(ignored);
        let layer = sources::Layer {
            node: root,
            ignored: &ignored,
        };
        let mut config: Config = serde_path_to_error::deserialize(layer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.inner();
            match origins.get(&path) {
                Some(var) => anyhow::anyhow!("invalid value of {var} (setting {path}): {inner}"),
                None => match file {
                    Some(file) => anyhow::anyhow!(
                        "invalid configuration in {}: {path}: {inner}",
                        file.display()
                    ),
                    None => anyhow::anyhow!("invalid configuration: {path}: {inner}"),
                },
            }
        })?;
        config.storage.aws = aws;
        let mut ignored = ignored.into_inner();
        ignored.sort();
        ignored.dedup();
        Ok((config, ignored))
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("studio.db").display()),
        }
    }

    /// The public base URL in effect, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.http_addr),
        };
        url.trim_end_matches('/').to_string()
    }

    /// Where media objects live, from `storage.url`.
    pub fn storage_location(&self) -> anyhow::Result<StorageLocation> {
        let Some(text) = &self.storage.url else {
            return Ok(StorageLocation::LocalDir(self.data_dir.join("media")));
        };
        let url = url::Url::parse(text).map_err(|e| {
            anyhow::anyhow!(
                "storage.url {text:?} is not a URL ({e}): use file:///path or s3://bucket/prefix"
            )
        })?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| anyhow::anyhow!("storage.url {text:?} is not a local path"))?;
                Ok(StorageLocation::LocalDir(path))
            }
            "s3" => {
                // Checked first: the messages below quote the URL, which must hold no secret.
                if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
                    anyhow::bail!(
                        "storage.url takes no credentials or port: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL"
                    );
                }
                let bucket = url.host_str().unwrap_or_default().to_string();
                // S3's bucket naming rules, which also keep the name out of URL trouble.
                let valid_bucket = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    });
                if !valid_bucket {
                    anyhow::bail!(
                        "storage.url {text:?} needs a bucket name of 3 to 63 lowercase letters, digits, dots and hyphens: s3://bucket/optional/prefix"
                    );
                }
                let prefix = url.path().trim_matches('/').to_string();
                if !prefix.is_empty() && studio_media_core::store::validate_key(&prefix).is_err() {
                    anyhow::bail!(
                        "the prefix {prefix:?} of storage.url must be path segments of letters, digits, '.', '_' and '-'"
                    );
                }
                Ok(StorageLocation::S3 { bucket, prefix })
            }
            other => anyhow::bail!(
                "storage.url must be file:///path or s3://bucket/prefix, not a {other}: URL"
            ),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            anyhow::bail!(
                "database_url must start with sqlite://, postgres:// or postgresql://, got {:?}",
                crate::db::redact_url(&url)
            );
        }
        if let Some(public) = &self.public_url {
            let parsed = url::Url::parse(public)
                .with_context(|| format!("public_url {public:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("public_url must be an http:// or https:// URL, got {public:?}");
            }
        }
        self.storage_location()?;
        if let Some(base) = &self.storage.public_base_url {
            let parsed = url::Url::parse(base)
                .with_context(|| format!("storage.public_base_url {base:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!(
                    "storage.public_base_url must be an http:// or https:// URL, got {base:?}"
                );
            }
        }
        if self.database_max_connections == 0 {
            anyhow::bail!("database_max_connections must be at least 1");
        }
        for (name, gateway) in [
            ("vod.ipfs_gateway", &self.vod.ipfs_gateway),
            ("vod.arweave_gateway", &self.vod.arweave_gateway),
        ] {
            let parsed = url::Url::parse(gateway)
                .with_context(|| format!("{name} {gateway:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || !gateway.ends_with('/') {
                anyhow::bail!(
                    "{name} must be an http:// or https:// URL ending in /, got {gateway:?}"
                );
            }
        }
        if !(1..=60).contains(&self.vod.segment_secs) {
            anyhow::bail!("vod.segment_secs must be between 1 and 60");
        }
        if self.transcode.transcoder != TranscoderSetting::Local {
            let n = &self.network;
            if n.orchestrators.is_empty()
                && n.orchestrator_webhook.is_none()
                && n.eth_rpc_url.is_none()
            {
                anyhow::bail!(
                    "transcode.transcoder = network or auto needs network.orchestrators, network.orchestrator_webhook or (on chain) network.eth_rpc_url"
                );
            }
            if n.mode == NetworkMode::Onchain
                && n.eth_keystore.is_none()
                && n.eth_private_key.is_none()
            {
                anyhow::bail!(
                    "network.mode = onchain needs network.eth_keystore (with network.eth_keystore_password) or network.eth_private_key"
                );
            }
            if n.mode == NetworkMode::Offchain
                && n.orchestrators.is_empty()
                && n.orchestrator_webhook.is_none()
            {
                anyhow::bail!(
                    "network.mode = offchain needs network.orchestrators or network.orchestrator_webhook: on-chain discovery needs onchain mode"
                );
            }
        }
        let i = &self.ingest;
        if i.max_segment_bytes == 0
            || i.max_frame_bytes == 0
            || i.max_connections == 0
            || i.max_unauthorized == 0
            || i.max_unauthorized_per_address == 0
        {
            anyhow::bail!(
                "ingest.max_segment_bytes, max_frame_bytes, max_connections, max_unauthorized and max_unauthorized_per_address must be at least 1"
            );
        }
        if i.max_publish_bytes < i.max_frame_bytes || i.memory_budget_bytes < i.max_publish_bytes {
            anyhow::bail!(
                "ingest limits must grow: max_frame_bytes <= max_publish_bytes <= memory_budget_bytes"
            );
        }
        let w = &self.webhooks;
        if w.max_attempts == 0 || w.concurrency == 0 || w.timeout_ms == 0 {
            anyhow::bail!(
                "webhooks.max_attempts, webhooks.concurrency and webhooks.timeout_ms must be at least 1"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_file_is_valid_and_documents_every_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../studio.example.toml");
        let config = Config::load(Some(&path), []).unwrap();
        config.validate().unwrap();
        assert_eq!(config.http_addr, Config::default().http_addr);
    }

    #[test]
    fn environment_overrides_the_file_and_reaches_nested_keys() {
        let dir = std::env::temp_dir().join(format!("studio-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "http_addr = \"127.0.0.1:9000\"\n[webhooks]\ntimeout_ms = 100\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            vars(&[
                ("STUDIO_WEBHOOKS__TIMEOUT_MS", "250"),
                ("STUDIO_INGEST__MAX_UNAUTHORIZED_PER_ADDRESS", "100000"),
                ("STUDIO_SHUTDOWN_TIMEOUT_SECS", "5"),
                ("STUDIO_PUBLIC_URL", "https://v.example"),
                ("STUDIO_LOG", "debug"),
                ("HOME", "/x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http_addr.port(), 9000);
        assert_eq!(config.webhooks.timeout_ms, 250);
        assert_eq!(config.ingest.max_unauthorized_per_address, 100_000);
        assert_eq!(config.shutdown_timeout(), Duration::from_secs(5));
        assert_eq!(config.public_url(), "https://v.example");
        // Unknown keys in the file are still refused: a typo there is ours to fix.
        std::fs::write(&file, "[webhooks]\ntimeout = 100\n").unwrap();
        let typo = Config::load(Some(&file), []).unwrap_err();
        assert!(
            format!("{typo:#}").contains("unknown field `timeout`"),
            "{typo:#}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn network_settings_come_from_the_environment_and_keep_secrets() {
        let config = Config::load(
            None,
            vars(&[
                ("STUDIO_TRANSCODE__TRANSCODER", "auto"),
                ("STUDIO_NETWORK__MODE", "onchain"),
                (
                    "STUDIO_NETWORK__ORCHESTRATORS",
                    "a.example:8935, b.example:9000",
                ),
                ("STUDIO_NETWORK__ETH_KEYSTORE", "/k.json"),
                ("STUDIO_NETWORK__ETH_KEYSTORE_PASSWORD", "123456789"),
            ]),
        )
        .unwrap();
        assert_eq!(config.transcode.transcoder, TranscoderSetting::Auto);
        assert_eq!(
            config.network.orchestrators,
            ["a.example:8935", "b.example:9000"]
        );
        assert_eq!(
            config
                .network
                .eth_keystore_password
                .as_ref()
                .unwrap()
                .expose(),
            "123456789"
        );
        config.validate().unwrap();
        assert!(
            !format!("{config:?}").contains("123456789"),
            "secrets stay out of Debug"
        );

        let keyless = Config::load(
            None,
            vars(&[
                ("STUDIO_TRANSCODE__TRANSCODER", "network"),
                ("STUDIO_NETWORK__MODE", "onchain"),
                ("STUDIO_NETWORK__ORCHESTRATORS", "a:1"),
            ]),
        )
        .unwrap();
        assert!(format!("{:#}", keyless.validate().unwrap_err()).contains("network.eth_keystore"));
        let nowhere =
            Config::load(None, vars(&[("STUDIO_TRANSCODE__TRANSCODER", "network")])).unwrap();
        assert!(format!("{:#}", nowhere.validate().unwrap_err()).contains("network.orchestrators"));
    }

    /// What Kubernetes injects into every pod when a Service named `studio` exists.
    const KUBERNETES: &[(&str, &str)] = &[
        ("STUDIO_SERVICE_HOST", "10.96.0.12"),
        ("STUDIO_SERVICE_PORT", "8080"),
        ("STUDIO_SERVICE_PORT_HTTP", "8080"),
        ("STUDIO_PORT", "tcp://10.96.0.12:8080"),
        ("STUDIO_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
        ("STUDIO_PORT_8080_TCP_PROTO", "tcp"),
        ("STUDIO_PORT_8080_TCP_PORT", "8080"),
        ("STUDIO_PORT_8080_TCP_ADDR", "10.96.0.12"),
    ];

    #[test]
    fn variables_that_name_no_setting_are_ignored_and_reported_by_name() {
        let mut env = KUBERNETES.to_vec();
        env.extend([
            ("STUDIO_WEBHOOKS__TIMEOUT", "5"),
            ("STUDIO_ALLOW_PRIVATE_DESTINATIONS", "true"),
            ("STUDIO_NETWORK__ETH_PASSWORD", "hunter2"),
            ("STUDIO_TEST_POSTGRES_URL", "postgres://x"),
            ("STUDIO_LOG", "debug"),
        ]);
        let (config, ignored) = Config::from_sources(None, vars(&env)).unwrap();
        config.validate().unwrap();
        let mut expected: Vec<&str> = KUBERNETES.iter().map(|(name, _)| *name).collect();
        expected.extend([
            "STUDIO_WEBHOOKS__TIMEOUT",
            "STUDIO_ALLOW_PRIVATE_DESTINATIONS",
            "STUDIO_NETWORK__ETH_PASSWORD",
        ]);
        expected.sort();
        assert_eq!(ignored, expected);
        assert_eq!(config.http_addr, Config::default().http_addr);
        assert!(!config.webhooks.allow_private_destinations);
    }

    #[test]
    fn variables_are_read_as_the_type_of_their_setting() {
        let (config, ignored) = Config::from_sources(
            None,
            vars(&[
                ("STUDIO_DATA_DIR", "2024"),
                ("STUDIO_PUBLIC_URL", "https://video.example"),
                (
                    "STUDIO_DATABASE_URL",
                    "postgres://studio:123@db:5432/studio",
                ),
                ("STUDIO_DATABASE_MAX_CONNECTIONS", "4"),
                ("STUDIO_STREAM_IDLE_AFTER_SECS", " 60 "),
                ("STUDIO_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS", "1"),
                ("STUDIO_TRANSCODE__TRANSCODER", "auto"),
                ("STUDIO_NETWORK__ORCHESTRATORS", "9000"),
                ("STUDIO_NETWORK__ORCHESTRATOR_WEBHOOK", ""),
                ("STUDIO_NETWORK__ETH_KEYSTORE_PASSWORD", "000123"),
                (
                    "STUDIO_NETWORK__ETH_PRIVATE_KEY",
                    "12345678901234567890123456789",
                ),
                ("STUDIO_NETWORK__ETH_CONTROLLER", "true"),
            ]),
        )
        .unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(config.data_dir, PathBuf::from("2024"));
        assert_eq!(config.public_url(), "https://video.example");
        assert_eq!(
            config.database_url(),
            "postgres://studio:123@db:5432/studio"
        );
        assert_eq!(config.database_max_connections, 4);
        assert_eq!(config.stream_idle_after_secs, 60);
        assert!(config.webhooks.allow_private_destinations);
        assert_eq!(config.network.orchestrators, ["9000"]);
        assert_eq!(config.network.orchestrator_webhook, None, "empty is unset");
        let n = &config.network;
        assert_eq!(n.eth_keystore_password.as_ref().unwrap().expose(), "000123");
        assert_eq!(
            n.eth_private_key.as_ref().unwrap().expose(),
            "12345678901234567890123456789"
        );
        assert_eq!(n.eth_controller.as_deref(), Some("true"));
        config.validate().unwrap();
    }

    #[test]
    fn a_value_its_setting_cannot_take_is_an_error_naming_the_variable() {
        for (name, value, setting) in [
            (
                "STUDIO_WEBHOOKS__TIMEOUT_MS",
                "soon-ish",
                "webhooks.timeout_ms",
            ),
            ("STUDIO_HTTP_ADDR", "nowhere-at-all", "http_addr"),
            (
                "STUDIO_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS",
                "maybe-so",
                "webhooks.allow_private_destinations",
            ),
            (
                "STUDIO_DATABASE_MAX_CONNECTIONS",
                "-1",
                "database_max_connections",
            ),
            ("STUDIO_TRANSCODE__ENCODER", "vp9", "transcode.encoder"),
        ] {
            let err = Config::load(None, vars(&[(name, value)])).unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.contains(name) && text.contains(setting),
                "{name}: {text}"
            );
            if value.contains('-') {
                assert!(!text.contains(value), "the value is not repeated: {text}");
            }
        }
    }
}
