//! Hot listing and search pages in the region's LRU Redis, for a few
//! seconds.
//!
//! Only reads without a read-your-writes token use it (a client that just
//! wrote must see its write, which a cached page may predate). Redis is an
//! optimisation: when it is down, slow or evicts, pages come from the shard
//! and reads go on. A short TTL bounds staleness until events invalidate
//! pages (the pipeline issue).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// How long after a failed connection attempt the next one is made.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

/// Lookups of the page cache by result, for the api's `/metrics`.
#[derive(Debug, Default)]
pub struct PageCacheCounts {
    /// Pages served from Redis.
    pub hits: AtomicU64,
    /// Pages that had to be read from a shard.
    pub misses: AtomicU64,
    /// Redis errors and timeouts (each served as a miss).
    pub errors: AtomicU64,
}

/// The page cache of one api process.
#[derive(Clone)]
pub struct PageCache {
    url: Arc<str>,
    ttl: Duration,
    /// Longest a page read or write waits for Redis before giving up: a
    /// slow cache must not make reads slower than the shard would be.
    timeout: Duration,
    conn: Arc<Mutex<Connection>>,
    counts: Arc<PageCacheCounts>,
}

enum Connection {
    Up(Box<ConnectionManager>),
    Down { since: Option<Instant> },
}

impl PageCache {
    /// A cache on the Redis at `url`, connected lazily; `ttl` zero turns it
    /// off.
    pub fn new(url: &str, ttl: Duration, timeout: Duration) -> Self {
        PageCache {
            url: url.into(),
            ttl,
            timeout,
            conn: Arc::new(Mutex::new(Connection::Down { since: None })),
            counts: Arc::default(),
        }
    }

    /// Its lookups so far (shared: the api's `/metrics` reads them).
    pub fn counts(&self) -> &Arc<PageCacheCounts> {
        &self.counts
    }

    /// Whether pages are cached at all.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The Redis key of a page: the city in clear (to find a city's pages),
    /// the rest hashed so any query string makes a short, safe key.
    pub fn key(city: &str, query: &str) -> String {
        let digest = Sha256::digest(query.as_bytes());
        format!("cb:page:v1:{city}:{}", hex::encode(&digest[..16]))
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let mut conn = self.conn.lock().await;
        match &*conn {
            Connection::Up(c) => return Some((**c).clone()),
            Connection::Down { since: Some(t) } if t.elapsed() < RECONNECT_AFTER => return None,
            Connection::Down { .. } => {}
        }
        let attempt = async {
            let client = redis::Client::open(&*self.url)?;
            ConnectionManager::new(client).await
        };
        match tokio::time::timeout(Duration::from_secs(1), attempt).await {
            Ok(Ok(c)) => {
                *conn = Connection::Up(Box::new(c.clone()));
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(url = %crate::redact::url(&self.url), error = %e, "page cache unavailable");
                *conn = Connection::Down {
                    since: Some(Instant::now()),
                };
                None
            }
            Err(_) => {
                tracing::warn!(url = %crate::redact::url(&self.url), "page cache connection timed out");
                *conn = Connection::Down {
                    since: Some(Instant::now()),
                };
                None
            }
        }
    }

    /// The cached page, if any. Errors count as misses.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        let Some(mut c) = self.connection().await else {
            self.counts.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match tokio::time::timeout(self.timeout, c.get::<_, Option<Vec<u8>>>(key)).await {
            Ok(Ok(Some(page))) => {
                self.counts.hits.fetch_add(1, Ordering::Relaxed);
                Some(page)
            }
            Ok(Ok(None)) => {
                self.counts.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "page cache read failed");
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores a page for the TTL; failures are logged and forgotten.
    pub async fn put(&self, key: &str, page: &[u8]) {
        if !self.enabled() {
            return;
        }
        let Some(mut c) = self.connection().await else {
            return;
        };
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let set = c.pset_ex::<_, _, ()>(key, page, ttl_ms);
        match tokio::time::timeout(self.timeout, set).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "page cache write failed"),
            Err(_) => tracing::debug!("page cache write timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_name_the_city() {
        let k = PageCache::key("boston", "q=bike'; DROP\n&limit=20");
        assert!(k.starts_with("cb:page:v1:boston:"));
        assert_eq!(k.len(), "cb:page:v1:boston:".len() + 32);
        assert_ne!(k, PageCache::key("boston", "q=car"));
    }
}
