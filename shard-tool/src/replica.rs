//! How far a streaming replica is behind its primary, in bytes and in
//! seconds, measured now by LSN.
//!
//! Bytes: the primary's `pg_current_wal_lsn()` minus the replica's
//! `pg_last_wal_replay_lsn()`, the primary read first so the figure never
//! overstates. Seconds: not a timestamp difference (an idle primary would
//! make every replica look stale, design §4) and not
//! `pg_stat_replication.replay_lag` (it keeps its last value while replay
//! is stopped, so a paused replica looks fine): the time the replica takes,
//! from the moment the primary was asked, to replay up to where the primary
//! was. 0 when nothing is left to replay; past [`WAIT`], the figure is that
//! bound and says so.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

use region_core::lsn::{self, Lsn};
use region_core::redact;

use crate::regions::connect_read_only;

/// How long status waits for a lagging replica to catch up before it
/// reports "more than this".
pub const WAIT: Duration = Duration::from_secs(2);

/// One replica's lag behind its primary.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// The replica (password redacted).
    pub url: String,
    /// It answered and is in recovery.
    pub up: bool,
    /// `pg_last_wal_replay_lsn()` when first asked.
    pub replay_lsn: Option<Lsn>,
    /// WAL bytes the primary had written and the replica had not replayed.
    pub lag_bytes: Option<u64>,
    /// Seconds the replica took to replay up to the primary's position
    /// (see the module doc); with `lag_seconds_over_bound`, it had not
    /// caught up after this long.
    pub lag_seconds: Option<f64>,
    /// The replica did not catch up within [`WAIT`]: `lag_seconds` is a
    /// lower bound.
    pub lag_seconds_over_bound: bool,
    /// The physical slot it streams from (`pg_stat_wal_receiver`).
    pub slot: Option<String>,
    /// Why it is not up.
    pub error: Option<String>,
}

/// Measures the replica at `url`; `primary` is its primary's session (none
/// when the primary could not be read: then only its position is shown).
/// Never fails: a replica that is down is part of the status.
pub async fn inspect(what: &str, url: &str, primary: Option<&PgPool>) -> ReplicaStatus {
    let mut status = ReplicaStatus {
        url: redact::url(url),
        up: false,
        replay_lsn: None,
        lag_bytes: None,
        lag_seconds: None,
        lag_seconds_over_bound: false,
        slot: None,
        error: None,
    };
    let replica = match connect_read_only(url, what).await {
        Ok(p) => p,
        Err(e) => {
            status.error = Some(e.to_string());
            return status;
        }
    };
    if let Err(e) = measure(&replica, primary, &mut status).await {
        status.up = false;
        status.error = Some(format!("{what}: {e}"));
    }
    replica.close().await;
    status
}

async fn measure(
    replica: &PgPool,
    primary: Option<&PgPool>,
    status: &mut ReplicaStatus,
) -> Result<(), sqlx::Error> {
    let asked = Instant::now();
    let target = match primary {
        Some(p) => lsn::fetch("SELECT pg_current_wal_lsn()::text", p).await?,
        None => None,
    };
    status.slot = sqlx::query_scalar("SELECT slot_name::text FROM pg_stat_wal_receiver LIMIT 1")
        .fetch_optional(replica)
        .await?
        .flatten();
    let Some(replay) = replayed(replica).await? else {
        status.error = Some("not in recovery (promoted?): not a replica".to_string());
        return Ok(());
    };
    status.up = true;
    status.replay_lsn = Some(replay);
    let Some(target) = target else {
        return Ok(());
    };
    let behind = target.0.saturating_sub(replay.0);
    status.lag_bytes = Some(behind);
    if behind == 0 {
        status.lag_seconds = Some(0.0);
        return Ok(());
    }
    loop {
        let now = replayed(replica).await?.unwrap_or_default();
        let elapsed = asked.elapsed();
        if now >= target {
            status.lag_seconds = Some(elapsed.as_secs_f64());
            return Ok(());
        }
        if elapsed >= WAIT {
            status.lag_seconds = Some(elapsed.as_secs_f64());
            status.lag_seconds_over_bound = true;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replayed(replica: &PgPool) -> Result<Option<Lsn>, sqlx::Error> {
    lsn::fetch("SELECT pg_last_wal_replay_lsn()::text", replica).await
}
