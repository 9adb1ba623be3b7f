//! Secrets the server makes for itself when the configuration gives none, kept in the database
//! (`server_secrets`) so that every node shares them and a restart keeps them.

use rand::RngCore;
use sqlx::Row;

use crate::clock::now_ms;
use crate::db::Database;

/// The secret called `name`: made (32 random bytes, hex) by the first node that asks, read by
/// every later one. Two nodes asking at once get the same secret.
pub async fn server_secret(db: &Database, name: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    sqlx::query(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(hex::encode(bytes))
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(db.writer())
        .await?;
    Ok(row.try_get("value")?)
}
