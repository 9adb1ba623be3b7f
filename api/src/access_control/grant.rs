//! Grants: what the gate hands a viewer it admitted, written into every URI of the playlists it
//! serves them (`?grant=`), because players (hls.js, Safari, ffmpeg) do not carry the query of
//! the master playlist on to the media playlists and segments.
//!
//! A grant names one playback ID, an expiry, and what admitted the viewer: a signing key (JWT
//! policy, checked again on every use so that disabling the key stops playback at once) or an
//! access key and when the webhook last approved it (webhook policy, asked again once the
//! policy's refresh interval has passed). It is signed (HMAC-SHA256) with a secret every node
//! shares, so checking one costs a hash, not a signature verification or a database query.
//!
//! Format: `base64url(JSON claims) "." base64url(HMAC-SHA256(secret, first part))`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What admitted the viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    /// A JWT signed by this signing key (its id).
    #[serde(rename = "k")]
    SigningKey(String),
    /// This access key, approved by the policy's webhook at `checked_at` (unix ms).
    #[serde(rename = "a")]
    AccessKey { key: String, checked_at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The playback ID it opens.
    #[serde(rename = "p")]
    pub playback_id: String,
    /// Unix ms after which it no longer does.
    #[serde(rename = "e")]
    pub expires_at: i64,
    #[serde(rename = "b")]
    pub basis: Basis,
    /// Who was admitted: a digest of the credential presented, so that views are counted per
    /// viewer however often the grant is renewed.
    #[serde(rename = "v")]
    pub viewer: String,
}

/// Signs and checks grants.
pub struct GrantKey {
    mac: Hmac<Sha256>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Not a grant this server signed.
    Forged,
    Expired,
}

impl GrantKey {
    pub fn new(secret: &[u8]) -> GrantKey {
        GrantKey {
            mac: Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    pub fn sign(&self, grant: &Grant) -> String {
        let claims = serde_json::to_vec(grant).expect("a grant serializes");
        let claims = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = self.mac.clone();
        mac.update(claims.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{claims}.{tag}")
    }

    /// The grant `token` carries, if this server signed it and it has not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Grant, GrantError> {
        let (claims, tag) = token.split_once('.').ok_or(GrantError::Forged)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| GrantError::Forged)?;
        let mut mac = self.mac.clone();
        mac.update(claims.as_bytes());
        mac.verify_slice(&tag).map_err(|_| GrantError::Forged)?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| GrantError::Forged)?;
        let grant: Grant = serde_json::from_slice(&claims).map_err(|_| GrantError::Forged)?;
        if grant.expires_at <= now_ms {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            playback_id: "abcd1234".into(),
            expires_at: 2_000,
            basis: Basis::AccessKey {
                key: "viewer-7".into(),
                checked_at: 1_000,
            },
            viewer: "v7".into(),
        }
    }

    #[test]
    fn round_trips_until_it_expires() {
        let key = GrantKey::new(b"secret");
        let token = key.sign(&grant());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{token}: must travel in a URL as is"
        );
        assert_eq!(key.verify(&token, 1_500), Ok(grant()));
        assert_eq!(key.verify(&token, 2_000), Err(GrantError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_grant_is_forged() {
        let key = GrantKey::new(b"secret");
        let token = key.sign(&grant());
        assert_eq!(
            GrantKey::new(b"other").verify(&token, 0),
            Err(GrantError::Forged)
        );
        let mut other = grant();
        other.playback_id = "efgh".into();
        let (claims, _) = key
            .sign(&other)
            .split_once('.')
            .map(|(c, t)| (c.to_string(), t.to_string()))
            .unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(
            key.verify(&format!("{claims}.{tag}"), 0),
            Err(GrantError::Forged)
        );
        assert_eq!(key.verify("garbage", 0), Err(GrantError::Forged));
        assert_eq!(key.verify("a.b.c", 0), Err(GrantError::Forged));
    }
}
