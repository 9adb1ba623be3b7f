//! The webhook delivery engine.
//!
//! Two steps, both driven by rows in the database so that nothing is lost across a restart:
//! 1. fan-out: each new event in the outbox becomes one `webhook_deliveries` row per matching
//!    webhook of its project (subscribed to the event, and to its stream when `streamId` is set);
//! 2. delivery: due deliveries are leased, POSTed, logged, and either finished or rescheduled with
//!    exponential backoff (network errors, timeouts and 5xx are retried; 4xx and refused
//!    destinations are not).
//!
//! Leases make the claim safe across several nodes sharing PostgreSQL: a node that dies mid-attempt
//! leaves a lease that expires, and the delivery is tried again (at-least-once).
//!
//! Claiming is fair across projects, so that one tenant's endpoints that never answer cannot
//! hold every delivery slot for a timeout after timeout: projects take turns (see
//! [`claim_due`]) and none has more than [`project_share`] deliveries in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use sqlx::Row;
use tokio::sync::{Notify, Semaphore, watch};

use super::destination;
use super::model::{Webhook, WebhookFailure, WebhookLog, WebhookLogRequest, WebhookLogResponse};
use super::repo;
use super::signature;
use crate::clock::now_ms;
use crate::config::WebhookConfig;
use crate::db::Database;

/// How much of a receiver's answer is kept in the log.
const RESPONSE_BODY_LIMIT: usize = 1024;
/// Events fanned out per pass.
const FANOUT_BATCH: i64 = 100;
/// Longest sleep between two passes when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long finished deliveries, their events and attempt logs are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often old rows are removed.
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);
/// One project may use this fraction of the delivery slots: `concurrency / PROJECT_SHARE_DIVISOR`.
const PROJECT_SHARE_DIVISOR: usize = 4;

/// The most deliveries one project may have in flight at once, across all nodes: a quarter of
/// a node's delivery slots (`webhooks.concurrency`), at least one. A project whose endpoints
/// never answer holds at most this many slots, each for up to one delivery timeout, and the
/// rest stay free for every other project.
fn project_share(concurrency: usize) -> i64 {
    (concurrency / PROJECT_SHARE_DIVISOR).max(1) as i64
}

/// An event as stored in the outbox.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub event: String,
    pub stream_id: Option<String>,
    pub stream: Option<String>,
    pub payload: Option<String>,
    pub created_at: i64,
}

impl EventRecord {
    pub async fn load(
        db: &Database,
        project_id: &str,
        id: &str,
    ) -> Result<Option<EventRecord>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, project_id, user_id, event, stream_id, stream, payload, created_at FROM events \
             WHERE project_id = $1 AND id = $2",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(db.writer())
        .await?;
        row.map(|row| {
            Ok(EventRecord {
                id: row.try_get("id")?,
                project_id: row.try_get("project_id")?,
                user_id: row.try_get("user_id")?,
                event: row.try_get("event")?,
                stream_id: row.try_get("stream_id")?,
                stream: row.try_get("stream")?,
                payload: row.try_get("payload")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// The JSON body POSTed to `webhook_id`, sent at `timestamp`.
    fn body(&self, webhook_id: &str, timestamp: i64) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        body.insert("id".into(), self.id.clone().into());
        body.insert("webhookId".into(), webhook_id.into());
        body.insert("createdAt".into(), self.created_at.into());
        body.insert("timestamp".into(), timestamp.into());
        body.insert("event".into(), self.event.clone().into());
        if let Some(stream) = self
            .stream
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            body.insert("stream".into(), stream);
        }
        if let Some(payload) = self
            .payload
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            body.insert("payload".into(), payload);
        }
        serde_json::to_vec(&body).expect("a JSON map serializes")
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Network error, timeout or 5xx: worth another try.
    Retry,
    /// Any other status: the receiver said no.
    Rejected,
    /// Not sent: the destination is internal.
    Refused,
}

/// Sends one signed POST and logs it. Shared by the worker and the resend endpoint.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    config: WebhookConfig,
}

impl Sender {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Sender> {
        let client = reqwest::Client::builder()
            .dns_resolver(destination::resolver(config.allow_private_destinations))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(10_000)))
            .user_agent("livepeer.studio")
            .build()?;
        Ok(Sender {
            client,
            config: config.clone(),
        })
    }

    /// POSTs `event` to `webhook`, writes the log row and updates the webhook's status.
    pub async fn attempt(
        &self,
        db: &Database,
        webhook: &Webhook,
        event: &EventRecord,
    ) -> Result<(Outcome, WebhookLog), sqlx::Error> {
        let timestamp = now_ms();
        let body = event.body(&webhook.id, timestamp);
        let signature = signature::header_value(&webhook.shared_secret, &body, timestamp);
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), "application/json".to_string());
        headers.insert("user-agent".to_string(), "livepeer.studio".to_string());
        headers.insert("livepeer-signature".to_string(), signature.clone());
        let request = WebhookLogRequest {
            url: webhook.url.clone(),
            method: "POST".into(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };

        let started = Instant::now();
        let result = self.send(&webhook.url, body, &signature).await;
        let duration = started.elapsed().as_secs_f64();
        let (outcome, response, status_code, error) = match result {
            Ok((status, status_text, head)) => {
                let outcome = if (200..300).contains(&status) {
                    Outcome::Delivered
                } else if status >= 500 {
                    Outcome::Retry
                } else {
                    Outcome::Rejected
                };
                let response = WebhookLogResponse {
                    body: base64::engine::general_purpose::STANDARD.encode(&head),
                    status: status as i64,
                    status_text,
                };
                (outcome, Some(response), Some(status as i64), None)
            }
            Err(SendError::Refused(message)) => (Outcome::Refused, None, None, Some(message)),
            Err(SendError::Network(message)) => (Outcome::Retry, None, None, Some(message)),
        };
        let log = WebhookLog {
            id: crate::ids::new_id(),
            webhook_id: webhook.id.clone(),
            event: event.event.clone(),
            created_at: timestamp,
            duration,
            success: outcome == Outcome::Delivered,
            request,
            response: response.clone(),
            error: error.clone(),
        };
        repo::insert_log(
            db.writer(),
            repo::NewLog {
                log: &log,
                project_id: &webhook.project_id,
                user_id: &webhook.user_id,
                event_id: &event.id,
                status_code,
                resource_id: event.stream_id.as_deref(),
            },
        )
        .await?;
        let failure = (outcome != Outcome::Delivered).then(|| WebhookFailure {
            timestamp,
            status_code,
            error: error.clone(),
            response: response.map(|r| r.body),
        });
        repo::record_outcome(
            db,
            &webhook.project_id,
            &webhook.id,
            timestamp,
            failure.as_ref(),
        )
        .await?;
        match outcome {
            Outcome::Delivered => {
                tracing::debug!(webhook = %webhook.id, event = %event.event, "webhook delivered")
            }
            Outcome::Refused => {
                tracing::warn!(webhook = %webhook.id, error = error.as_deref().unwrap_or(""), "webhook destination refused")
            }
            _ => {
                tracing::info!(webhook = %webhook.id, event = %event.event, status = ?status_code, error = error.as_deref().unwrap_or(""), "webhook attempt failed")
            }
        }
        Ok((outcome, log))
    }

    async fn send(
        &self,
        url: &str,
        body: Vec<u8>,
        signature: &str,
    ) -> Result<(u16, String, Vec<u8>), SendError> {
        let parsed: reqwest::Url = url
            .parse()
            .map_err(|_| SendError::Network("the webhook URL does not parse".into()))?;
        destination::check_literal_host(&parsed, self.config.allow_private_destinations)
            .map_err(|e| SendError::Refused(e.to_string()))?;
        let response = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("livepeer-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if destination::is_refusal(&e) {
                    let refused = error_chain(&e)
                        .into_iter()
                        .find(|m| m.starts_with("destination refused"))
                        .unwrap_or_default();
                    SendError::Refused(refused)
                } else if e.is_timeout() {
                    SendError::Network(format!("timed out after {} ms", self.config.timeout_ms))
                } else {
                    SendError::Network(error_chain(&e).join(": "))
                }
            })?;
        let status = response.status();
        let status_text = status.canonical_reason().unwrap_or("").to_string();
        let mut head = Vec::new();
        let mut response = response;
        // Read only the start of the answer; a receiver can't make us buffer more.
        while head.len() < RESPONSE_BODY_LIMIT {
            match tokio::time::timeout(
                Duration::from_millis(self.config.timeout_ms),
                response.chunk(),
            )
            .await
            {
                Ok(Ok(Some(chunk))) => head
                    .extend_from_slice(&chunk[..chunk.len().min(RESPONSE_BODY_LIMIT - head.len())]),
                _ => break,
            }
        }
        Ok((status.as_u16(), status_text, head))
    }

    /// The delay before retry number `attempts` (1-based), doubling from the initial backoff.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let ms = self
            .config
            .initial_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.config.max_backoff_ms);
        Duration::from_millis(ms)
    }
}

enum SendError {
    Refused(String),
    Network(String),
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push(text);
        }
        current = e.source();
    }
    out
}

/// Runs fan-out and delivery until `shutdown` turns true.
pub async fn run(
    db: Database,
    sender: Sender,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(sender.config.concurrency));
    let per_project = project_share(sender.config.concurrency);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut last_cleanup: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if last_cleanup.is_none_or(|at| at.elapsed() >= CLEANUP_EVERY) {
            last_cleanup = Some(Instant::now());
            if let Err(err) = remove_old(&db, now_ms() - RETENTION.as_millis() as i64).await {
                tracing::error!(error = %err, "removing old webhook rows failed");
            }
        }
        if let Err(err) = fan_out(&db).await {
            tracing::error!(error = %err, "webhook fan-out failed");
        }
        let free = permits.available_permits() as i64;
        match claim_due(&db, &sender, free, per_project).await {
            Ok(claimed) => {
                for delivery in claimed {
                    let permit = permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let (db, sender) = (db.clone(), sender.clone());
                    in_flight.spawn(async move {
                        if let Err(err) = deliver(&db, &sender, &delivery).await {
                            tracing::error!(error = %err, delivery = %delivery.id, "webhook delivery bookkeeping failed");
                        }
                        drop(permit);
                    });
                }
            }
            Err(err) => tracing::error!(error = %err, "claiming webhook deliveries failed"),
        }
        while in_flight.try_join_next().is_some() {}
        // Due deliveries left unclaimed wait for a free slot or for their project's turn: a
        // delivery of this node ending frees both; other nodes' are seen at the next poll.
        let next_due = next_due_in(&db).await.unwrap_or(IDLE_POLL).min(IDLE_POLL);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(next_due) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.changed() => {}
        }
    }
    // Let attempts in flight finish (each is bounded by the delivery timeout); their leases would
    // otherwise expire and they would be sent again after a restart.
    let grace = Duration::from_millis(sender.config.timeout_ms + 1_000);
    let _ = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
}

/// Removes finished deliveries, events with no pending delivery, and attempt logs older than `before`.
pub async fn remove_old(db: &Database, before: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < $1")
        .bind(before)
        .execute(db.writer())
        .await?;
    sqlx::query(
        "DELETE FROM events WHERE dispatched_at IS NOT NULL AND created_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)",
    )
    .bind(before)
    .execute(db.writer())
    .await?;
    sqlx::query("DELETE FROM webhook_logs WHERE created_at < $1")
        .bind(before)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Turns undispatched events into deliveries, one transaction per event.
async fn fan_out(db: &Database) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT id, project_id, event, stream_id FROM events WHERE dispatched_at IS NULL ORDER BY created_at LIMIT $1")
        .bind(FANOUT_BATCH)
        .fetch_all(db.writer())
        .await?;
    for row in rows {
        let id: String = row.try_get("id")?;
        let project_id: String = row.try_get("project_id")?;
        let event: String = row.try_get("event")?;
        let stream_id: Option<String> = row.try_get("stream_id")?;
        let now = now_ms();
        let mut tx = db.begin().await?;
        let claimed = sqlx::query(
            "UPDATE events SET dispatched_at = $1 WHERE id = $2 AND dispatched_at IS NULL",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            continue; // another node took it
        }
        for webhook in repo::all_in_project(&mut tx, &project_id).await? {
            let subscribed = webhook.events.iter().any(|e| e.as_str() == event);
            let stream_matches = webhook.stream_id.is_none() || webhook.stream_id == stream_id;
            if !(subscribed && stream_matches) {
                continue;
            }
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, event_id, webhook_id, project_id, attempts, state, next_attempt_at, lease_until, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, 'pending', $5, 0, $6, $7)",
            )
            .bind(crate::ids::new_id())
            .bind(&id)
            .bind(&webhook.id)
            .bind(&project_id)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

#[derive(Debug)]
struct Delivery {
    id: String,
    event_id: String,
    webhook_id: String,
    project_id: String,
    attempts: i64,
}

/// Leases up to `max` due deliveries, fairly across projects.
///
/// Projects take turns: each project's due deliveries are numbered in order of due time, and
/// the claim takes every project's first, then every project's second, and so on, so a project
/// with a thousand due deliveries does not go before one with a single later one. A project
/// with `per_project` deliveries in flight (leased and not finished, on any node) gets no more
/// until one ends. Under concurrent claims from several nodes the outer lease check keeps every
/// delivery claimed once; the share can then be exceeded briefly, never the exclusivity.
async fn claim_due(
    db: &Database,
    sender: &Sender,
    max: i64,
    per_project: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    if max <= 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let lease_until = now + sender.config.timeout_ms as i64 + 30_000;
    let rows = sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = $1 \
         WHERE id IN ( \
             SELECT id FROM ( \
                 SELECT d.id, d.next_attempt_at, COALESCE(busy.in_flight, 0) AS in_flight, \
                        ROW_NUMBER() OVER (PARTITION BY d.project_id ORDER BY d.next_attempt_at, d.id) AS turn \
                 FROM webhook_deliveries d \
                 LEFT JOIN (SELECT project_id, COUNT(*) AS in_flight FROM webhook_deliveries \
                            WHERE state = 'pending' AND lease_until > $2 GROUP BY project_id) busy \
                        ON busy.project_id = d.project_id \
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $3 AND d.lease_until <= $4 \
             ) due \
             WHERE due.turn + due.in_flight <= $5 \
             ORDER BY due.turn, due.next_attempt_at, due.id LIMIT $6) \
         AND lease_until <= $7 \
         RETURNING id, event_id, webhook_id, project_id, attempts",
    )
    .bind(lease_until)
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(per_project)
    .bind(max)
    .bind(now)
    .fetch_all(db.writer())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Delivery {
                id: row.try_get("id")?,
                event_id: row.try_get("event_id")?,
                webhook_id: row.try_get("webhook_id")?,
                project_id: row.try_get("project_id")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect()
}

/// How long until the next pending delivery that is not yet due becomes due, if any. Those due
/// already are either in flight or waiting for a slot, which the worker learns of otherwise.
async fn next_due_in(db: &Database) -> Option<Duration> {
    let now = now_ms();
    let row = sqlx::query(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at > $1",
    )
    .bind(now)
    .fetch_one(db.writer())
    .await
    .ok()?;
    let at: Option<i64> = row.try_get(0).ok()?;
    at.map(|at| Duration::from_millis((at - now).max(10) as u64))
}

async fn deliver(db: &Database, sender: &Sender, delivery: &Delivery) -> Result<(), sqlx::Error> {
    let webhook = repo::get(db.writer(), &delivery.project_id, &delivery.webhook_id)
        .await
        .ok()
        .flatten();
    let event = EventRecord::load(db, &delivery.project_id, &delivery.event_id).await?;
    let (Some(webhook), Some(event)) = (webhook, event) else {
        return finish(db, delivery, "cancelled", delivery.attempts).await;
    };
    let (outcome, _log) = sender.attempt(db, &webhook, &event).await?;
    let attempts = delivery.attempts + 1;
    match outcome {
        Outcome::Delivered => finish(db, delivery, "delivered", attempts).await,
        Outcome::Rejected => finish(db, delivery, "failed", attempts).await,
        Outcome::Refused => finish(db, delivery, "refused", attempts).await,
        Outcome::Retry if attempts >= sender.config.max_attempts as i64 => {
            finish(db, delivery, "failed", attempts).await
        }
        Outcome::Retry => {
            let now = now_ms();
            let next = now + sender.backoff(attempts as u32).as_millis() as i64;
            sqlx::query(
                "UPDATE webhook_deliveries SET attempts = $1, next_attempt_at = $2, lease_until = 0, updated_at = $3 \
                 WHERE project_id = $4 AND id = $5",
            )
            .bind(attempts)
            .bind(next)
            .bind(now)
            .bind(&delivery.project_id)
            .bind(&delivery.id)
            .execute(db.writer())
            .await?;
            Ok(())
        }
    }
}

async fn finish(
    db: &Database,
    delivery: &Delivery,
    state: &str,
    attempts: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, attempts = $2, lease_until = 0, updated_at = $3 WHERE project_id = $4 AND id = $5",
    )
    .bind(state)
    .bind(attempts)
    .bind(now_ms())
    .bind(&delivery.project_id)
    .bind(&delivery.id)
    .execute(db.writer())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = WebhookConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..WebhookConfig::default()
        };
        let sender = Sender::new(&config).unwrap();
        let delays: Vec<u64> = (1..=6)
            .map(|n| sender.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn body_has_studio_fields() {
        let event = EventRecord {
            id: "e".into(),
            project_id: "p".into(),
            user_id: "u".into(),
            event: "stream.started".into(),
            stream_id: Some("s".into()),
            stream: Some(r#"{"id":"s","name":"cam"}"#.into()),
            payload: None,
            created_at: 5,
        };
        let body: serde_json::Value = serde_json::from_slice(&event.body("w", 9)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id":"e","webhookId":"w","createdAt":5,"timestamp":9,"event":"stream.started","stream":{"id":"s","name":"cam"}})
        );
    }
}
