//! The playback gate: whether a request may have a content's media, and what to write into the
//! playlists it gets so that the player's next requests are admitted too.
//!
//! In order:
//! 1. `allowedOrigins` (any policy type): a browser request from a page whose origin is not listed
//!    is refused. Requests outside browsers (no `Origin`, no `Referer`) are not concerned.
//! 2. Public content (no policy, or `public`): open, nothing else to check.
//! 3. A grant (`?grant=`, written by this gate into the playlists it served): admitted while it
//!    is valid, its signing key usable, or its access key approved within the refresh interval.
//! 4. Policy `jwt`: a playback JWT (query, header or cookie). Policy `webhook`: an access key,
//!    approved by the policy's webhook.
//!
//! No credential: 401. A credential that fails: 403 saying why. Neither says anything about
//! content other than the one asked for.

use tokio::sync::OnceCell;

use super::credentials::Credentials;
use super::grant::{Basis, Grant, GrantError, GrantKey};
use super::jwt::PlaybackJwts;
use super::webhook::{AccessWebhooks, Decision};
use crate::clock::now_ms;
use crate::db::Database;
use crate::error::ApiError;
use crate::streams::model::{PlaybackPolicy, PlaybackPolicyType};

/// Re-check cadence of webhook policies without a `refreshInterval` (Studio's default).
const DEFAULT_REFRESH_SECS: f64 = 600.0;
/// Lifetime of a grant issued on an access key (re-checked every refresh interval meanwhile).
const ACCESS_GRANT_LIFETIME_MS: i64 = 24 * 3600 * 1000;

/// What is being played.
pub struct Content<'a> {
    pub project_id: &'a str,
    pub playback_id: &'a str,
    pub policy: Option<&'a PlaybackPolicy>,
}

/// The gate's answer to a request it lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Public content: anyone may fetch it, caches included.
    Open,
    /// Gated content, admitted: the playlists served carry `grant` on every URI; `viewer` is a
    /// digest of the credential presented (the same for every request of one viewer).
    Granted { grant: String, viewer: String },
}

/// A short digest naming a viewer by their credential.
fn viewer_of(credential: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(credential.as_bytes())[..12])
}

pub struct PlaybackGate {
    db: Database,
    grant_key: OnceCell<GrantKey>,
    jwts: PlaybackJwts,
    webhooks: AccessWebhooks,
}

impl PlaybackGate {
    pub fn new(db: Database, allow_private_webhooks: bool) -> anyhow::Result<PlaybackGate> {
        Ok(PlaybackGate {
            jwts: PlaybackJwts::new(db.clone()),
            webhooks: AccessWebhooks::new(db.clone(), allow_private_webhooks)?,
            grant_key: OnceCell::new(),
            db,
        })
    }

    /// This node's view of signing keys (to forget a project's when they change).
    pub fn jwts(&self) -> &PlaybackJwts {
        &self.jwts
    }

    /// Lets the request through or says why not.
    pub async fn admit(
        &self,
        content: &Content<'_>,
        viewer: &Credentials,
    ) -> Result<Admission, ApiError> {
        let policy = content.policy;
        if let (Some(allowed), Some(origin)) = (
            policy.and_then(|p| p.allowed_origins.as_deref()),
            viewer.origin.as_deref(),
        ) && !allowed.is_empty()
            && !origin_allowed(allowed, origin)
        {
            return Err(ApiError::Forbidden(format!(
                "pages on {origin} may not play this content (not in its playback policy's allowedOrigins)"
            )));
        }
        let Some(policy) = policy.filter(|p| p.kind != PlaybackPolicyType::Public) else {
            return Ok(Admission::Open);
        };
        if viewer.oversized() {
            return Err(ApiError::Forbidden(
                "the playback credential is too long".into(),
            ));
        }
        let now = now_ms();
        if let Some(token) = &viewer.grant {
            match self.admit_grant(content, policy, token, now).await {
                Ok(admission) => return Ok(admission),
                // A stale grant beside a credential (a cookie, say): the credential decides.
                Err(_) if viewer.jwt.is_some() || viewer.access_key.is_some() => {}
                Err(refusal) => return Err(refusal),
            }
        }
        match policy.kind {
            PlaybackPolicyType::Jwt => {
                let Some(jwt) = &viewer.jwt else {
                    return Err(ApiError::Unauthorized(
                        "this content needs a playback JWT: pass it as ?jwt=, the Livepeer-Jwt header or the Livepeer-Jwt cookie".into(),
                    ));
                };
                let verified = self
                    .jwts
                    .verify(content.project_id, content.playback_id, jwt, now)
                    .await?
                    .map_err(|refusal| ApiError::Forbidden(refusal.message().into()))?;
                self.grant(Grant {
                    playback_id: content.playback_id.to_string(),
                    expires_at: verified.expires_at,
                    basis: Basis::SigningKey(verified.key_id),
                    viewer: viewer_of(jwt),
                })
                .await
            }
            PlaybackPolicyType::Webhook => {
                let Some(access_key) = &viewer.access_key else {
                    return Err(ApiError::Unauthorized(
                        "this content needs an access key: pass it as ?accessKey=, the Livepeer-Access-Key header or the Livepeer-Access-Key cookie".into(),
                    ));
                };
                let at = self.ask_webhook(content, policy, access_key).await?;
                self.grant(Grant {
                    playback_id: content.playback_id.to_string(),
                    expires_at: at + ACCESS_GRANT_LIFETIME_MS,
                    basis: Basis::AccessKey {
                        key: access_key.clone(),
                        checked_at: at,
                    },
                    viewer: viewer_of(access_key),
                })
                .await
            }
            PlaybackPolicyType::Public => Ok(Admission::Open),
        }
    }

    async fn admit_grant(
        &self,
        content: &Content<'_>,
        policy: &PlaybackPolicy,
        token: &str,
        now: i64,
    ) -> Result<Admission, ApiError> {
        let grant = self.grant_key().await?.verify(token, now).map_err(|e| {
            ApiError::Forbidden(
                match e {
                    GrantError::Expired => {
                        "the playback grant has expired: load the playlist again with a credential"
                    }
                    GrantError::Forged => "the playback grant is not valid",
                }
                .into(),
            )
        })?;
        if grant.playback_id != content.playback_id {
            return Err(ApiError::Forbidden(
                "the playback grant is for another playback ID".into(),
            ));
        }
        match (policy.kind, &grant.basis) {
            (PlaybackPolicyType::Jwt, Basis::SigningKey(key_id)) => {
                match self.jwts.key_usable(content.project_id, key_id).await? {
                    Ok(()) => Ok(Admission::Granted {
                        grant: token.to_string(),
                        viewer: grant.viewer.clone(),
                    }),
                    Err(refusal) => Err(ApiError::Forbidden(refusal.message().into())),
                }
            }
            (PlaybackPolicyType::Webhook, Basis::AccessKey { key, checked_at }) => {
                if ((now - checked_at) as f64) < refresh_secs(policy) * 1000.0 {
                    return Ok(Admission::Granted {
                        grant: token.to_string(),
                        viewer: grant.viewer.clone(),
                    });
                }
                let at = self.ask_webhook(content, policy, key).await?;
                self.grant(Grant {
                    basis: Basis::AccessKey {
                        key: key.clone(),
                        checked_at: at,
                    },
                    ..grant
                })
                .await
            }
            _ => Err(ApiError::Forbidden(
                "the playback grant does not match this content's playback policy".into(),
            )),
        }
    }

    /// When the policy's webhook approved `access_key` (unix ms), or its refusal.
    async fn ask_webhook(
        &self,
        content: &Content<'_>,
        policy: &PlaybackPolicy,
        access_key: &str,
    ) -> Result<i64, ApiError> {
        let refresh = std::time::Duration::from_secs_f64(refresh_secs(policy));
        match self
            .webhooks
            .decide(
                content.project_id,
                content.playback_id,
                policy,
                access_key,
                refresh,
            )
            .await
        {
            Decision::Allowed { at } => Ok(at),
            Decision::Refused(why) => Err(ApiError::Forbidden(why)),
        }
    }

    async fn grant(&self, grant: Grant) -> Result<Admission, ApiError> {
        Ok(Admission::Granted {
            grant: self.grant_key().await?.sign(&grant),
            viewer: grant.viewer,
        })
    }

    async fn grant_key(&self) -> Result<&GrantKey, ApiError> {
        self.grant_key
            .get_or_try_init(|| async {
                let secret = crate::secrets::server_secret(&self.db, "playback_grant_key").await?;
                Ok::<_, anyhow::Error>(GrantKey::new(secret.as_bytes()))
            })
            .await
            .map_err(ApiError::Internal)
    }
}

/// How often an access key is asked about again: the policy's refresh interval, at least a
/// second (a zero interval would ask the webhook on every segment).
fn refresh_secs(policy: &PlaybackPolicy) -> f64 {
    policy
        .refresh_interval
        .unwrap_or(DEFAULT_REFRESH_SECS)
        .clamp(1.0, 7.0 * 86_400.0)
}

/// Whether `origin` (normalized) is one of `allowed` (`*` allows every origin).
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || super::credentials::normalize_origin(a) == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_normalized() {
        let allowed = vec!["https://App.example.com/".to_string()];
        assert!(origin_allowed(&allowed, "https://app.example.com"));
        assert!(!origin_allowed(&allowed, "https://evil.example.com"));
        assert!(!origin_allowed(&allowed, "http://app.example.com"));
        assert!(origin_allowed(&["*".to_string()], "https://any.example"));
    }
}
