//! Signing keys (`/access-control/signing-key`): P-256 key pairs whose private half signs the
//! playback JWTs of `jwt` playback policies. Only the public key is stored; the private key is
//! returned once, by the request that creates it. The playback gate (`gate`) checks tokens
//! against them; disabling or deleting one stops its tokens within a second on every node.

use crate::http::json::Query;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::JsonBody;
use crate::http::list::{FieldKind, ListParams, ListRequest, ListSpec, Sql, field};
use crate::http::validate::Problems;

/// Keys a project may hold at once (deleted ones do not count).
pub const MAX_KEYS_PER_PROJECT: i64 = 10;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SigningKey)]
pub struct SigningKey {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    pub created_at: i64,
    /// When the key last validated a playback token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Base64 of the SPKI PEM: the `pub` claim of playback JWTs.
    pub public_key: String,
    /// Disabled keys no longer validate playback tokens.
    pub disabled: bool,
    /// Base64 of the PKCS#8 PEM; returned only when the key is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewSigningKeyPayload)]
pub struct NewSigningKeyPayload {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    /// Ignored: the project is the API key's.
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SigningKeyPatchPayload)]
pub struct SigningKeyPatch {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

const COLUMNS: &str = "id, project_id, user_id, name, public_key, disabled, created_at, last_seen";

const LIST_SPEC: ListSpec = ListSpec {
    fields: &[
        field("id", "id", FieldKind::Text),
        field("name", "name", FieldKind::FullText),
        field("createdAt", "created_at", FieldKind::Number),
        field("disabled", "disabled", FieldKind::Bool),
        field("userId", "user_id", FieldKind::Text),
        field("projectId", "project_id", FieldKind::Text),
    ],
    default_order: &[("created_at", true)],
};

fn from_row(row: &AnyRow) -> Result<SigningKey, sqlx::Error> {
    Ok(SigningKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        created_at: row.try_get("created_at")?,
        last_seen: row.try_get("last_seen")?,
        public_key: row.try_get("public_key")?,
        disabled: db::get_bool(row, "disabled")?,
        private_key: None,
    })
}

/// A new key pair: (base64 SPKI PEM, base64 PKCS#8 PEM).
fn generate_pair() -> anyhow::Result<(String, String)> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF)?;
    let public_pem = secret.public_key().to_public_key_pem(LineEnding::LF)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok((
        b64.encode(public_pem.as_bytes()),
        b64.encode(private_pem.as_bytes()),
    ))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
}

/// Create a signing key. The response is the only place the private key appears.
#[utoipa::path(post, path = "/access-control/signing-key", tag = "accessControl", operation_id = "createSigningKey",
    request_body(content = Option<NewSigningKeyPayload>),
    responses((status = 200, body = SigningKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Json<SigningKey>> {
    // The SDKs send no body at all when no name is given.
    let payload: NewSigningKeyPayload = match std::str::from_utf8(&body).map(str::trim) {
        Ok("") | Ok("null") => NewSigningKeyPayload::default(),
        _ => crate::http::json::parse(&body)?,
    };
    let mut problems = Problems::default();
    if let Some(name) = &payload.name {
        problems.text_len("name", name, 1, 500);
    }
    problems.into_result()?;
    let (public_key, private_key) = generate_pair()?;
    let mut tx = state.db().begin().await?;
    // Live keys count against the limit; default names count every key the project ever had, so
    // a name never repeats after a delete.
    let counts = sqlx::query("SELECT COUNT(CASE WHEN deleted = 0 THEN 1 END), COUNT(*) FROM signing_keys WHERE project_id = $1")
        .bind(&principal.project_id)
        .fetch_one(&mut *tx)
        .await?;
    let (count, ever_created): (i64, i64) = (counts.try_get(0)?, counts.try_get(1)?);
    if count >= MAX_KEYS_PER_PROJECT {
        return Err(ApiError::Forbidden(format!(
            "a project can have at most {MAX_KEYS_PER_PROJECT} signing keys: delete one before creating another"
        )));
    }
    let key = SigningKey {
        id: crate::ids::new_id(),
        name: match payload.name {
            Some(name) => name,
            None => format!("Signing Key {}", ever_created + 1),
        },
        user_id: principal.user_id.clone(),
        project_id: principal.project_id.clone(),
        created_at: now_ms(),
        last_seen: None,
        public_key,
        disabled: false,
        private_key: Some(private_key),
    };
    sqlx::query(
        "INSERT INTO signing_keys (id, project_id, user_id, name, public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(&key.project_id)
    .bind(&key.user_id)
    .bind(&key.name)
    .bind(&key.public_key)
    .bind(key.created_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Usable at once on this node, within a second on the others.
    state.gate().jwts().forget_project(&principal.project_id);
    Ok(Json(key))
}

/// List the project's signing keys.
#[utoipa::path(get, path = "/access-control/signing-key", tag = "accessControl", operation_id = "getSigningKeys",
    params(ListParams),
    responses((status = 200, body = Vec<SigningKey>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let req = ListRequest::parse(&params, &LIST_SPEC)?;
    let mut scope = Sql::new(" WHERE project_id = ");
    scope.bind(&principal.project_id).push(" AND deleted = 0");
    let (rows, page) = req
        .fetch(state.db(), COLUMNS, "signing_keys", scope)
        .await?;
    let keys = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(req.respond(keys, page, &uri, state.public_url()))
}

async fn load<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<SigningKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE project_id = $1 AND id = $2 AND deleted = 0"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Get a signing key.
#[utoipa::path(get, path = "/access-control/signing-key/{keyId}", tag = "accessControl", operation_id = "getSigningKey",
    params(("keyId" = String, Path, description = "Signing key id")),
    responses((status = 200, body = SigningKey), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SigningKey>> {
    load(state.db().reader(), &principal.project_id, &id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Rename or disable a signing key.
#[utoipa::path(patch, path = "/access-control/signing-key/{keyId}", tag = "accessControl", operation_id = "updateSigningKey",
    params(("keyId" = String, Path, description = "Signing key id")),
    request_body = SigningKeyPatch,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<SigningKeyPatch>,
) -> ApiResult<StatusCode> {
    let mut problems = Problems::default();
    if let Some(name) = &patch.name {
        problems.text_len("name", name, 1, 500);
    }
    problems.into_result()?;
    let mut tx = state.db().begin().await?;
    let mut key = load(&mut *tx, &principal.project_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if let Some(name) = patch.name {
        key.name = name;
    }
    if let Some(disabled) = patch.disabled {
        key.disabled = disabled;
    }
    sqlx::query(
        "UPDATE signing_keys SET name = $1, disabled = $2 WHERE project_id = $3 AND id = $4",
    )
    .bind(&key.name)
    .bind(key.disabled as i64)
    .bind(&principal.project_id)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // This node stops admitting with a disabled key at once; others within a second.
    state.gate().jwts().forget_project(&principal.project_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a signing key; tokens it signed stop working.
#[utoipa::path(delete, path = "/access-control/signing-key/{keyId}", tag = "accessControl", operation_id = "deleteSigningKey",
    params(("keyId" = String, Path, description = "Signing key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let done = sqlx::query(
        "UPDATE signing_keys SET deleted = 1 WHERE project_id = $1 AND id = $2 AND deleted = 0",
    )
    .bind(&principal.project_id)
    .bind(&id)
    .execute(state.db().writer())
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found());
    }
    state.gate().jwts().forget_project(&principal.project_id);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

    #[test]
    fn pair_round_trips_and_matches() {
        let (public, private) = generate_pair().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let public_pem = String::from_utf8(b64.decode(public).unwrap()).unwrap();
        let private_pem = String::from_utf8(b64.decode(private).unwrap()).unwrap();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let secret = p256::SecretKey::from_pkcs8_pem(&private_pem).unwrap();
        let public = p256::PublicKey::from_public_key_pem(&public_pem).unwrap();
        assert_eq!(secret.public_key(), public);
    }
}
