//! Where orchestrators come from (§3.1): a static list, a discovery webhook, or the chain's transcoder pool.
//! Discovery yields service URIs with a trust score; asking each one for an offer is the gateway's business
//! ([`crate::gateway`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, keccak256};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

/// The port orchestrators listen on unless told otherwise.
pub const DEFAULT_ORCHESTRATOR_PORT: u16 = 8935;
/// A discovery webhook's answer is reused this long.
pub const WEBHOOK_REFRESH: Duration = Duration::from_secs(60);
/// Deadline of the webhook request.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest webhook answer read.
const MAX_WEBHOOK_BYTES: usize = 1 << 20;
/// Most orchestrators taken from any source.
pub const MAX_CANDIDATES: usize = 1000;

/// Score of an orchestrator the operator listed (go-livepeer's `Trusted`).
pub const TRUSTED: f32 = 1.0;
/// Score of an orchestrator found on chain (`Untrusted`).
pub const UNTRUSTED: f32 = 0.0;

/// An orchestrator to ask for an offer.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Its service URI (`https://host:port`).
    pub uri: Url,
    /// 1.0 for trusted, 0.0 for untrusted.
    pub score: f32,
}

/// Why discovery found nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A static list entry or webhook address is not an orchestrator address.
    #[error("invalid orchestrator address {address:?}: {reason}")]
    BadAddress {
        /// As given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The webhook failed or answered something else than the expected JSON.
    #[error("discovery webhook {url}: {reason}")]
    Webhook {
        /// The webhook.
        url: Url,
        /// What went wrong.
        reason: String,
    },
    /// Reading the pool on chain failed.
    #[error("on-chain discovery: {0}")]
    Chain(String),
}

/// Parses an orchestrator address as operators write it: `host:port`, `host` (port 8935) or a full
/// `https://host:port` URL.
pub fn parse_address(address: &str) -> Result<Url, DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::BadAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("the scheme must be https or http"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.port().is_none() && url.scheme() == "https" && !trimmed.contains("://") {
        url.set_port(Some(DEFAULT_ORCHESTRATOR_PORT))
            .map_err(|()| bad("cannot set the port"))?;
    }
    Ok(url)
}

/// One source of orchestrators.
#[derive(Clone, Debug)]
pub enum Discovery {
    /// Orchestrators the operator listed, all trusted.
    Static(Vec<Url>),
    /// A webhook answering `[{"address": "https://host:port", "score": 0.0|1.0}]`.
    Webhook(WebhookDiscovery),
    /// The BondingManager transcoder pool, untrusted: active orchestrators with a usable service URI.
    Chain(crate::chain::ChainClient),
}

impl Discovery {
    /// The orchestrators to ask now.
    pub async fn candidates(&self) -> Result<Vec<Candidate>, DiscoveryError> {
        match self {
            Self::Static(uris) => Ok(uris
                .iter()
                .take(MAX_CANDIDATES)
                .map(|uri| Candidate {
                    uri: uri.clone(),
                    score: TRUSTED,
                })
                .collect()),
            Self::Webhook(webhook) => webhook.candidates().await,
            Self::Chain(chain) => {
                let pool = chain
                    .orchestrator_pool(MAX_CANDIDATES)
                    .await
                    .map_err(|e| DiscoveryError::Chain(e.to_string()))?;
                Ok(pool
                    .into_iter()
                    .filter(|o| o.active)
                    .filter_map(|o| match parse_address(&o.service_uri) {
                        Ok(uri) => Some(Candidate { uri, score: UNTRUSTED }),
                        Err(err) => {
                            tracing::debug!(orchestrator = %o.address, error = %err, "unusable service URI on chain");
                            None
                        }
                    })
                    .collect())
            }
        }
    }
}

/// A discovery webhook, called at most once a minute.
#[derive(Clone, Debug)]
pub struct WebhookDiscovery {
    url: Url,
    client: reqwest::Client,
    cache: Arc<Mutex<Option<WebhookCache>>>,
}

#[derive(Debug)]
struct WebhookCache {
    fetched: Instant,
    body_hash: B256,
    candidates: Vec<Candidate>,
}

#[derive(Deserialize)]
struct WebhookEntry {
    address: String,
    #[serde(default)]
    score: f32,
}

impl WebhookDiscovery {
    /// Discovery through `url`.
    pub fn new(url: Url) -> Self {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .expect("a client without custom TLS settings builds");
        Self {
            url,
            client,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    async fn candidates(&self) -> Result<Vec<Candidate>, DiscoveryError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.fetched.elapsed() < WEBHOOK_REFRESH
        {
            return Ok(c.candidates.clone());
        }
        let body = self.fetch().await?;
        let body_hash = keccak256(&body);
        // Re-parsed only when the answer changed, as go-livepeer does.
        if let Some(c) = cache.as_mut()
            && c.body_hash == body_hash
        {
            c.fetched = Instant::now();
            return Ok(c.candidates.clone());
        }
        let candidates = self.parse(&body)?;
        *cache = Some(WebhookCache {
            fetched: Instant::now(),
            body_hash,
            candidates: candidates.clone(),
        });
        Ok(candidates)
    }

    async fn fetch(&self) -> Result<Vec<u8>, DiscoveryError> {
        let failed = |reason: String| DiscoveryError::Webhook {
            url: self.url.clone(),
            reason,
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if body.len() + chunk.len() > MAX_WEBHOOK_BYTES {
                return Err(failed(format!(
                    "answer larger than {MAX_WEBHOOK_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Candidate>, DiscoveryError> {
        let entries: Vec<WebhookEntry> =
            serde_json::from_slice(body).map_err(|e| DiscoveryError::Webhook {
                url: self.url.clone(),
                reason: format!("expected [{{\"address\", \"score\"}}]: {e}"),
            })?;
        entries
            .into_iter()
            .take(MAX_CANDIDATES)
            .map(|e| {
                Ok(Candidate {
                    uri: parse_address(&e.address)?,
                    score: e.score,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_operators_write_them() {
        assert_eq!(
            parse_address("10.0.0.1").unwrap().as_str(),
            "https://10.0.0.1:8935/"
        );
        assert_eq!(
            parse_address("orch.example:9000").unwrap().as_str(),
            "https://orch.example:9000/"
        );
        assert_eq!(
            parse_address("https://orch.example:443").unwrap().as_str(),
            "https://orch.example/"
        );
        assert_eq!(
            parse_address("http://127.0.0.1:8936").unwrap().as_str(),
            "http://127.0.0.1:8936/"
        );
        assert!(parse_address("ftp://x").is_err());
        assert!(parse_address("").is_err());
    }
}
