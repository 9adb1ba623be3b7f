//! The one typed configuration tree.
//!
//! Layers, lowest first: defaults in code, the TOML file named by `--config`, environment variables
//! (`STUDIO_...`), then command-line flags. Environment and flags are read by clap (each flag names
//! its variable), so a flag always wins over its variable and both win over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Settings of a running server. Every field has a default; see README.md for the reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database and local media objects.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    pub http_addr: SocketAddr,
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
    pub webhooks: WebhookConfig,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            public_url: None,
            database_max_connections: 16,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            webhooks: WebhookConfig::default(),
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
    /// Reads the TOML file at `path` over the defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
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

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            anyhow::bail!("database_url must start with sqlite://, postgres:// or postgresql://, got {url:?}");
        }
        if let Some(public) = &self.public_url {
            let parsed = url::Url::parse(public).with_context(|| format!("public_url {public:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("public_url must be an http:// or https:// URL, got {public:?}");
            }
        }
        if self.database_max_connections == 0 {
            anyhow::bail!("database_max_connections must be at least 1");
        }
        let w = &self.webhooks;
        if w.max_attempts == 0 || w.concurrency == 0 || w.timeout_ms == 0 {
            anyhow::bail!("webhooks.max_attempts, webhooks.concurrency and webhooks.timeout_ms must be at least 1");
        }
        Ok(())
    }
}
