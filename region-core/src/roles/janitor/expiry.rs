//! The expiry sweep: live posts past `expires_at` become `Expire` commands.
//!
//! The sweep only reads the shard; the writer does the change. A post renewed
//! between the read and the apply stays live (the fold compares `expires_at`
//! with the command's `as_of`), and a post swept twice before the writer got
//! to it is expired once (the second command finds it expired already).

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;

use crate::db::ShardPools;
use crate::model::{Command, CommandKind, Id};
use crate::roles::janitor::Janitor;

/// Produces an `Expire` command for every live post of `shard` whose
/// lifetime ended by `now`, `batch` at a time; returns how many.
pub async fn sweep_shard(
    j: &Janitor,
    shard: &ShardPools,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut produced = 0;
    // Keyset over (expires_at, city, id), the order of posts_live_expires_keyset:
    // rows stay live until the writer applies, so a plain re-query would
    // find the same rows again.
    let mut after: Option<(DateTime<Utc>, String, i64)> = None;
    loop {
        let (at, city, id) = after
            .clone()
            // Before any post (and within Postgres' timestamptz range,
            // which chrono's MIN_UTC is not).
            .unwrap_or((DateTime::<Utc>::UNIX_EPOCH, String::new(), 0));
        let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT city, id, expires_at FROM posts
             WHERE status = 'live' AND expires_at <= $1
               AND (expires_at, city, id) > ($2, $3, $4)
               AND ($5::text[] IS NULL OR city = ANY($5))
             ORDER BY expires_at, city, id
             LIMIT $6",
        )
        .bind(now)
        .bind(at)
        .bind(&city)
        .bind(id)
        .bind(j.config.cities.as_deref())
        .bind(j.config.batch)
        .fetch_all(&shard.primary)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(produced);
        };
        after = Some((last.2, last.0.clone(), last.1));
        let full = rows.len() as i64 == j.config.batch;

        let mut commands = Vec::with_capacity(rows.len());
        for (city, id, _) in rows {
            let Some(route) = j.owns(&city, &shard.name) else {
                continue;
            };
            commands.push(Command {
                id: j.parts.ids.next().await?,
                city,
                created_at: now,
                epoch: route.epoch,
                request_id: None,
                kind: CommandKind::Expire {
                    post_id: Id(id),
                    as_of: now,
                },
            });
        }
        // Sent together: the idempotent producer keeps each city's commands
        // in order on its partition, and the batch shares broker requests.
        try_join_all(commands.iter().map(|c| async move {
            let payload = serde_json::to_vec(c)?;
            j.parts
                .producer
                .produce(&j.config.commands_topic, &c.city, &payload, &[])
                .await?;
            anyhow::Ok(())
        }))
        .await?;
        produced += commands.len();
        if !full {
            return Ok(produced);
        }
    }
}

/// Most posts the backlog count looks at: the gauge says "at least this
/// many" beyond it, and the query stays cheap however large a backlog is.
const BACKLOG_CAP: i64 = 100_000;

/// Live posts of `shard` (of the janitor's cities) whose expiry is more
/// than two sweep periods before `now`: a sweep has produced their `Expire`
/// commands long since, so any left mean the pipeline is not applying
/// them. An index range scan of `posts_live_expires_keyset`, capped.
pub async fn backlog(j: &Janitor, shard: &ShardPools, now: DateTime<Utc>) -> anyhow::Result<i64> {
    let grace =
        chrono::Duration::from_std(j.config.sweep_period * 2).unwrap_or(chrono::Duration::MAX);
    let before = now
        .checked_sub_signed(grace)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (
             SELECT 1 FROM posts
             WHERE status = 'live' AND expires_at <= $1
               AND ($2::text[] IS NULL OR city = ANY($2))
             LIMIT $3
         ) AS late",
    )
    .bind(before)
    .bind(j.config.cities.as_deref())
    .bind(BACKLOG_CAP)
    .fetch_one(&shard.primary)
    .await?;
    Ok(n)
}
