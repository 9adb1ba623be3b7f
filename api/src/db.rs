//! The metadata database: SQLite on one machine, PostgreSQL when several nodes share state.
//!
//! Both run the same portable SQL through sqlx's `Any` driver: `$N` placeholders, `BIGINT` for
//! integers, booleans and millisecond timestamps, `DOUBLE PRECISION` for reals and `TEXT` for JSON
//! documents. Migrations live in the workspace's `migrations/` folder and are compiled in.

use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};

/// Which engine sits behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connection pools. SQLite allows one writer at a time, so it gets a dedicated single-connection
/// pool for writes (no `SQLITE_BUSY` between our own connections); PostgreSQL uses one pool for both.
#[derive(Clone)]
pub struct Database {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
}

pub type Tx = Transaction<'static, Any>;

/// One migration: its version (the file's numeric prefix), name and SQL.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../../migrations/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "sessions",
        sql: include_str!("../../migrations/0002_sessions.sql"),
    },
    Migration {
        version: 3,
        name: "assets",
        sql: include_str!("../../migrations/0003_assets.sql"),
    },
    Migration {
        version: 4,
        name: "recordings",
        sql: include_str!("../../migrations/0004_recordings.sql"),
    },
    Migration {
        version: 5,
        name: "tasks",
        sql: include_str!("../../migrations/0005_tasks.sql"),
    },
    Migration {
        version: 6,
        name: "recording_tasks",
        sql: include_str!("../../migrations/0006_recording_tasks.sql"),
    },
    Migration {
        version: 7,
        name: "vod",
        sql: include_str!("../../migrations/0007_vod.sql"),
    },
    Migration {
        version: 8,
        name: "tus",
        sql: include_str!("../../migrations/0008_tus.sql"),
    },
    Migration {
        version: 9,
        name: "task_secrets",
        sql: include_str!("../../migrations/0009_task_secrets.sql"),
    },
    Migration {
        version: 10,
        name: "clips",
        sql: include_str!("../../migrations/0010_clips.sql"),
    },
    Migration {
        version: 11,
        name: "viewership",
        sql: include_str!("../../migrations/0011_viewership.sql"),
    },
];

impl Database {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a SQLite file when needed.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Database> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url);
            if let Some(parent) = std::path::Path::new(&path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("creating the database directory {}", parent.display())
                })?;
            }
            let url = format!("sqlite://{path}?mode=rwc");
            let options = |max: u32| {
                AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
            };
            let write = options(1)
                .connect(&url)
                .await
                .with_context(|| format!("opening SQLite database {path}"))?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&write)
                .await?;
            // Readers beyond a couple per core only add thread switching: SQLite reads run on the
            // connection's own thread.
            let cores = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2);
            let read = options(max_connections.clamp(2, 2 * cores))
                .connect(&url)
                .await?;
            Ok(Database {
                read,
                write,
                backend: Backend::Sqlite,
            })
        } else {
            // The pool retries a refused connection until its deadline and then reports only
            // "pool timed out"; one connection of our own first keeps the cause.
            let connected = match first_connection(url).await {
                Ok(()) => {
                    AnyPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect(url)
                        .await
                }
                Err(err) => Err(err),
            };
            let pool = connected.map_err(|err| {
                anyhow::anyhow!(
                    "connecting to PostgreSQL at {}: {}",
                    redact_url(url),
                    scrub_credentials(&err.to_string(), url)
                )
            })?;
            Ok(Database {
                read: pool.clone(),
                write: pool,
                backend: Backend::Postgres,
            })
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for statements that only read.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for statements that write.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.write.begin().await
    }

    /// Applies the migrations not yet applied, each in its own transaction.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.write)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&self.write)
            .await?
            .iter()
            .map(|row| row.get::<i64, _>(0))
            .collect();
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            let mut tx = self.write.begin().await?;
            sqlx::raw_sql(migration.sql)
                .execute(&mut *tx)
                .await
                .with_context(|| {
                    format!(
                        "applying migration {} ({})",
                        migration.version, migration.name
                    )
                })?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::clock::now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.read).await.is_ok()
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// How long start-up waits for a PostgreSQL server that refuses connections: it may be starting
/// at the same time (a compose file, a pod beside its database).
const REFUSED_PATIENCE: Duration = Duration::from_secs(10);

/// Opens and closes one connection to `url`, retrying while the server refuses connections
/// for up to [`REFUSED_PATIENCE`]; any other error is returned at once, as it is.
async fn first_connection(url: &str) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + REFUSED_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(
            REFUSED_PATIENCE,
            <AnyConnection as Connection>::connect(url),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(sqlx::Error::Io(err)))
                if err.kind() == std::io::ErrorKind::ConnectionRefused
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", REFUSED_PATIENCE.as_secs()),
                )));
            }
        }
    }
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`:
/// database URLs appear in messages, their credentials never do.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `message` without the password of `url`, should a driver have repeated it.
fn scrub_credentials(message: &str, url: &str) -> String {
    let redacted = redact_url(url);
    let mut message = message.replace(url, &redacted);
    for secret in passwords_in(url) {
        if secret.len() >= 3 {
            message = message.replace(&secret, "***");
        }
    }
    message
}

/// The passwords `url` carries, as written and percent-decoded.
fn passwords_in(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            found.push(password.to_string());
            found.push(
                percent_encoding::percent_decode_str(password)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
        for (key, value) in parsed.query_pairs() {
            if key.eq_ignore_ascii_case("password") {
                found.push(value.into_owned());
            }
        }
    }
    found
}

fn sqlite_path(url: &str) -> String {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split('?').next().unwrap_or(rest).to_string()
}

/// Reads a `BIGINT` 0/1 column as a boolean.
pub fn get_bool(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Reads a nullable `BIGINT` 0/1 column.
pub fn get_opt_bool(row: &AnyRow, column: &str) -> Result<Option<bool>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v != 0))
}

/// Reads a `TEXT` column holding JSON into `T`; a NULL column reads as `None`.
pub fn get_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(column)? {
        None => Ok(None),
        Some(text) => {
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_string(),
                    source: Box::new(e),
                })
        }
    }
}

/// Serializes a value for a JSON `TEXT` column.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data to JSON cannot fail")
}

/// Serializes an optional value for a nullable JSON `TEXT` column.
pub fn to_opt_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(to_json)
}

/// True when `err` is a violation of a UNIQUE constraint, on either engine.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.kind() == sqlx::error::ErrorKind::UniqueViolation
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_keep_the_rest() {
        for (url, redacted) in [
            (
                "postgres://studio:s3cret@db:5432/studio",
                "postgres://studio:***@db:5432/studio",
            ),
            (
                "postgresql://u:p%40ss@db/x?sslmode=require",
                "postgresql://u:***@db/x?sslmode=require",
            ),
            (
                "postgres://db/x?user=u&password=s3cret",
                "postgres://db/x?user=u&password=***",
            ),
            ("postgres://studio@db/studio", "postgres://studio@db/studio"),
            ("sqlite:///var/lib/studio.db", "sqlite:///var/lib/studio.db"),
            ("mysql://root:hunter2@[bad", "mysql://root:***@[bad"),
        ] {
            assert_eq!(redact_url(url), redacted);
        }
        let url = "postgres://u:p%40ss@db/x";
        assert_eq!(
            scrub_credentials(&format!("failed for {url}: bad password p@ss"), url),
            "failed for postgres://u:***@db/x: bad password ***"
        );
    }
}
