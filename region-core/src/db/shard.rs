//! Connection pools of one shard and what the monitor knows of its replicas.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::db::lag::PrimaryHistory;
use crate::db::pool::ReadPool;
use crate::lsn::{self, Lsn};

#[derive(Debug, Clone, Copy)]
pub struct ReadConfig {
    /// Replicas staler than this (measured by LSN) are not read from.
    pub max_staleness: Duration,
    /// How often the monitor samples every node.
    pub poll: Duration,
    /// How long a read waits for a replica connection before moving on.
    pub replica_acquire_timeout: Duration,
    pub max_connections: u32,
    /// `statement_timeout` of every connection to the shard's nodes: no
    /// statement outlives what its caller waits for (the api sets its
    /// request timeout). None: the server's setting.
    pub statement_timeout: Option<Duration>,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            max_staleness: Duration::from_secs(1),
            poll: Duration::from_millis(100),
            replica_acquire_timeout: Duration::from_millis(500),
            max_connections: 16,
            statement_timeout: Some(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    pub up: bool,
    pub replay_lsn: Option<Lsn>,
    /// Upper bound of staleness at the last poll; none if unknown.
    pub staleness: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Replica {
    pub url: String,
    /// For the monitor's polls.
    pub pool: PgPool,
    /// For reads (no ping per query; see `db::pool`).
    pub reads: ReadPool,
    pub status: Arc<Mutex<ReplicaStatus>>,
}

impl Replica {
    pub fn status(&self) -> ReplicaStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn mark_down(&self) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.up = false;
    }

    pub fn note_replay(&self, lsn: Lsn) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.replay_lsn.is_none_or(|old| lsn > old) {
            s.replay_lsn = Some(lsn);
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShardPools {
    pub name: String,
    /// Writes, the monitor, health checks.
    pub primary: PgPool,
    /// Reads that fall back to the primary (no ping per query).
    pub primary_reads: ReadPool,
    pub replicas: Vec<Replica>,
    pub config: ReadConfig,
    history: Arc<Mutex<PrimaryHistory>>,
}

impl ShardPools {
    /// Pools connect lazily: a node that is down at start costs nothing
    /// until it is needed, and the monitor notices when it comes back.
    pub fn new(
        name: &str,
        primary_url: &str,
        replica_urls: &[String],
        config: ReadConfig,
    ) -> Result<Self, sqlx::Error> {
        // No ping before handing out a connection (sqlx's default): it is a
        // round trip per query, doubling the cost of a point read. A broken
        // connection shows as a connection error on the query itself, which
        // `read` already answers (next replica, then the primary; 503).
        let options = |url: &str| -> Result<PgConnectOptions, sqlx::Error> {
            let options: PgConnectOptions = url.parse()?;
            Ok(match config.statement_timeout {
                Some(t) => options.options([("statement_timeout", format!("{}", t.as_millis()))]),
                None => options,
            })
        };
        let primary = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options(primary_url)?);
        let mut replicas = Vec::new();
        for url in replica_urls {
            replicas.push(Replica {
                url: url.clone(),
                pool: PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(config.replica_acquire_timeout)
                    .connect_lazy_with(options(url)?),
                reads: ReadPool::new(
                    options(url)?,
                    config.max_connections,
                    config.replica_acquire_timeout,
                ),
                status: Arc::default(),
            });
        }
        // Enough history to judge staleness well past the bound.
        let keep =
            (config.max_staleness.as_millis() / config.poll.as_millis().max(1)) as usize * 4 + 8;
        Ok(ShardPools {
            name: name.to_string(),
            primary_reads: ReadPool::new(
                options(primary_url)?,
                config.max_connections,
                Duration::from_secs(3),
            ),
            primary,
            replicas,
            config,
            history: Arc::new(Mutex::new(PrimaryHistory::new(keep))),
        })
    }

    /// One round of the monitor: the primary's position, then each replica's
    /// replay position and staleness.
    pub async fn poll(&self) {
        let now = Instant::now();
        match lsn::fetch("SELECT pg_current_wal_lsn()::text", &self.primary).await {
            Ok(Some(l)) => self
                .history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(now, l),
            Ok(None) => {}
            Err(e) => tracing::warn!(shard = %self.name, error = %e, "primary poll failed"),
        }
        for r in &self.replicas {
            let res = lsn::fetch("SELECT pg_last_wal_replay_lsn()::text", &r.pool).await;
            let mut s = r.status.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(Some(l)) => {
                    s.up = true;
                    s.replay_lsn = Some(l);
                    s.staleness = self
                        .history
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .staleness(l, Instant::now());
                }
                // NULL: not in recovery (promoted?); never read from it as a
                // replica.
                Ok(None) => {
                    s.up = false;
                }
                Err(e) => {
                    if s.up {
                        tracing::warn!(shard = %self.name, replica = %r.url, error = %e, "replica down");
                    }
                    s.up = false;
                }
            }
        }
    }

    /// Polls every `config.poll` until dropped: the router's shard-list
    /// follower keeps one of these running per shard it knows.
    pub async fn monitor_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll().await;
        }
    }
}
