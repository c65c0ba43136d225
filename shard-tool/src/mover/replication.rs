//! Logical replication's objects for one job, each made and dropped
//! idempotently (every step may be run again by `resume`): the
//! publication on the shard that sends, the slot there, the subscription
//! on the shard that receives.
//!
//! shard-tool makes the slot itself, before the subscription (which then
//! uses it with `create_slot = false`): creating a logical slot waits for
//! every transaction running on the primary to end, and a bare CREATE
//! SUBSCRIPTION would wait without a bound or a word. Here the wait is
//! bounded and, past it, names the backends it waited for.

use std::time::Duration;

use sqlx::{Connection, PgPool};

use crate::error::{Error, Result};
use crate::tables::CityKeyedTable;

use super::Shard;
use super::names;

/// Makes `cb_<job>` on `sender` for the city's rows of `tables`, unless it
/// exists. `publish` leaves TRUNCATE out: a row filter does not apply to
/// it, and a TRUNCATE of a moved table would empty every city's rows on
/// the other shard.
pub async fn ensure_publication(
    sender: &Shard,
    job: i64,
    city: &str,
    tables: &[CityKeyedTable],
) -> Result<()> {
    let name = names::publication(job);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(&name)
            .fetch_one(&sender.pool)
            .await
            .map_err(|e| Error::db(&sender.what, e))?;
    if exists {
        return Ok(());
    }
    let city = names::literal(city)
        .ok_or_else(|| Error::Refused("the city's name holds a NUL byte".into()))?;
    let list: Vec<String> = tables
        .iter()
        .map(|t| format!("{} WHERE (city = {city})", t.sql_name))
        .collect();
    let sql = format!(
        "CREATE PUBLICATION {name} FOR TABLE {} WITH (publish = 'insert, update, delete')",
        list.join(", ")
    );
    sqlx::raw_sql(&sql)
        .execute(&sender.pool)
        .await
        .map_err(|e| Error::db(&sender.what, e))?;
    Ok(())
}

/// The tables publication `cb_<job>` lists on `sender`.
pub async fn published_tables(sender: &PgPool, job: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
    )
    .bind(names::publication(job))
    .fetch_all(sender)
    .await
}

/// Drops publication `cb_<job>` on `shard`, if there.
pub async fn drop_publication(shard: &Shard, job: i64) -> Result<()> {
    let sql = format!("DROP PUBLICATION IF EXISTS {}", names::publication(job));
    sqlx::raw_sql(&sql)
        .execute(&shard.pool)
        .await
        .map_err(|e| Error::db(&shard.what, e))?;
    Ok(())
}

/// Makes logical slot `slot` on `sender`, unless it exists, waiting at
/// most `wait` for the transactions running there to end. Past it, the
/// error names them (pid, application, state, since when, query).
pub async fn ensure_slot(sender: &Shard, slot: &str, wait: Duration) -> Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .fetch_one(&sender.pool)
    .await
    .map_err(|e| Error::db(&sender.what, e))?;
    if exists {
        return Ok(());
    }
    let options = super::options(&sender.url, &sender.what)?;
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| Error::db(&sender.what, e))?;
    let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Error::db(&sender.what, e))?;
    let timeout = format!("SET statement_timeout = {}", wait.as_millis().max(1));
    sqlx::raw_sql(&timeout)
        .execute(&mut conn)
        .await
        .map_err(|e| Error::db(&sender.what, e))?;
    let made = sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(slot)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match made {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014") => {
            let blockers = blockers(&sender.pool, started).await.unwrap_or_default();
            Err(Error::db(
                &sender.what,
                anyhow::anyhow!(
                    "creating replication slot {slot} waited {}s for transactions that were \
                     running to end{}; end them or try again later",
                    wait.as_secs_f64(),
                    if blockers.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", blockers.join("; "))
                    }
                ),
            ))
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("53400") => {
            Err(Error::Refused(format!(
                "{}: no free replication slot ({}); drop unused slots (`shard-tool doctor`) or \
                 raise max_replication_slots",
                sender.what,
                db.message()
            )))
        }
        Err(e) => Err(Error::db(&sender.what, e)),
    }
}

/// Backends whose transaction began before `since`: what a slot's
/// creation waits for.
async fn blockers(
    pool: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    type Backend = (
        i32,
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        String,
    );
    let rows: Vec<Backend> = sqlx::query_as(
        "SELECT pid, application_name, state, xact_start, left(query, 80)
               FROM pg_stat_activity
              WHERE xact_start < $1 AND pid <> pg_backend_pid()
                AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
                AND query NOT ILIKE '%pg_create_logical_replication_slot%'
              ORDER BY xact_start",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(pid, app, state, start, query)| {
            format!(
                "pid {pid} ({}, {}, transaction since {}): {query}",
                if app.is_empty() {
                    "no application name"
                } else {
                    &app
                },
                state.unwrap_or_else(|| "?".into()),
                start.map_or("?".to_string(), |t| t.to_rfc3339()),
            )
        })
        .collect())
}

/// Drops slot `slot` on `shard`, if there. A walsender may still hold it
/// for a moment after its subscription was disabled: waits up to 10 s for
/// it to let go, then ends that walsender.
pub async fn drop_slot(shard: &Shard, slot: &str) -> Result<()> {
    let db = |e| Error::db(&shard.what, e);
    for attempt in 0..200 {
        let row: Option<(bool, Option<i32>)> = sqlx::query_as(
            "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .fetch_optional(&shard.pool)
        .await
        .map_err(db)?;
        match row {
            None => return Ok(()),
            Some((false, _)) => {
                let dropped = sqlx::query("SELECT pg_drop_replication_slot($1)")
                    .bind(slot)
                    .execute(&shard.pool)
                    .await;
                match dropped {
                    Ok(_) => return Ok(()),
                    // Taken again in between, or dropped by someone else:
                    // look again.
                    Err(sqlx::Error::Database(e))
                        if matches!(e.code().as_deref(), Some("55006") | Some("42704")) => {}
                    Err(e) => return Err(db(e)),
                }
            }
            Some((true, pid)) if attempt >= 100 => {
                if let Some(pid) = pid {
                    sqlx::query("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .execute(&shard.pool)
                        .await
                        .map_err(db)?;
                }
            }
            Some((true, _)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::db(
        &shard.what,
        anyhow::anyhow!("replication slot {slot} stayed in use for 10 s; it was not dropped"),
    ))
}

/// The slots of `shard` left by the tablesync workers of subscription
/// `suboid` (`pg_<suboid>_sync_<relid>_<system id>`). Postgres drops them
/// when a table's copy ends; a subscription dropped mid-copy (or with its
/// slot detached) leaves them behind.
pub async fn tablesync_slots(shard: &Shard, suboid: i64) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1 ORDER BY 1",
    )
    .bind(format!("pg\\_{suboid}\\_sync\\_%"))
    .fetch_all(&shard.pool)
    .await
    .map_err(|e| Error::db(&shard.what, e))
}

/// A subscription as `pg_subscription` has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscription {
    /// `oid` (tablesync slots carry it).
    pub oid: i64,
    /// Enabled.
    pub enabled: bool,
}

/// Subscription `cb_<job>` on `receiver`, if there.
pub async fn subscription(receiver: &Shard, job: i64) -> Result<Option<Subscription>> {
    sqlx::query_as(
        "SELECT oid::int8 AS oid, subenabled AS enabled
           FROM pg_subscription
          WHERE subname = $1
            AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(names::subscription(job))
    .fetch_optional(&receiver.pool)
    .await
    .map_err(|e| Error::db(&receiver.what, e))
}

/// How a subscription starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Enabled, copying every row first (the move's first direction).
    Copy,
    /// Disabled, with no copy: the reverse direction, enabled after the
    /// switch once its slot has been advanced past the copied changes.
    Disabled,
}

/// Makes subscription `cb_<job>` on `receiver`, pulling from `sender`'s
/// publication through slot `slot` (already made), connecting as `role`;
/// returns it. `streaming = on` sends a big transaction while it runs
/// rather than after; `disable_on_error` stops at the first error instead
/// of retrying it in a loop (`status` and `resume` report it).
pub async fn ensure_subscription(
    receiver: &Shard,
    sender: &Shard,
    job: i64,
    slot: &str,
    role: Option<&str>,
    start: Start,
) -> Result<Subscription> {
    if let Some(s) = subscription(receiver, job).await? {
        return Ok(s);
    }
    let conninfo = names::conninfo(&sender.url, role).map_err(|reason| Error::BadUrl {
        what: sender.what.clone(),
        url: region_core::redact::url(&sender.url),
        reason,
    })?;
    let conninfo = names::literal(&conninfo)
        .ok_or_else(|| Error::Refused("the connection string holds a NUL byte".into()))?;
    let slot_lit = names::literal(slot).unwrap_or_default();
    let (copy, enabled) = match start {
        Start::Copy => ("true", "true"),
        Start::Disabled => ("false", "false"),
    };
    let name = names::subscription(job);
    let sql = format!(
        "CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {}
           WITH (create_slot = false, slot_name = {slot_lit}, copy_data = {copy},
                 enabled = {enabled}, streaming = on, disable_on_error = true)",
        names::publication(job)
    );
    sqlx::raw_sql(&sql)
        .execute(&receiver.pool)
        .await
        .map_err(|e| Error::db(&receiver.what, e))?;
    subscription(receiver, job).await?.ok_or_else(|| {
        Error::db(
            &receiver.what,
            anyhow::anyhow!("subscription {name} vanished right after it was made"),
        )
    })
}

/// `ALTER SUBSCRIPTION cb_<job> ENABLE` or `DISABLE`.
pub async fn set_enabled(receiver: &Shard, job: i64, enabled: bool) -> Result<()> {
    let sql = format!(
        "ALTER SUBSCRIPTION {} {}",
        names::subscription(job),
        if enabled { "ENABLE" } else { "DISABLE" }
    );
    sqlx::raw_sql(&sql)
        .execute(&receiver.pool)
        .await
        .map_err(|e| Error::db(&receiver.what, e))?;
    Ok(())
}

/// Drops subscription `cb_<job>` on `receiver` and every slot it used on
/// `sender` (its own and its tablesync workers'). The subscription is
/// detached from its slot first, so the drop never depends on reaching
/// the sender, and the slots are dropped here, where a failure is seen.
pub async fn drop_subscription(receiver: &Shard, sender: &Shard, job: i64) -> Result<()> {
    let slot = names::slot(job, &receiver.name);
    if let Some(sub) = subscription(receiver, job).await? {
        let name = names::subscription(job);
        for sql in [
            format!("ALTER SUBSCRIPTION {name} DISABLE"),
            format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)"),
            format!("DROP SUBSCRIPTION IF EXISTS {name}"),
        ] {
            sqlx::raw_sql(&sql)
                .execute(&receiver.pool)
                .await
                .map_err(|e| Error::db(&receiver.what, e))?;
        }
        for s in tablesync_slots(sender, sub.oid).await? {
            drop_slot(sender, &s).await?;
        }
    }
    drop_slot(sender, &slot).await
}

/// Moves slot `slot` on `shard` forward to `lsn` (a no-op when it is
/// there already): the changes before it will never be sent.
pub async fn advance_slot(shard: &Shard, slot: &str, lsn: &str) -> Result<()> {
    let behind: Option<bool> = sqlx::query_scalar(
        "SELECT confirmed_flush_lsn < $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .bind(lsn)
    .fetch_optional(&shard.pool)
    .await
    .map_err(|e| Error::db(&shard.what, e))?;
    match behind {
        None => Err(Error::db(
            &shard.what,
            anyhow::anyhow!("replication slot {slot} is missing"),
        )),
        Some(false) => Ok(()),
        Some(true) => {
            sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
                .bind(slot)
                .bind(lsn)
                .execute(&shard.pool)
                .await
                .map_err(|e| Error::db(&shard.what, e))?;
            Ok(())
        }
    }
}
