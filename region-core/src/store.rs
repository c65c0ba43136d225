//! The region's non-evicting Redis (`noeviction`): what must not be lost
//! while it matters, such as the nonces of edge signatures (a nonce evicted
//! early would let a replay through). Unlike the page cache, a failure here
//! is an error the caller must answer (503), never a silent miss.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::lazy_redis::LazyRedis;

/// Longest a connection attempt or a command waits: a request waiting on a
/// dead store should get its 503 quickly.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// The store is unreachable, slow or refused the command.
#[derive(Debug, thiserror::Error)]
#[error("the region store at {url} is unavailable: {reason}")]
pub struct StoreUnavailable {
    url: Arc<str>,
    reason: String,
}

/// A lazily connected handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    url: Arc<str>,
    redis: LazyRedis,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", crate::redact::url(&self.url))
    }
}

impl Store {
    /// A store at `url`; nothing is connected until the first command, so
    /// an api starts (and serves what needs no store) while Redis is down.
    pub fn new(url: &str) -> Store {
        Store {
            url: url.into(),
            redis: LazyRedis::new(url),
        }
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> StoreUnavailable {
        StoreUnavailable {
            url: crate::redact::url(&self.url).into(),
            reason: reason.to_string(),
        }
    }

    /// The connection (see `LazyRedis`).
    async fn connection(&self) -> Result<ConnectionManager, StoreUnavailable> {
        self.redis
            .connection(TIMEOUT)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// `SET key 1 NX EX ttl`: true when the key was new (and is now set
    /// for `ttl`), false when it existed.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreUnavailable> {
        let mut c = self.connection().await?;
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .to_owned();
        let reply: Option<String> = tokio::time::timeout(TIMEOUT, cmd.query_async(&mut c))
            .await
            .map_err(|_| self.unavailable("SET timed out"))?
            .map_err(|e| self.unavailable(e))?;
        Ok(reply.is_some())
    }

    /// Runs `cmd` with the store's timeout; any failure is the store being
    /// unavailable, which the caller answers with a 503.
    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        what: &str,
    ) -> Result<T, StoreUnavailable> {
        let mut c = self.connection().await?;
        tokio::time::timeout(TIMEOUT, cmd.query_async(&mut c))
            .await
            .map_err(|_| self.unavailable(format!("{what} timed out")))?
            .map_err(|e| self.unavailable(e))
    }

    /// `SET key value NX EX ttl`: true when the key was new. Unlike `claim`
    /// the value says something (an idempotency record, a command's owner).
    pub async fn put_new(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreUnavailable> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .to_owned();
        let reply: Option<String> = self.query(&cmd, "SET").await?;
        Ok(reply.is_some())
    }

    /// `SET key value EX ttl`, replacing what is there.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreUnavailable> {
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .to_owned();
        self.query::<()>(&cmd, "SET").await
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreUnavailable> {
        self.query(redis::cmd("GET").arg(key), "GET").await
    }

    /// `DEL key` (a claim given back because its request wrote nothing).
    pub async fn delete(&self, key: &str) -> Result<(), StoreUnavailable> {
        self.query::<()>(redis::cmd("DEL").arg(key), "DEL").await
    }

    /// Runs a Lua script (`EVALSHA`, loading it on the first miss).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreUnavailable> {
        let mut c = self.connection().await?;
        tokio::time::timeout(TIMEOUT, call.invoke_async(&mut c))
            .await
            .map_err(|_| self.unavailable("EVALSHA timed out"))?
            .map_err(|e| self.unavailable(e))
    }

    /// The store's URL, for connections of another kind (a subscription).
    pub fn url(&self) -> &str {
        &self.url
    }
}
