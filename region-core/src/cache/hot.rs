//! A small in-process cache of hot post views and listing pages, in front of
//! the shard (views) and of Redis (pages).
//!
//! Like the Redis page cache, it serves only reads without a read-your-writes
//! token: a client that just wrote must see its write, which a cached copy
//! may predate. Its TTL is short (a second by default) because nothing
//! invalidates it yet (the pipeline's events will): that is the staleness an
//! anonymous reader may see beyond replica lag. Bounded by entry count with
//! two generations: new entries go into the current map; when it holds half
//! the bound it becomes the previous one (whose entries are dropped), and a
//! hit in the previous map moves the entry back. Recently used entries
//! survive, the memory never exceeds the bound, and every operation is O(1)
//! under one short lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hits and misses of one cache, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheCounts {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// A bounded TTL cache shared by the handlers of one process.
#[derive(Debug)]
pub struct LocalCache<K, V> {
    ttl: Duration,
    /// Entries per generation (half the bound).
    generation: usize,
    maps: Mutex<Generations<K, V>>,
    /// Lookups by result (shared: the api's `/metrics` reads them).
    pub counts: Arc<CacheCounts>,
}

#[derive(Debug)]
struct Generations<K, V> {
    current: HashMap<K, (Instant, V)>,
    previous: HashMap<K, (Instant, V)>,
}

impl<K: Hash + Eq, V: Clone> LocalCache<K, V> {
    /// A cache of at most `entries` entries kept for `ttl`; a zero TTL or
    /// size turns it off.
    pub fn new(ttl: Duration, entries: usize) -> Self {
        LocalCache {
            ttl: if entries == 0 { Duration::ZERO } else { ttl },
            generation: entries.div_ceil(2).max(1),
            maps: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
            counts: Arc::default(),
        }
    }

    /// Whether anything is cached at all.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The cached value, if it is younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let now = Instant::now();
        let found = {
            let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
            match maps.current.get(key) {
                Some((at, v)) => (now.duration_since(*at) < self.ttl).then(|| v.clone()),
                None => match maps.previous.remove_entry(key) {
                    Some((k, (at, v))) if now.duration_since(at) < self.ttl => {
                        let hit = v.clone();
                        maps.insert(k, at, v, self.generation);
                        Some(hit)
                    }
                    _ => None,
                },
            }
        };
        let counter = if found.is_some() {
            &self.counts.hits
        } else {
            &self.counts.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `value` for the TTL.
    pub fn put(&self, key: K, value: V) {
        if !self.enabled() {
            return;
        }
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        maps.insert(key, Instant::now(), value, self.generation);
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn insert(&mut self, key: K, at: Instant, value: V, generation: usize) {
        if self.current.len() >= generation && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, (at, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_bound_and_keeps_what_is_used() {
        let c = LocalCache::new(Duration::from_secs(60), 4);
        c.put(1, "a");
        c.put(2, "b");
        // Full generation: 1 and 2 move to the previous one.
        c.put(3, "c");
        assert_eq!(c.get(&1), Some("a"), "moved back to the current generation");
        // 3 and 1 are current; this rotates them, and drops 2.
        c.put(4, "d");
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some("a"));
        assert_eq!(c.get(&3), Some("c"));
        let maps = c.maps.lock().unwrap();
        assert!(maps.current.len() + maps.previous.len() <= 4);
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_caches_nothing() {
        let c = LocalCache::new(Duration::from_millis(1), 10);
        c.put("k", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get(&"k"), None);
        let off = LocalCache::new(Duration::ZERO, 10);
        off.put("k", 1);
        assert_eq!(off.get(&"k"), None);
        assert_eq!(
            off.counts.misses.load(Ordering::Relaxed),
            0,
            "off: not counted"
        );
        assert_eq!(c.counts.misses.load(Ordering::Relaxed), 1);
    }
}
