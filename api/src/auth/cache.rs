//! A cache of API keys, so that authenticating a request is not a database query.
//!
//! Revocation stays immediate: revoking a key or deleting a project clears this node's cache
//! before the response is sent, and on PostgreSQL also sends a `NOTIFY` that makes every other
//! node clear its own. A node whose `LISTEN` connection is down does not cache at all until it
//! is back. A generation counter keeps a lookup that raced an invalidation from storing what it
//! read before it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{KeyAccess, Principal};
use crate::db::{Backend, Database};

/// The PostgreSQL channel revocations are announced on.
pub const CHANNEL: &str = "studio_api_keys";
/// Entries older than this are read again (a safety net, not the revocation mechanism).
const TTL: Duration = Duration::from_secs(60);
/// Past this many entries the cache starts over (unknown keys are never cached).
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    principal: Principal,
    access: KeyAccess,
    fetched: Instant,
}

pub struct KeyCache {
    entries: RwLock<HashMap<String, Entry>>,
    generation: AtomicU64,
    enabled: AtomicBool,
}

impl KeyCache {
    /// On SQLite (one node) the cache is on from the start; on PostgreSQL once the listener runs.
    pub fn new(backend: Backend) -> KeyCache {
        KeyCache {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(backend == Backend::Sqlite),
        }
    }

    /// The current generation, to pass to [`KeyCache::put`] after a database read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, key_hash: &str) -> Option<(Principal, KeyAccess)> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self
            .entries
            .read()
            .expect("the key cache lock is never poisoned");
        let entry = entries.get(key_hash)?;
        (entry.fetched.elapsed() < TTL).then(|| (entry.principal.clone(), entry.access.clone()))
    }

    /// Stores what a lookup read, unless an invalidation happened since `generation`.
    pub fn put(&self, key_hash: String, principal: Principal, access: KeyAccess, generation: u64) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self
            .entries
            .write()
            .expect("the key cache lock is never poisoned");
        // Checked under the write lock: an invalidation bumps the generation under it too.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key_hash,
            Entry {
                principal,
                access,
                fetched: Instant::now(),
            },
        );
    }

    /// Records a use of the key in the cached copy, so `lastSeen` is written once a minute.
    pub fn touch(&self, key_hash: &str, at: i64) {
        if let Some(entry) = self
            .entries
            .write()
            .expect("the key cache lock is never poisoned")
            .get_mut(key_hash)
        {
            entry.principal.key_last_seen = at;
        }
    }

    /// Forgets every key.
    pub fn invalidate_all(&self) {
        let mut entries = self
            .entries
            .write()
            .expect("the key cache lock is never poisoned");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn set_enabled(&self, enabled: bool) {
        self.invalidate_all();
        self.enabled.store(enabled, Ordering::Release);
    }
}

/// Tells every node that keys were revoked: this one at once, the others through PostgreSQL.
pub async fn announce_revocation(cache: &KeyCache, db: &Database) {
    cache.invalidate_all();
    if db.backend() == Backend::Postgres
        && let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(db.writer())
            .await
    {
        // Other nodes clear their caches when their listeners reconnect; until then theirs
        // may serve the key for at most the TTL.
        tracing::error!(error = %err, "announcing an API key revocation failed");
    }
}

/// On PostgreSQL: listens for revocations from other nodes until `shutdown`, caching only while
/// the listener is connected.
pub async fn listen(
    cache: std::sync::Arc<KeyCache>,
    database_url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect(&database_url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match connected {
            Ok(mut listener) => {
                cache.set_enabled(true);
                loop {
                    tokio::select! {
                        received = listener.try_recv() => match received {
                            Ok(Some(_)) => cache.invalidate_all(),
                            // The connection dropped: notifications may have been missed.
                            Ok(None) | Err(_) => break,
                        },
                        _ = shutdown.changed() => return,
                    }
                }
                cache.set_enabled(false);
                tracing::warn!(
                    "the API key revocation listener disconnected; caching is off until it reconnects"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "connecting the API key revocation listener failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            user_id: "u".into(),
            project_id: "p".into(),
            key_id: "k".into(),
            key_name: "n".into(),
            admin: false,
            key_last_seen: 0,
        }
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_stored() {
        let cache = KeyCache::new(Backend::Sqlite);
        let before = cache.generation();
        cache.invalidate_all();
        cache.put("h".into(), principal(), KeyAccess::default(), before);
        assert!(cache.get("h").is_none());
        cache.put(
            "h".into(),
            principal(),
            KeyAccess::default(),
            cache.generation(),
        );
        assert!(cache.get("h").is_some());
        cache.invalidate_all();
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn postgres_caches_nothing_until_its_listener_runs() {
        let cache = KeyCache::new(Backend::Postgres);
        cache.put(
            "h".into(),
            principal(),
            KeyAccess::default(),
            cache.generation(),
        );
        assert!(cache.get("h").is_none());
        cache.set_enabled(true);
        cache.put(
            "h".into(),
            principal(),
            KeyAccess::default(),
            cache.generation(),
        );
        assert!(cache.get("h").is_some());
        cache.set_enabled(false);
        assert!(cache.get("h").is_none());
    }
}
