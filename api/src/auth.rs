//! Authentication and tenancy: an API key resolves to a [`Principal`] (user, project, key).
//!
//! Keys are random secrets shown once; the database stores their SHA-256. Every handler that
//! touches tenant data takes a `Principal` and passes its project to the repository, so a resource
//! of another project is simply not found.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

pub mod cache;

use crate::app::AppState;
use crate::db::{self, Database};
use crate::error::ApiError;

/// Who is calling: the owner of the API key and the project it belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub project_id: String,
    pub key_id: String,
    pub key_name: String,
    /// Admin keys manage the user's projects and API keys.
    pub admin: bool,
    /// When the key was last used (ms), as stored; refreshed at most once a minute.
    pub key_last_seen: i64,
}

/// `lastSeen` of a key is written at most this often, so authentication stays a read.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

/// `access` of an API key: which browser origins may use it, and how much.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyAccess {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsAccess>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsAccess {
    /// Origins (`scheme://host[:port]`) allowed to use the key from a browser; `*` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// When false, a browser may only call the operations a public web page needs.
    #[serde(default)]
    pub full_access: bool,
}

impl KeyAccess {
    /// True when the key may be used by a page served from `origin`.
    fn allows_origin(&self, origin: &str) -> bool {
        match &self.cors {
            Some(cors) => cors.allowed_origins.iter().any(|o| o == "*" || o == origin),
            None => false,
        }
    }

    /// A CORS key without full access is restricted to [`CORS_RESTRICTED_OPERATIONS`].
    fn is_restricted(&self) -> bool {
        match &self.cors {
            Some(cors) => !cors.allowed_origins.is_empty() && !cors.full_access,
            None => false,
        }
    }
}

/// Operations a restricted CORS key may call (Studio's list), as route templates under `/api`.
const CORS_RESTRICTED_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/stream/{id}/sessions"),
    ("GET", "/api/stream/sessions/{parentId}"),
    ("GET", "/api/session/{id}"),
    ("GET", "/api/stream/{id}"),
    ("PATCH", "/api/stream/{id}"),
    ("GET", "/api/multistream/target/{id}"),
    ("PATCH", "/api/multistream/target/{id}"),
    ("POST", "/api/stream"),
    ("POST", "/api/multistream/target"),
    ("GET", "/api/task/{id}"),
    ("GET", "/api/asset/{id}"),
    ("PATCH", "/api/asset/{id}"),
    ("POST", "/api/asset/upload/url"),
    ("POST", "/api/asset/request-upload"),
    ("POST", "/api/asset/{id}/export"),
    ("GET", "/api/data/views/{id}/total"),
    ("GET", "/api/data/views/query/total/{id}"),
    ("GET", "/api/data/views/query/creator"),
];

/// The SHA-256 of an API key, hex-encoded: what the database stores and looks keys up by.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new API key secret (a UUIDv4, like Studio's keys).
pub fn new_key_secret() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Extracts the bearer token, or says why the header is unusable.
fn bearer_token(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "request is not authenticated: send Authorization: Bearer <API key>".into(),
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?
        .trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).ok_or_else(|| {
        ApiError::Unauthorized("the Authorization header must be `Bearer <API key>`".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        let scheme: String = scheme.chars().take(32).collect();
        return Err(ApiError::Unauthorized(format!(
            "unsupported authorization header scheme: {scheme}"
        )));
    }
    let token = rest.trim();
    if token.is_empty() || token.len() > 256 {
        return Err(ApiError::Unauthorized("invalid API key".into()));
    }
    Ok(token.to_string())
}

/// Looks up an API key by the hash of its secret. `None` when it is unknown or revoked.
pub async fn lookup_key(
    db: &Database,
    key_hash: &str,
) -> Result<Option<(Principal, KeyAccess)>, ApiError> {
    let row = sqlx::query(
        "SELECT k.id, k.name, k.user_id, k.project_id, k.admin, k.access, k.last_seen
         FROM api_keys k JOIN projects p ON p.id = k.project_id
         WHERE k.key_hash = $1 AND k.revoked = 0 AND p.deleted = 0",
    )
    .bind(key_hash)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let access: KeyAccess = db::get_json(&row, "access")?.unwrap_or_default();
    let principal = Principal {
        key_id: row.try_get("id")?,
        key_name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        admin: db::get_bool(&row, "admin")?,
        key_last_seen: row.try_get("last_seen")?,
    };
    Ok(Some((principal, access)))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let key_hash = hash_key(&token);
        let cache = state.key_cache();
        let (principal, access) = match cache.get(&key_hash) {
            Some(hit) => hit,
            None => {
                let generation = cache.generation();
                let Some((principal, access)) = lookup_key(state.db(), &key_hash).await? else {
                    return Err(ApiError::Unauthorized("invalid API key".into()));
                };
                cache.put(
                    key_hash.clone(),
                    principal.clone(),
                    access.clone(),
                    generation,
                );
                (principal, access)
            }
        };
        check_browser_use(parts, &access)?;
        let now = crate::clock::now_ms();
        if now - principal.key_last_seen >= LAST_SEEN_RESOLUTION_MS {
            cache.touch(&key_hash, now);
            // Off the request path: a failed write only delays `lastSeen`.
            let db = state.db().clone();
            let key_id = principal.key_id.clone();
            tokio::spawn(async move {
                let result = sqlx::query(
                    "UPDATE api_keys SET last_seen = $1 WHERE id = $2 AND last_seen < $3",
                )
                .bind(now)
                .bind(&key_id)
                .bind(now - LAST_SEEN_RESOLUTION_MS)
                .execute(db.writer())
                .await;
                if let Err(err) = result {
                    tracing::warn!(error = %err, "recording API key use failed");
                }
            });
        }
        Ok(principal)
    }
}

/// A key used from a page (the request has an `Origin`) must allow that origin. A restricted CORS
/// key may only call the operations in [`CORS_RESTRICTED_OPERATIONS`], with or without `Origin`:
/// such a key is published in a web page, so anyone can send it from a script without one.
fn check_browser_use(parts: &Parts, access: &KeyAccess) -> Result<(), ApiError> {
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if let Some(origin) = origin
        && !access.allows_origin(origin)
    {
        let origin: String = origin.chars().take(200).collect();
        return Err(ApiError::Forbidden(format!(
            "credential disallows CORS access from origin {origin}: add it to the key's access.cors.allowedOrigins"
        )));
    }
    if access.is_restricted() {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or("");
        let allowed = CORS_RESTRICTED_OPERATIONS
            .iter()
            .any(|(method, path)| parts.method.as_str() == *method && *path == route);
        if !allowed {
            return Err(ApiError::Forbidden(
                "access forbidden for CORS-enabled API key with restricted access".into(),
            ));
        }
    }
    Ok(())
}

/// A principal whose key is an admin key.
pub struct AdminPrincipal(pub Principal);

impl FromRequestParts<AppState> for AdminPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.admin {
            return Err(ApiError::Forbidden(
                "access forbidden: this operation needs an admin API key (studio api-key create --admin)".into(),
            ));
        }
        Ok(AdminPrincipal(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers).unwrap(), "abc");
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        let err = bearer_token(&headers).unwrap_err().to_string();
        assert_eq!(err, "unsupported authorization header scheme: Basic");
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let access = KeyAccess {
            cors: Some(CorsAccess {
                allowed_origins: vec!["https://app.example".into()],
                full_access: false,
            }),
        };
        assert!(access.allows_origin("https://app.example"));
        assert!(!access.allows_origin("https://app.example:8443"));
        assert!(access.is_restricted());
        let any = KeyAccess {
            cors: Some(CorsAccess {
                allowed_origins: vec!["*".into()],
                full_access: true,
            }),
        };
        assert!(any.allows_origin("http://localhost:3000"));
        assert!(!any.is_restricted());
        assert!(!KeyAccess::default().allows_origin("https://app.example"));
    }
}
