//! Drops a city's cached listing and search pages from the region's LRU
//! Redis once the publisher wrote its events, so the next read builds them
//! from the shard instead of waiting out their TTL.
//!
//! The keys are the api's (`PageCache::key`): the city in clear, then a
//! hash of the query, so a city's pages are found by prefix with `SCAN`
//! (never `KEYS`, which blocks Redis) and removed with `UNLINK`. Redis here
//! is an optimisation with a short TTL: a failure is counted and logged,
//! and the publisher goes on.

use std::time::Duration;

use crate::cache::pages::PageCache;
use crate::lazy_redis::LazyRedis;

/// Longest one city's invalidation may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;

/// The `SCAN MATCH` pattern of every cached page of `city`: the api's key
/// of any query with its hash replaced by `*`, so the two cannot drift.
pub fn city_pattern(city: &str) -> String {
    let key = PageCache::key(city, "");
    let prefix = key.rsplit_once(':').map_or(key.as_str(), |(p, _)| p);
    // A slug is a DNS label, but escape the glob characters all the same.
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str(":*");
    out
}

/// The region's page cache, seen from the publisher.
pub struct Invalidator {
    redis: LazyRedis,
}

impl Invalidator {
    /// The LRU Redis at `url`, connected on first use.
    pub fn new(url: &str) -> Self {
        Invalidator {
            redis: LazyRedis::new(url),
        }
    }

    /// Removes every cached page of `city`; returns how many keys went.
    pub async fn city(&self, city: &str) -> anyhow::Result<usize> {
        let pattern = city_pattern(city);
        let work = async {
            let mut c = self.redis.connection(TIMEOUT).await?;
            let mut cursor: u64 = 0;
            let mut removed = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    let n: usize = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
                    removed += n;
                }
                if next == 0 {
                    return Ok::<usize, redis::RedisError>(removed);
                }
                cursor = next;
            }
        };
        match tokio::time::timeout(TIMEOUT, work).await {
            Ok(r) => Ok(r?),
            Err(_) => anyhow::bail!("invalidating {city}'s pages took over {TIMEOUT:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_the_apis_keys_of_the_city_only() {
        let pattern = city_pattern("boston");
        assert_eq!(pattern, "cb:page:v1:boston:*");
        let key = PageCache::key("boston", "search=bike|20");
        assert!(key.starts_with(pattern.trim_end_matches('*')));
        assert!(!PageCache::key("boston-2", "x").starts_with(pattern.trim_end_matches('*')));
    }
}
