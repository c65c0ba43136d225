//! Reads: a replica when one is fresh enough, the primary otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::PgConnection;

use crate::catalog::CityRoute;
use crate::db::shard::ShardPools;
use crate::lsn::{self, Lsn};
use crate::token::Consistency;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A read that can run on any node of a shard, and run again elsewhere.
pub trait ReadQuery: Sync {
    type Output: Send;
    fn run<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>>;
}

/// Which node answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Primary,
    Replica(String),
}

#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub node: Node,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The primary cannot be reached: this city's shard is down (503 for its
    /// cities only).
    #[error("shard {shard} is unavailable")]
    Unavailable {
        shard: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("shard {shard}: {source}")]
    Db {
        shard: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A query cancelled on a standby because WAL replay needed what it was
/// reading (SQLSTATE 40001; 40P01 for buffer-pin deadlocks): the same query
/// succeeds on the primary.
pub fn is_recovery_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => matches!(d.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// The node is unreachable or the connection broke.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(d) if d.code().as_deref().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// Runs `query` for a city on `shard` with the freshness `consistency` asks.
///
/// Replicas first (round robin among those up and within the staleness
/// bound); one behind a read-your-writes token is skipped; a replica that
/// fails to connect is marked down and skipped; a recovery conflict goes to
/// the primary.
/// The primary is the last resort, and the only node for a pending write or
/// a token from another shard or epoch (its LSN means nothing here).
pub async fn read<Q: ReadQuery>(
    shard: &ShardPools,
    route: &CityRoute,
    consistency: &Consistency,
    query: &Q,
) -> Result<Served<Q::Output>, ReadError> {
    let need: Option<Lsn> = match consistency {
        Consistency::Any => None,
        Consistency::Pending { .. } => return on_primary(shard, query).await,
        Consistency::AtLeast(t) if t.shard != shard.name || t.epoch != route.epoch => {
            return on_primary(shard, query).await;
        }
        Consistency::AtLeast(t) => Some(t.lsn),
    };
    let n = shard.replicas.len();
    let start = ROUND_ROBIN.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        let replica = &shard.replicas[(start + i) % n];
        let status = replica.status();
        if !status.up
            || status
                .staleness
                .is_none_or(|s| s > shard.config.max_staleness)
        {
            continue;
        }
        let mut conn = match replica.reads.acquire().await {
            Ok(c) => c,
            // Every connection busy past the timeout: the replica is loaded,
            // not down, so it stays in the rotation for the next read.
            Err(sqlx::Error::PoolTimedOut) => {
                tracing::warn!(replica = %replica.url, "replica's read connections all busy; skipped");
                continue;
            }
            Err(e) => {
                tracing::warn!(replica = %replica.url, error = %e, "replica unreachable; skipped");
                replica.mark_down();
                continue;
            }
        };
        if let Some(need) = need
            && status.replay_lsn.is_none_or(|l| l < need)
        {
            // The monitor's figure is old; ask the replica itself. Replay
            // only moves forward, so once it has the LSN, the read that
            // follows on this connection sees the write.
            match lsn::fetch("SELECT pg_last_wal_replay_lsn()::text", conn.conn()).await {
                Ok(Some(l)) if l >= need => replica.note_replay(l),
                Ok(_) => {
                    conn.finished();
                    continue;
                }
                Err(e) => {
                    if is_connection_error(&e) {
                        replica.mark_down();
                    }
                    continue;
                }
            }
        }
        let result = query.run(conn.conn()).await;
        if result.as_ref().is_ok() || result.as_ref().is_err_and(|e| !is_connection_error(e)) {
            conn.finished();
        }
        match result {
            Ok(value) => {
                return Ok(Served {
                    value,
                    node: Node::Replica(replica.url.clone()),
                });
            }
            // Straight to the primary (design §4): the other replicas replay
            // the same WAL and would likely cancel the query the same way.
            Err(e) if is_recovery_conflict(&e) => {
                tracing::info!(replica = %replica.url, "recovery conflict; retrying on the primary");
                break;
            }
            Err(e) if is_connection_error(&e) => {
                replica.mark_down();
                replica.reads.drop_idle();
            }
            Err(source) => {
                return Err(ReadError::Db {
                    shard: shard.name.clone(),
                    source,
                });
            }
        }
    }
    on_primary(shard, query).await
}

async fn on_primary<Q: ReadQuery>(
    shard: &ShardPools,
    query: &Q,
) -> Result<Served<Q::Output>, ReadError> {
    let fail = |source: sqlx::Error| {
        if is_connection_error(&source) {
            ReadError::Unavailable {
                shard: shard.name.clone(),
                source,
            }
        } else {
            ReadError::Db {
                shard: shard.name.clone(),
                source,
            }
        }
    };
    // The primary is the last resort: a connection that broke while idle
    // (the primary restarted since) gets one retry on a new connection
    // before the read fails, rather than a 503 per stale connection.
    let mut retried = false;
    let value = loop {
        let mut conn = shard.primary_reads.acquire().await.map_err(fail)?;
        let result = query.run(conn.conn()).await;
        match result {
            Err(e) if is_connection_error(&e) && conn.reused() && !retried => {
                shard.primary_reads.drop_idle();
                retried = true;
            }
            Err(e) if is_connection_error(&e) => return Err(fail(e)),
            other => {
                conn.finished();
                break other.map_err(fail)?;
            }
        }
    };
    Ok(Served {
        value,
        node: Node::Primary,
    })
}
