//! `cityboard failover REGION SHARD`: the local rehearsal of a shard
//! primary failing over (in production CloudNativePG does this).
//!
//! The order is what makes it safe: the old primary is fenced first (held
//! stopped by the arrangement, so the supervisor never restarts it as a
//! primary), and its fast shutdown sends every WAL record it wrote to the
//! connected replicas before it exits, so a write it acknowledged is on
//! the replica promoted next. Then the replica is promoted, the catalog's
//! `shards` row names it at once (the roles make new pools on the
//! catalog's notification, without a restart, and the shard takes writes
//! again), the other replicas follow it, and the old primary comes back as
//! a replica of the new one from a fresh pg_basebackup. The arrangement file records who is primary, so `down`
//! and `up` keep it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use sqlx::PgConnection;

use super::UsageError;
use super::shard_ops::{ShardTarget, Steps};
use crate::arrangement::slot_name;
use crate::home::Home;
use crate::postgres::connect;

/// How long the promoted replica may take to replay what it received.
const CATCH_UP: Duration = Duration::from_secs(60);
/// How long a rebuilt member may take to copy the primary and start.
const REBUILD: Duration = Duration::from_secs(300);

/// Runs the failover of `region`'s `shard` on the stack in `home`.
pub async fn run(home: &Home, region: &str, shard: &str, json: bool) -> Result<()> {
    let mut t = ShardTarget::resolve(home, region, shard)?;
    if t.replicas == 0 {
        return Err(UsageError(format!(
            "{}/{} has no replica to promote (its topology gives it `replicas = 0`)",
            t.region, t.shard
        ))
        .into());
    }
    let secrets = home.secrets_dir();
    let old = t.primary();
    let others: Vec<usize> = t
        .members()
        .filter(|&m| m != old && !t.arrangement.is_held(&t.name(m)))
        .collect();
    // The most caught-up healthy replica: the highest replay LSN.
    let mut best: Option<(usize, u64, String)> = None;
    let mut unhealthy = Vec::new();
    for &m in &others {
        match replay_position(t.port(m), &secrets).await {
            Ok((lsn, text)) if best.as_ref().is_none_or(|(_, b, _)| lsn > *b) => {
                best = Some((m, lsn, text));
            }
            Ok(_) => {}
            Err(e) => unhealthy.push(format!("{}: {e:#}", t.name(m))),
        }
    }
    let Some((new, _, lsn)) = best else {
        bail!(
            "no healthy replica of {}/{} to promote: {}",
            t.region,
            t.shard,
            unhealthy.join("; ")
        );
    };
    let followers: Vec<usize> = others.iter().copied().filter(|&m| m != new).collect();
    let mut steps = Steps::new(json);
    print_plan(&steps, &t, old, new, &lsn, &followers);

    // 1. Fence: held stopped, so nothing restarts it as a primary.
    t.arrangement.hold(&t.name(old), true);
    t.apply().await.context("fencing the old primary")?;
    steps.done(
        "fence",
        &format!("fenced {} (stopped, held by the arrangement)", t.name(old)),
        json!({ "member": t.name(old) }),
    );

    // 2. Promote, once it replayed everything the old primary sent.
    let mut promoted = connect(t.port(new), "postgres", &secrets).await?;
    let replayed = caught_up(&mut promoted).await?;
    let done: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
        .fetch_one(&mut promoted)
        .await
        .with_context(|| format!("promoting {}", t.name(new)))?;
    if !done {
        bail!(
            "{} did not finish its promotion within 60 s; see {}",
            t.name(new),
            home.log_file(&t.name(new)).display()
        );
    }
    steps.done(
        "promote",
        &format!(
            "promoted {} (port {}) at {replayed}",
            t.name(new),
            t.port(new)
        ),
        json!({ "member": t.name(new), "port": t.port(new), "lsn": replayed }),
    );

    // 3. The supervisor and the state file, then the catalog: the roles
    // follow the row. First after the promotion, as the writes to the
    // shard's cities wait until the roles have the new primary.
    t.arrangement.set_primary(&t.region, &t.shard, new);
    t.apply().await.context("recording the new primary")?;
    let url = t.register().await?;
    steps.done(
        "catalog",
        &format!(
            "catalog: {}/{} primary is {url}; the roles follow without a restart",
            t.region, t.shard
        ),
        json!({ "primary_url": url }),
    );

    // 4. The other replicas stream from the new primary, each through a
    // slot of its own there (slots are not replicated); one that cannot
    // is copied afresh instead.
    for &m in &followers {
        match repoint(&t, m, old, new, &mut promoted).await {
            Ok(()) => steps.done(
                "repoint",
                &format!("{} now streams from {}", t.name(m), t.name(new)),
                json!({ "member": t.name(m), "primary": t.name(new) }),
            ),
            Err(e) => {
                rebuild(&mut t, m).await?;
                steps.done(
                    "repoint",
                    &format!(
                        "{} could not follow ({e:#}); copied afresh from {}",
                        t.name(m),
                        t.name(new)
                    ),
                    json!({ "member": t.name(m), "primary": t.name(new),
                            "rebuilt": true, "why": format!("{e:#}") }),
                );
            }
        }
    }

    // 5. The old primary, rebuilt as a replica of the new one: a fresh
    // base backup (its own history may hold WAL the new primary never saw).
    rebuild(&mut t, old).await?;
    steps.done(
        "rebuild",
        &format!(
            "{} is a streaming replica of {} (slot {})",
            t.name(old),
            t.name(new),
            slot_name(old)
        ),
        json!({ "member": t.name(old), "primary": t.name(new), "slot": slot_name(old) }),
    );
    steps.done(
        "done",
        &format!(
            "failover of {}/{} done: primary {} (port {})",
            t.region,
            t.shard,
            t.name(new),
            t.port(new)
        ),
        json!({ "primary": t.name(new), "port": t.port(new) }),
    );
    Ok(())
}

fn print_plan(
    steps: &Steps,
    t: &ShardTarget,
    old: usize,
    new: usize,
    lsn: &str,
    followers: &[usize],
) {
    let names: Vec<String> = followers.iter().map(|&m| t.name(m)).collect();
    steps.plan(
        &format!(
            "plan for failing over {}/{}\n  \
             1. fence the primary {} (port {}): stopped, held so nothing restarts it\n  \
             2. promote {} (port {}), the most caught-up replica (replayed {lsn})\n  \
             3. the catalog's shards row names it; the roles follow without a restart\n  \
             4. point the other replicas at it: {}\n  \
             5. rebuild {} as its replica (fresh pg_basebackup)",
            t.region,
            t.shard,
            t.name(old),
            t.port(old),
            t.name(new),
            t.port(new),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            t.name(old),
        ),
        json!({
            "region": t.region, "shard": t.shard,
            "old_primary": t.name(old), "promote": t.name(new),
            "replay_lsn": lsn, "repoint": names,
            "old_primary_becomes": "replica (fresh pg_basebackup)",
        }),
    );
}

/// A replica's replay position: as a number to compare, and as text. An
/// instance that is not in recovery is no replica to promote.
async fn replay_position(port: u16, secrets: &std::path::Path) -> Result<(u64, String)> {
    let mut conn = connect(port, "postgres", secrets).await?;
    let (in_recovery, lsn, text): (bool, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT pg_is_in_recovery(),
                (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint,
                pg_last_wal_replay_lsn()::text",
    )
    .fetch_one(&mut conn)
    .await?;
    if !in_recovery {
        bail!("not in recovery (is it a primary?)");
    }
    match (lsn, text) {
        (Some(lsn), Some(text)) => Ok((u64::try_from(lsn).unwrap_or(0), text)),
        _ => bail!("has replayed nothing yet"),
    }
}

/// Waits until the replica replayed all the WAL it received; its replay LSN.
async fn caught_up(conn: &mut PgConnection) -> Result<String> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let (done, replayed): (Option<bool>, Option<String>) = sqlx::query_as(
            "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(),
                    pg_last_wal_replay_lsn()::text",
        )
        .fetch_one(&mut *conn)
        .await?;
        // No receive LSN: it never streamed (restored from the archive or
        // just started); what it replayed is all it has.
        if done.unwrap_or(true) {
            return Ok(replayed.unwrap_or_default());
        }
        if Instant::now() > deadline {
            bail!("the replica did not replay what it received within {CATCH_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes `member` a fresh replica of the shard's primary: held stopped,
/// its data removed, released (the supervisor's start makes it with
/// pg_basebackup and a slot), healthy; the catalog then lists it.
async fn rebuild(t: &mut ShardTarget, member: usize) -> Result<()> {
    if !t.arrangement.is_held(&t.name(member)) {
        t.arrangement.hold(&t.name(member), true);
        t.apply().await?;
    }
    let data = t.data(member);
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("removing {}'s data {}", t.name(member), data.display()))?;
    }
    t.arrangement.hold(&t.name(member), false);
    t.apply().await?;
    t.wait_healthy(member, REBUILD).await?;
    t.register().await?;
    Ok(())
}

/// Makes replica `member` stream from `primary`: a slot for it there, and
/// its primary_conninfo's port changed (a reload applies it, Postgres 13+:
/// no restart). recovery_target_timeline is `latest` (the default), so it
/// follows the new primary's timeline.
async fn repoint(
    t: &ShardTarget,
    member: usize,
    old: usize,
    primary: usize,
    primary_conn: &mut PgConnection,
) -> Result<()> {
    let slot = slot_name(member);
    sqlx::query(
        "SELECT pg_create_physical_replication_slot($1, true)
          WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(&slot)
    .execute(&mut *primary_conn)
    .await
    .with_context(|| format!("creating slot {slot} on {}", t.name(primary)))?;
    let secrets = t.home.secrets_dir();
    let mut replica = connect(t.port(member), "postgres", &secrets).await?;
    let conninfo: String = sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
        .fetch_one(&mut replica)
        .await?;
    let old_port = format!("port={}", t.port(old));
    if !conninfo.contains(&old_port) {
        bail!("its primary_conninfo does not name {old_port}");
    }
    let conninfo = conninfo.replace(&old_port, &format!("port={}", t.port(primary)));
    // ALTER SYSTEM takes no bound parameter: the value is quoted as a literal.
    sqlx::query(&format!(
        "ALTER SYSTEM SET primary_conninfo = '{}'",
        conninfo.replace('\'', "''")
    ))
    .execute(&mut replica)
    .await?;
    sqlx::query(&format!("ALTER SYSTEM SET primary_slot_name = '{slot}'"))
        .execute(&mut replica)
        .await?;
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut replica)
        .await?;
    // Streaming again: its slot on the new primary is in use.
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let active: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&slot)
        .fetch_one(&mut *primary_conn)
        .await?;
        if active {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} does not stream from {} after {CATCH_UP:?}; see {}",
                t.name(member),
                t.name(primary),
                t.home.log_file(&t.name(member)).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
