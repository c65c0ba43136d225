//! A connection pool for the read path that costs one round trip per read.
//!
//! sqlx's pool sends a ping (a Sync round trip) every time a connection goes
//! back to it, whatever `test_before_acquire` says: for a point read that is
//! a second message to Postgres for every query, half of the server's work.
//! This pool returns a connection without a ping when the read on it
//! finished (`PooledConn::finished`), and closes it instead when the read
//! was abandoned half-way (its future dropped, e.g. by a client that went
//! away) or failed on the connection, since then the protocol state of the
//! connection is unknown. Nothing else is tested: a connection the server
//! closed while idle fails its next query with a connection error, which
//! `read` already answers (next replica, then the primary).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` connections to one node, made on first use.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPool")
            .field("available", &self.inner.permits.available_permits())
            .finish()
    }
}

impl ReadPool {
    /// A pool of connections made with `options`; nothing connects until
    /// the first `acquire`.
    pub fn new(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> ReadPool {
        ReadPool {
            inner: Arc::new(Inner {
                options: options.disable_statement_logging(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max.max(1) as usize)),
                acquire_timeout,
            }),
        }
    }

    /// Closes every idle connection: after one turned out broken (a server
    /// restart), the others that idled as long are broken too.
    pub fn drop_idle(&self) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// An idle connection, or a new one while fewer than `max` exist;
    /// waits at most the acquire timeout for one to come back
    /// (`PoolTimedOut`: every connection is busy).
    pub async fn acquire(&self) -> Result<PooledConn, sqlx::Error> {
        let permit = tokio::time::timeout(
            self.inner.acquire_timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
        .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let reused = idle.is_some();
        let conn = match idle {
            Some(c) => c,
            // A node that does not answer a connect is unreachable, not
            // busy: an I/O error, so that `read` marks it down.
            None => tokio::time::timeout(self.inner.acquire_timeout, self.inner.options.connect())
                .await
                .map_err(|_| {
                    sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connecting timed out",
                    ))
                })??,
        };
        Ok(PooledConn {
            conn: Some(conn),
            finished: false,
            reused,
            pool: self.inner.clone(),
            _permit: permit,
        })
    }
}

/// A connection lent by a `ReadPool`. It goes back to the pool only if
/// `finished` was called; otherwise it is closed when dropped.
pub struct PooledConn {
    conn: Option<PgConnection>,
    finished: bool,
    reused: bool,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    /// The connection, for running a query.
    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("the connection is only taken on drop"))
    }

    /// Whether the connection served reads before (and so may have been
    /// closed by a server restart while it sat idle).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The read on this connection ran to its end (with a result or a
    /// server-side error such as a recovery conflict, after which the
    /// connection is ready again): it may serve the next read.
    pub fn finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.finished, self.conn.take()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        // Otherwise the connection is dropped here, which closes its socket
        // without a goodbye: its state is unknown, so nothing more is sent.
    }
}
