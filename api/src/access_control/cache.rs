//! A small bounded cache with per-entry expiry, for the playback gate's decisions.
//!
//! Two generations of at most `capacity / 2` entries each: when the current one fills up it
//! becomes the previous one and the one before is dropped whole. Lookups and inserts stay O(1),
//! memory stays bounded whatever a client sends, and entries in use survive a turnover (a hit in
//! the previous generation is carried into the current one).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

pub struct TtlCache<K, V> {
    generations: Mutex<Generations<K, V>>,
    half: usize,
}

struct Generations<K, V> {
    current: HashMap<K, (Instant, V)>,
    previous: HashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache that holds at most `capacity` entries.
    pub fn new(capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            generations: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
            half: (capacity / 2).max(1),
        }
    }

    /// The value of `key`, unless absent or expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut g = self.lock();
        if let Some((expires, value)) = g.current.get(key) {
            return (*expires > now).then(|| value.clone());
        }
        let (expires, value) = g.previous.remove(key)?;
        if expires <= now {
            return None;
        }
        g.insert(key.clone(), expires, value.clone(), self.half);
        Some(value)
    }

    /// Stores `value` for `key` until `expires`.
    pub fn insert(&self, key: K, value: V, expires: Instant) {
        self.lock().insert(key, expires, value, self.half);
    }

    /// The value of `key`, or `make()` stored until `expires` when absent or expired: one
    /// value per key even when many callers miss at once (store a cell and fill it once).
    pub fn get_or_insert_with(&self, key: &K, expires: Instant, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(key) {
            return value;
        }
        let mut g = self.lock();
        if let Some((at, value)) = g.current.get(key)
            && *at > Instant::now()
        {
            return value.clone();
        }
        let value = make();
        g.insert(key.clone(), expires, value.clone(), self.half);
        value
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        let mut g = self.lock();
        g.current.remove(key);
        g.previous.remove(key);
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<K, V>> {
        // A panic while holding the lock leaves maps that are still valid: keep using them.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Eq + Hash, V> Generations<K, V> {
    fn insert(&mut self, key: K, expires: Instant, value: V, half: usize) {
        if self.current.len() >= half && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, (expires, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = TtlCache::new(10);
        let now = Instant::now();
        cache.insert("live", 1, now + Duration::from_secs(60));
        cache.insert("dead", 2, now);
        assert_eq!(cache.get(&"live"), Some(1));
        assert_eq!(cache.get(&"dead"), None);
        cache.remove(&"live");
        assert_eq!(cache.get(&"live"), None);
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let cache = TtlCache::new(100);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert(u32::MAX, 0, later);
        for i in 0..10_000u32 {
            cache.insert(i, i, later);
            // A hot entry, read all along, survives every turnover.
            assert_eq!(cache.get(&u32::MAX), Some(0));
            assert!(cache.len() <= 100, "{} entries", cache.len());
        }
        assert_eq!(cache.get(&9_999), Some(9_999));
        assert_eq!(cache.get(&0), None);
    }
}
