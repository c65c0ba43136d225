//! The checks that refuse a step before it changes anything. Each returns
//! the problems it found, in words an operator can act on; a step runs
//! only when the list is empty, so a refusal costs no freeze, no slot and
//! no job row.

use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::tables::CityKeyedTable;

use super::Shard;

/// What a preflight found wrong, one sentence each.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    /// Adds one.
    pub fn add(&mut self, p: impl Into<String>) {
        self.0.push(p.into());
    }

    /// `Ok` when nothing was found, else a refusal listing everything.
    pub fn verdict(self, step: &str) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "{step} refused, nothing was changed:\n  - {}",
            self.0.join("\n  - ")
        )))
    }
}

fn db(shard: &Shard) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::db(&shard.what, e)
}

/// The applied migrations (version and checksum) of a shard.
async fn migrations(pool: &PgPool) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, encode(checksum, 'hex') FROM _sqlx_migrations WHERE success
          ORDER BY version",
    )
    .fetch_all(pool)
    .await
}

/// Columns of `tables`: (table, column, type, generated).
async fn columns(
    pool: &PgPool,
    tables: &[String],
) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                a.attgenerated::text
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
          WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1)
            AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY 1, 2",
    )
    .bind(tables)
    .fetch_all(pool)
    .await
}

/// Both shards run the same migrations and `tables` have the same columns
/// (names, types, generated or not) on both.
pub async fn same_schema(
    a: &Shard,
    b: &Shard,
    tables: &[String],
    found: &mut Problems,
) -> Result<()> {
    let ma = migrations(&a.pool).await.map_err(db(a))?;
    let mb = migrations(&b.pool).await.map_err(db(b))?;
    if ma != mb {
        let last = |m: &[(i64, String)]| m.last().map_or(0, |(v, _)| *v);
        found.add(format!(
            "{} and {} have different migrations (latest {} and {}): run the same version of \
             setup on both first",
            a.name,
            b.name,
            last(&ma),
            last(&mb)
        ));
    }
    let ca = columns(&a.pool, tables).await.map_err(db(a))?;
    let cb = columns(&b.pool, tables).await.map_err(db(b))?;
    for c in ca.iter().filter(|c| !cb.contains(c)) {
        found.add(format!(
            "column {}.{} ({}) on {} is not the same on {}",
            c.0, c.1, c.2, a.name, b.name
        ));
    }
    for c in cb.iter().filter(|c| !ca.contains(c)) {
        found.add(format!(
            "column {}.{} ({}) on {} is not the same on {}",
            c.0, c.1, c.2, b.name, a.name
        ));
    }
    Ok(())
}

/// The moved tables replicate correctly: no column fed by a sequence
/// (sequences are not replicated: the other shard would hand out the same
/// numbers again) and a replica identity that covers `city` (UPDATE and
/// DELETE of a row-filtered publication fail without it).
pub async fn replicable(
    shard: &Shard,
    tables: &[CityKeyedTable],
    found: &mut Problems,
) -> Result<()> {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let sequenced: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1)
            AND a.attnum > 0 AND NOT a.attisdropped
            AND (a.attidentity <> ''
                 OR EXISTS (SELECT 1 FROM pg_attrdef d
                             WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                               AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))
          ORDER BY 1, 2",
    )
    .bind(&names)
    .fetch_all(&shard.pool)
    .await
    .map_err(db(shard))?;
    for (t, c) in sequenced {
        found.add(format!(
            "{t}.{c} on {} takes its values from a sequence, which logical replication does not \
             carry",
            shard.name
        ));
    }
    let identity: Vec<(String, String, Option<bool>)> = sqlx::query_as(
        "SELECT c.relname::text, c.relreplident::text,
                (SELECT bool_or(a.attname = 'city')
                   FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid
                    AND ((c.relreplident = 'd' AND i.indisprimary)
                         OR (c.relreplident = 'i' AND i.indisreplident)))
           FROM pg_class c
          WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1)
          ORDER BY 1",
    )
    .bind(&names)
    .fetch_all(&shard.pool)
    .await
    .map_err(db(shard))?;
    for (t, kind, covers) in identity {
        if kind != "f" && covers != Some(true) {
            found.add(format!(
                "{t} on {} has a replica identity without city (REPLICA IDENTITY {kind}); a \
                 row-filtered publication cannot replicate its updates and deletes",
                shard.name
            ));
        }
    }
    Ok(())
}

/// `role` may open a replication connection to `sender` (REPLICATION or
/// superuser, and LOGIN).
pub async fn replication_role(sender: &Shard, role: &str, found: &mut Problems) -> Result<()> {
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT rolreplication OR rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&sender.pool)
    .await
    .map_err(db(sender))?;
    match row {
        None => found.add(format!("role {role:?} does not exist on {}", sender.name)),
        Some((false, _)) => found.add(format!(
            "role {role:?} on {} lacks REPLICATION: the subscription could not stream from it \
             (ALTER ROLE … REPLICATION, or pass --replication-role)",
            sender.name
        )),
        Some((true, false)) => found.add(format!("role {role:?} on {} cannot log in", sender.name)),
        Some((true, true)) => {}
    }
    Ok(())
}

/// Room for `slots` more replication slots and a walsender on `sender`.
pub async fn room_to_send(sender: &Shard, slots: i64, found: &mut Problems) -> Result<()> {
    let (free_slots, free_senders): (i64, i64) = sqlx::query_as(
        "SELECT current_setting('max_replication_slots')::int8
                  - (SELECT count(*) FROM pg_replication_slots),
                current_setting('max_wal_senders')::int8
                  - (SELECT count(*) FROM pg_stat_replication)",
    )
    .fetch_one(&sender.pool)
    .await
    .map_err(db(sender))?;
    if free_slots < slots {
        found.add(format!(
            "{} has {free_slots} free replication slot(s), the move needs {slots} \
             (max_replication_slots; `shard-tool status` lists the slots in use)",
            sender.name
        ));
    }
    if free_senders < 1 {
        found.add(format!(
            "{} has no free walsender (max_wal_senders)",
            sender.name
        ));
    }
    Ok(())
}

/// Room for `workers` more logical replication workers on `receiver`.
pub async fn room_to_receive(receiver: &Shard, workers: i64, found: &mut Problems) -> Result<()> {
    let free: i64 = sqlx::query_scalar(
        "SELECT current_setting('max_logical_replication_workers')::int8
                - (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL)",
    )
    .fetch_one(&receiver.pool)
    .await
    .map_err(db(receiver))?;
    if free < workers {
        found.add(format!(
            "{} has {free} free logical replication worker(s), the move needs {workers} \
             (max_logical_replication_workers)",
            receiver.name
        ));
    }
    Ok(())
}

/// Bytes the sender's slot `slot` is behind its WAL (none when the slot
/// is missing).
pub async fn slot_lag(sender: &Shard, slot: &str) -> Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
           FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&sender.pool)
    .await
    .map(Option::flatten)
    .map_err(db(sender))
}

/// The largest replay lag, in bytes, of `shard`'s streaming replicas as
/// its primary sees them (`pg_stat_replication`); 0 with none. The moves'
/// own walsenders are left out: their connection string names them
/// `shard-tool-move` (see [`super::names::conninfo`]).
pub async fn replica_lag(shard: &Shard) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::int8
           FROM pg_stat_replication WHERE application_name <> 'shard-tool-move'",
    )
    .fetch_one(&shard.pool)
    .await
    .map_err(db(shard))
}
