//! The account store: users, their projects, and the API keys of each project.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::auth::{KeyAccess, hash_key, new_key_secret};
use crate::clock::now_ms;
use crate::db::{self, Tx};

/// The user `studio api-key create` works for on a self-hosted install.
pub const LOCAL_USER: &str = "local";
pub const DEFAULT_PROJECT: &str = "default";

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Project)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub created_at: i64,
}

/// An API key as listed: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiToken)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    pub admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<KeyAccess>,
    pub created_at: i64,
    pub last_seen: i64,
    /// The secret, present only in the response that creates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

pub const PROJECT_COLUMNS: &str = "id, name, user_id, created_at";
pub const KEY_COLUMNS: &str = "id, name, user_id, project_id, admin, access, created_at, last_seen";

pub fn project_from_row(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub fn key_from_row(row: &AnyRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        project_id: row.try_get("project_id")?,
        admin: db::get_bool(row, "admin")?,
        access: db::get_json(row, "access")?,
        created_at: row.try_get("created_at")?,
        last_seen: row.try_get("last_seen")?,
        key: None,
    })
}

/// The user called `name`, created when missing.
pub async fn ensure_user(tx: &mut Tx, name: &str) -> Result<String, sqlx::Error> {
    if let Some(row) = sqlx::query("SELECT id FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
    {
        return row.try_get("id");
    }
    let id = crate::ids::new_id();
    sqlx::query("INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(name)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// The user's project called `name`, created when missing.
pub async fn ensure_project(
    tx: &mut Tx,
    user_id: &str,
    name: &str,
) -> Result<Project, sqlx::Error> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE user_id = $1 AND name = $2 AND deleted = 0"
    );
    if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
    {
        return project_from_row(&row);
    }
    create_project(tx, user_id, name).await
}

pub async fn create_project(
    tx: &mut Tx,
    user_id: &str,
    name: &str,
) -> Result<Project, sqlx::Error> {
    let project = Project {
        id: crate::ids::new_id(),
        name: name.to_string(),
        user_id: user_id.to_string(),
        created_at: now_ms(),
    };
    sqlx::query("INSERT INTO projects (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&project.id)
        .bind(&project.user_id)
        .bind(&project.name)
        .bind(project.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(project)
}

/// Creates a key in `project_id`; the returned `ApiKey` carries the secret (shown once).
pub async fn create_key(
    tx: &mut Tx,
    user_id: &str,
    project_id: &str,
    name: &str,
    admin: bool,
    access: Option<KeyAccess>,
) -> Result<ApiKey, sqlx::Error> {
    let secret = new_key_secret();
    let key = ApiKey {
        id: crate::ids::new_id(),
        name: name.to_string(),
        user_id: user_id.to_string(),
        project_id: project_id.to_string(),
        admin,
        access,
        created_at: now_ms(),
        last_seen: 0,
        key: Some(secret.clone()),
    };
    sqlx::query(
        "INSERT INTO api_keys (id, key_hash, user_id, project_id, name, admin, access, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.id)
    .bind(hash_key(&secret))
    .bind(&key.user_id)
    .bind(&key.project_id)
    .bind(&key.name)
    .bind(admin as i64)
    .bind(db::to_opt_json(&key.access))
    .bind(key.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(key)
}
