//! A Redis connection made on first use and shared after: the notifier,
//! the publisher's page invalidation and the region store all start (and
//! serve what needs no Redis) while Redis is down, and connect when first
//! asked. A `ConnectionManager` reconnects by itself after a failure, so
//! only the first connection is made here.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// The Redis at one URL, connected lazily; cheap to clone (clones share
/// the connection).
#[derive(Clone)]
pub struct LazyRedis {
    url: Arc<str>,
    conn: Arc<Mutex<Option<ConnectionManager>>>,
}

impl std::fmt::Debug for LazyRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRedis")
            .field("url", &crate::redact::url(&self.url))
            .finish()
    }
}

impl LazyRedis {
    /// The Redis at `url`; nothing is connected yet.
    pub fn new(url: &str) -> LazyRedis {
        LazyRedis {
            url: url.into(),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection, made now (waiting at most `timeout`) if there is
    /// none yet.
    pub async fn connection(&self, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &*conn {
            return Ok(c.clone());
        }
        let attempt = async {
            let client = redis::Client::open(&*self.url)?;
            ConnectionManager::new(client).await
        };
        let c = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out"))
        })??;
        *conn = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::LazyRedis;

    #[test]
    fn its_debug_shows_the_url_without_the_password() {
        let shown = format!("{:?}", LazyRedis::new("redis://:s3cret@127.0.0.1:6379/"));
        assert_eq!(
            shown,
            r#"LazyRedis { url: "redis://:***@127.0.0.1:6379/" }"#
        );
    }
}
