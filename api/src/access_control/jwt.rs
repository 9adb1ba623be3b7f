//! Playback JWTs (policy `jwt`): ES256 tokens a project's backend signs with one of its signing
//! keys, as `signAccessJwt` of `@livepeer/react/crypto` makes them.
//!
//! Claims: `sub` is the playback ID, `pub` the signing key's `publicKey` string (it names the key
//! and verifies the signature), `exp` is required and at most 7 days ahead, `nbf` and `iat` are
//! honoured with a few seconds of leeway for clocks. The key must belong to the content's project
//! and be neither disabled nor deleted: the keys of a project are read again every
//! [`KEY_STATE_TTL`], on every node, so disabling one takes effect within a second everywhere.
//! Verified tokens are cached, so a player sending its JWT with every request (a cookie, MP4
//! range requests) pays for the signature once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest;
use sqlx::Row;
use tokio::sync::OnceCell;

use super::cache::TtlCache;
use crate::db::{self, Database};

/// How long a node trusts what it read about a project's signing keys.
pub const KEY_STATE_TTL: Duration = Duration::from_millis(800);
/// Furthest expiry a playback JWT may have.
pub const MAX_LIFETIME_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: f64 = 5.0;
/// `lastSeen` of a key is written at most this often.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// Why a playback JWT was refused. The messages name what to fix, never other content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    Malformed,
    NotEs256,
    OtherContent,
    UnknownKey,
    DisabledKey,
    BadSignature,
    Expired,
    TooLong,
    NotYetValid,
}

impl JwtRefusal {
    pub fn message(self) -> &'static str {
        match self {
            JwtRefusal::Malformed => "the playback token is not a JWT with sub, pub and exp claims",
            JwtRefusal::NotEs256 => "the playback token must be signed with ES256",
            JwtRefusal::OtherContent => "the playback token is for another playback ID",
            JwtRefusal::UnknownKey => {
                "the playback token's pub is not a signing key of this content's project"
            }
            JwtRefusal::DisabledKey => "the playback token's signing key is disabled",
            JwtRefusal::BadSignature => "the playback token's signature does not verify",
            JwtRefusal::Expired => "the playback token has expired",
            JwtRefusal::TooLong => "the playback token expires more than 7 days ahead",
            JwtRefusal::NotYetValid => "the playback token is not valid yet (nbf or iat)",
        }
    }
}

/// A token that verified: which key signed it and when it expires (unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJwt {
    pub playback_id: String,
    pub key_id: String,
    pub expires_at: i64,
}

/// A signing key as the gate sees it.
pub struct KeyRecord {
    pub id: String,
    pub public_key: String,
    pub disabled: bool,
    /// Parsed on first use.
    decoding: OnceLock<Option<DecodingKey>>,
}

impl KeyRecord {
    fn decoding_key(&self) -> Option<&DecodingKey> {
        self.decoding
            .get_or_init(|| {
                use p256::pkcs8::DecodePublicKey;
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(&self.public_key)
                    .ok()?;
                let key =
                    p256::PublicKey::from_public_key_pem(std::str::from_utf8(&pem).ok()?).ok()?;
                // The verifier takes the uncompressed point, as in the SPKI's bit string.
                Some(DecodingKey::from_ec_der(
                    p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false)
                        .as_bytes(),
                ))
            })
            .as_ref()
    }
}

type ProjectKeys = Arc<[KeyRecord]>;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "pub")]
    public_key: String,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

/// Checks playback JWTs against the signing keys of the content's project.
pub struct PlaybackJwts {
    db: Database,
    keys: TtlCache<String, Arc<OnceCell<ProjectKeys>>>,
    /// By the SHA-256 of the token (tokens are client-sized; digests are not).
    verified: TtlCache<[u8; 32], VerifiedJwt>,
    last_seen_written: TtlCache<String, ()>,
}

impl PlaybackJwts {
    pub fn new(db: Database) -> PlaybackJwts {
        PlaybackJwts {
            db,
            keys: TtlCache::new(100_000),
            verified: TtlCache::new(100_000),
            last_seen_written: TtlCache::new(10_000),
        }
    }

    /// The project's signing keys that are not deleted, as read at most [`KEY_STATE_TTL`] ago.
    pub async fn project_keys(&self, project_id: &str) -> Result<ProjectKeys, sqlx::Error> {
        let cell = self.keys.get_or_insert_with(
            &project_id.to_string(),
            Instant::now() + KEY_STATE_TTL,
            Default::default,
        );
        cell.get_or_try_init(|| async {
            let rows = sqlx::query(
                "SELECT id, public_key, disabled FROM signing_keys WHERE project_id = $1 AND deleted = 0",
            )
            .bind(project_id)
            .fetch_all(self.db.writer())
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(KeyRecord {
                        id: row.try_get("id")?,
                        public_key: row.try_get("public_key")?,
                        disabled: db::get_bool(row, "disabled")?,
                        decoding: OnceLock::new(),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map(Into::into)
        })
        .await
        .cloned()
    }

    /// Forgets what this node knows of the project's keys (they were changed here).
    pub fn forget_project(&self, project_id: &str) {
        self.keys.remove(&project_id.to_string());
    }

    /// Whether key `key_id` of the project may still admit viewers: `Ok(())`, or why not
    /// ([`JwtRefusal::DisabledKey`], or [`JwtRefusal::UnknownKey`] once deleted).
    pub async fn key_usable(
        &self,
        project_id: &str,
        key_id: &str,
    ) -> Result<Result<(), JwtRefusal>, sqlx::Error> {
        let keys = self.project_keys(project_id).await?;
        Ok(match keys.iter().find(|k| k.id == key_id) {
            Some(key) if !key.disabled => Ok(()),
            Some(_) => Err(JwtRefusal::DisabledKey),
            None => Err(JwtRefusal::UnknownKey),
        })
    }

    /// Verifies `token` for `playback_id` of `project_id` at `now_ms`.
    pub async fn verify(
        &self,
        project_id: &str,
        playback_id: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<Result<VerifiedJwt, JwtRefusal>, sqlx::Error> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.verified.get(&digest) {
            if known.playback_id != playback_id {
                return Ok(Err(JwtRefusal::OtherContent));
            }
            if known.expires_at <= now_ms - (LEEWAY_SECS * 1000.0) as i64 {
                return Ok(Err(JwtRefusal::Expired));
            }
            return Ok(self
                .key_usable(project_id, &known.key_id)
                .await?
                .map(|()| known));
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return Ok(Err(JwtRefusal::Malformed)),
        };
        if header.alg != Algorithm::ES256 {
            return Ok(Err(JwtRefusal::NotEs256));
        }
        let claims: Claims = match jsonwebtoken::dangerous::insecure_decode_claims(token) {
            Ok(claims) => claims,
            Err(_) => return Ok(Err(JwtRefusal::Malformed)),
        };
        if claims.sub != playback_id {
            return Ok(Err(JwtRefusal::OtherContent));
        }
        let keys = self.project_keys(project_id).await?;
        let Some(key) = keys.iter().find(|k| k.public_key == claims.public_key) else {
            return Ok(Err(JwtRefusal::UnknownKey));
        };
        if key.disabled {
            return Ok(Err(JwtRefusal::DisabledKey));
        }
        let Some(decoding) = key.decoding_key() else {
            return Ok(Err(JwtRefusal::UnknownKey));
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        if jsonwebtoken::decode::<serde_json::Value>(token, decoding, &validation).is_err() {
            return Ok(Err(JwtRefusal::BadSignature));
        }
        let now = now_ms as f64 / 1000.0;
        if claims.exp + LEEWAY_SECS <= now {
            return Ok(Err(JwtRefusal::Expired));
        }
        if claims.exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
            return Ok(Err(JwtRefusal::TooLong));
        }
        if [claims.nbf, claims.iat]
            .into_iter()
            .flatten()
            .any(|t| t > now + LEEWAY_SECS)
        {
            return Ok(Err(JwtRefusal::NotYetValid));
        }
        let verified = VerifiedJwt {
            playback_id: claims.sub,
            key_id: key.id.clone(),
            expires_at: (claims.exp * 1000.0) as i64,
        };
        let remaining = Duration::from_millis((verified.expires_at - now_ms).max(0) as u64);
        self.verified.insert(
            digest,
            verified.clone(),
            Instant::now() + remaining.min(Duration::from_secs(600)),
        );
        self.record_use(project_id, &verified.key_id, now_ms);
        Ok(Ok(verified))
    }

    /// Writes the key's `lastSeen`, at most once a minute per key and off the request's path.
    fn record_use(&self, project_id: &str, key_id: &str, now_ms: i64) {
        if self.last_seen_written.get(&key_id.to_string()).is_some() {
            return;
        }
        self.last_seen_written
            .insert(key_id.to_string(), (), Instant::now() + LAST_SEEN_EVERY);
        let db = self.db.clone();
        let (project_id, key_id) = (project_id.to_string(), key_id.to_string());
        tokio::spawn(async move {
            let written = sqlx::query(
                "UPDATE signing_keys SET last_seen = $1 WHERE project_id = $2 AND id = $3",
            )
            .bind(now_ms)
            .bind(&project_id)
            .bind(&key_id)
            .execute(db.writer())
            .await;
            if let Err(err) = written {
                tracing::warn!(error = %err, key = %key_id, "recording a signing key's last use failed");
            }
        });
    }
}
