//! Access webhooks (policy `webhook`): the project's own server decides who watches.
//!
//! For a viewer's access key the gate POSTs `{accessKey, context, timestamp}` to the URL of the
//! policy's webhook, signed like every webhook (`Livepeer-Signature`), through the same
//! destination guard (no private addresses unless allowed), with a short deadline. A 2xx answer
//! admits the viewer; any other answer, or none in time, refuses. Decisions are cached per
//! (playback ID, access key) for a short while, one request per pair at a time, with a bounded
//! number of checks in flight across the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use super::cache::TtlCache;
use crate::clock::now_ms;
use crate::db::Database;
use crate::streams::model::PlaybackPolicy;
use crate::webhooks::{destination, signature};

/// Deadline of one check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an approval is reused (shorter when the policy's refresh interval is).
const ALLOWED_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is reused (so a refused viewer retrying does not flood the webhook).
const REFUSED_TTL: Duration = Duration::from_secs(5);
/// Checks in flight at once, across every project.
const CONCURRENT_CHECKS: usize = 64;
/// Decisions kept.
const CACHED_DECISIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved by the webhook at this time (unix ms).
    Allowed { at: i64 },
    /// Refused, and why (for the viewer's error).
    Refused(String),
}

pub struct AccessWebhooks {
    db: Database,
    client: reqwest::Client,
    allow_private: bool,
    /// By the SHA-256 of (playback ID, access key): keys are client-sized, digests are not.
    decisions: TtlCache<[u8; 32], Arc<OnceCell<Decision>>>,
    permits: Semaphore,
}

impl AccessWebhooks {
    pub fn new(db: Database, allow_private: bool) -> anyhow::Result<AccessWebhooks> {
        let client = reqwest::Client::builder()
            .dns_resolver(destination::resolver(allow_private))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(CHECK_TIMEOUT)
            .connect_timeout(CHECK_TIMEOUT)
            .user_agent("livepeer.studio")
            .build()?;
        Ok(AccessWebhooks {
            db,
            client,
            allow_private,
            decisions: TtlCache::new(CACHED_DECISIONS),
            permits: Semaphore::new(CONCURRENT_CHECKS),
        })
    }

    /// Whether the policy's webhook admits `access_key` to `playback_id` of `project_id`; an
    /// approval is reused for at most `refresh` (the policy's refresh interval).
    pub async fn decide(
        &self,
        project_id: &str,
        playback_id: &str,
        policy: &PlaybackPolicy,
        access_key: &str,
        refresh: Duration,
    ) -> Decision {
        let key: [u8; 32] = {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            hash.update((playback_id.len() as u64).to_le_bytes());
            hash.update(playback_id.as_bytes());
            hash.update(access_key.as_bytes());
            hash.finalize().into()
        };
        let cell = self.decisions.get_or_insert_with(
            &key,
            Instant::now() + ALLOWED_TTL.min(refresh),
            Default::default,
        );
        let decision = cell
            .get_or_init(|| self.ask(project_id, policy, access_key))
            .await
            .clone();
        if matches!(decision, Decision::Refused(_)) {
            // Refusals are kept for a shorter while.
            self.decisions
                .insert(key, cell, Instant::now() + REFUSED_TTL);
        }
        decision
    }

    async fn ask(&self, project_id: &str, policy: &PlaybackPolicy, access_key: &str) -> Decision {
        let refused = |why: &str| Decision::Refused(why.to_string());
        let Some(webhook_id) = policy.webhook_id.as_deref() else {
            return refused("the playback policy names no webhook");
        };
        let webhook =
            match crate::webhooks::repo::get(self.db.reader(), project_id, webhook_id).await {
                Ok(Some(webhook)) => webhook,
                Ok(None) => return refused("the playback policy's webhook does not exist"),
                Err(err) => {
                    tracing::error!(error = %err, "reading an access webhook failed");
                    return refused("the access check failed; try again");
                }
            };
        let Ok(url) = webhook.url.parse::<reqwest::Url>() else {
            return refused("the access webhook's URL does not parse");
        };
        if destination::check_literal_host(&url, self.allow_private).is_err() {
            return refused("the access webhook's URL is an internal address");
        }
        let Ok(_permit) = tokio::time::timeout(CHECK_TIMEOUT, self.permits.acquire()).await else {
            return refused("too many access checks at once; try again");
        };
        let timestamp = now_ms();
        let body = serde_json::to_vec(&serde_json::json!({
            "accessKey": access_key,
            "context": policy.webhook_context.clone().unwrap_or_default(),
            "timestamp": timestamp,
        }))
        .expect("JSON values serialize");
        let signature = signature::header_value(&webhook.shared_secret, &body, timestamp);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("livepeer-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Decision::Allowed { at: timestamp },
            Ok(response) => Decision::Refused(format!(
                "the access key was refused (the access webhook answered {})",
                response.status().as_u16()
            )),
            Err(err) if destination::is_refusal(&err) => {
                refused("the access webhook's URL resolves to an internal address")
            }
            Err(err) if err.is_timeout() => Decision::Refused(format!(
                "the access webhook did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
            Err(err) => {
                tracing::info!(webhook = %webhook.id, error = %err, "access webhook unreachable");
                refused("the access webhook could not be reached")
            }
        }
    }
}
