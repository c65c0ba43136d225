//! Pruning what is kept only for a while: the dedup history
//! (`applied_commands`, on each shard) and the revocations (`revoked_sessions`
//! and `revoked_users`, in the region's catalog).
//!
//! A dedup row goes only once no copy of its command can be read again: its
//! command's offset is below the earliest offset the broker still serves in
//! that partition (migration 2019). The topic's retention
//! (`bus::retention`) is what moves that mark, but the janitor asks the
//! broker rather than assuming it, so a replay (a crash, a rebalance, a
//! consumer reset to the earliest offset) can never meet a command whose row
//! is gone. Rows that name no source (written before 2019) stay.
//!
//! A revocation goes once the token it refuses would have expired anyway.
//!
//! Every delete is one bounded batch (`batch` rows, its own statement), and
//! a sweep runs at most `prune_batches` of them per table and partition, so
//! a backlog (the first run after an upgrade) is worked off over several
//! sweeps without long transactions or locks.

use chrono::{DateTime, Utc};

use crate::db::ShardPools;
use crate::roles::common::add;
use crate::roles::janitor::Janitor;

/// What pruning did in one sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub applied_commands: usize,
    pub revoked_sessions: usize,
    pub revoked_users: usize,
    /// Delete batches run.
    pub batches: usize,
    /// Rows of the largest batch: at most the janitor's `batch`.
    pub largest_batch: usize,
}

impl Pruned {
    fn batch(&mut self, rows: usize) {
        self.batches += 1;
        self.largest_batch = self.largest_batch.max(rows);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Pruned) {
        self.applied_commands += other.applied_commands;
        self.revoked_sessions += other.revoked_sessions;
        self.revoked_users += other.revoked_users;
        self.batches += other.batches;
        self.largest_batch = self.largest_batch.max(other.largest_batch);
    }

    /// Counts these on the janitor's metrics.
    pub fn count(&self, j: &Janitor) {
        let m = &j.parts.metrics;
        add(&m.pruned_applied_commands, self.applied_commands);
        add(&m.pruned_revoked_sessions, self.revoked_sessions);
        add(&m.pruned_revoked_users, self.revoked_users);
        add(&m.prune_batches, self.batches);
    }
}

/// Runs `delete` (one bounded batch, returning its rows) until a batch
/// comes back short or `max` batches ran; returns the rows deleted.
async fn in_batches<F, Fut>(
    j: &Janitor,
    report: &mut Pruned,
    mut delete: F,
) -> Result<usize, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    for _ in 0..j.config.prune_batches {
        let rows = usize::try_from(delete().await?).unwrap_or(usize::MAX);
        report.batch(rows);
        total += rows;
        if (rows as i64) < j.config.batch {
            break;
        }
    }
    Ok(total)
}

/// Deletes the dedup rows of `shard` whose command was read from the
/// janitor's commands topic below its partition's earliest readable offset,
/// `earliest` being `(partition, offset)` as the broker answered.
pub async fn applied_commands(
    j: &Janitor,
    shard: &ShardPools,
    earliest: &[(i32, i64)],
) -> Result<Pruned, sqlx::Error> {
    let mut report = Pruned::default();
    for &(partition, low) in earliest {
        // The bounds are repeated on the target row: a writer that moved
        // the row to a later copy meanwhile (apply's
        // `move_replayed_sources`) makes the delete skip it.
        let n = in_batches(j, &mut report, || async move {
            sqlx::query(
                "DELETE FROM applied_commands a
                 USING (SELECT city, command_id FROM applied_commands
                        WHERE source_topic = $1 AND source_partition = $2
                          AND source_offset < $3
                          AND ($4::text[] IS NULL OR city = ANY($4))
                        LIMIT $5) d
                 WHERE a.city = d.city AND a.command_id = d.command_id
                   AND a.source_topic = $1 AND a.source_partition = $2
                   AND a.source_offset < $3",
            )
            .bind(&j.config.commands_topic)
            .bind(partition)
            .bind(low)
            .bind(j.config.cities.as_deref())
            .bind(j.config.batch)
            .execute(&shard.primary)
            .await
            .map(|r| r.rows_affected())
        })
        .await?;
        report.applied_commands += n;
    }
    Ok(report)
}

/// Deletes the catalog's revocations whose token expired before `now`.
pub async fn revocations(j: &Janitor, now: DateTime<Utc>) -> Result<Pruned, sqlx::Error> {
    let mut report = Pruned::default();
    report.revoked_sessions = expired(j, &mut report, "revoked_sessions", "jti", now).await?;
    report.revoked_users = expired(j, &mut report, "revoked_users", "user_id", now).await?;
    Ok(report)
}

/// Deletes the rows of the catalog's `table` (keyed by `key`) whose
/// `expires_at` is before `now`, in bounded batches.
async fn expired(
    j: &Janitor,
    report: &mut Pruned,
    table: &'static str,
    key: &'static str,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    // Table and column are the constants of `revocations` (identifiers
    // cannot be bound). `expires_at < $1` again on the target row: a
    // revocation renewed meanwhile (a later token of the same user) stays.
    let sql = format!(
        "DELETE FROM {table}
         WHERE {key} IN (SELECT {key} FROM {table} WHERE expires_at < $1 LIMIT $2)
           AND expires_at < $1"
    );
    let sql = sql.as_str();
    in_batches(j, report, || async move {
        sqlx::query(sql)
            .bind(now)
            .bind(j.config.batch)
            .execute(&j.parts.catalog)
            .await
            .map(|r| r.rows_affected())
    })
    .await
}
