//! What one shard looks like now: its primary's WAL position, each
//! replica's lag, the replication slots and the WAL they hold back, and
//! its cities with their rows and bytes. Read-only, and every figure says
//! how it was measured.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::PgPool;

use region_core::lsn::{self, Lsn};
use region_core::redact;

use crate::counts::{self, Counting};
use crate::regions::{ShardRow, connect_read_only};
use crate::replica::{self, ReplicaStatus};
use crate::tables::{self, CityKeyedTable};

/// A shard's status, as `status` prints it (and `--json` emits it).
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    /// The region it belongs to.
    pub region: String,
    /// `shard-N`.
    pub shard: String,
    /// Its primary (password redacted).
    pub primary: String,
    /// The primary's `pg_current_wal_lsn()` when it was read; none when the
    /// primary could not be read.
    pub wal_lsn: Option<Lsn>,
    /// Why the primary could not be read; the other fields are then empty.
    pub error: Option<String>,
    /// Its streaming replicas, in the catalog's order.
    pub replicas: Vec<ReplicaStatus>,
    /// Every replication slot on the primary (physical ones feed replicas,
    /// logical ones feed moves).
    pub slots: Vec<SlotStatus>,
    /// The tables counted (the city-keyed tables a move copies).
    pub tables: Vec<String>,
    /// Its cities: placed here by the shard map, fenced here, or with rows
    /// here.
    pub cities: Vec<CityStatus>,
}

/// A replication slot and what it costs the primary.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SlotStatus {
    /// `slot_name`.
    pub name: String,
    /// `physical` or `logical`.
    pub kind: String,
    /// A walsender or subscription is using it.
    pub active: bool,
    /// The logical slot's output plugin (`pgoutput` for moves).
    pub plugin: Option<String>,
    /// WAL the primary keeps for it: `pg_wal_lsn_diff(pg_current_wal_lsn(),
    /// restart_lsn)`. An inactive slot's figure only grows: that is the
    /// disk an orphan slot eats.
    pub retained_bytes: Option<i64>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

/// A city on a shard.
#[derive(Debug, Clone, Serialize)]
pub struct CityStatus {
    /// The city's slug.
    pub city: String,
    /// The catalog's shard map places the city on this shard.
    pub mapped: bool,
    /// This shard's `city_fence` state (`active`, `frozen`, `gone`, ...).
    pub fence: Option<String>,
    /// The fence's epoch.
    pub epoch: Option<i64>,
    /// Rows over every city-keyed table.
    pub rows: i64,
    /// `exact`, or `estimate` when any table's figure came from statistics.
    pub counted: &'static str,
    /// The city's share of those tables' size on disk (heap, indexes and
    /// TOAST): each table's `pg_total_relation_size` times the city's
    /// fraction of its rows.
    pub bytes: u64,
    /// Rows per table.
    pub table_rows: BTreeMap<String, i64>,
}

/// Reads the status of `shard`; `mapped` are the cities the region's shard
/// map places on it. Never fails: an unreachable primary or replica is part
/// of the status (`error`), so one shard down does not hide the others.
pub async fn inspect(
    region: &str,
    shard: &ShardRow,
    mapped: &[String],
    how: Counting,
) -> ShardStatus {
    let mut status = ShardStatus {
        region: region.to_string(),
        shard: shard.name.clone(),
        primary: redact::url(&shard.primary_url),
        wal_lsn: None,
        error: None,
        replicas: Vec::new(),
        slots: Vec::new(),
        tables: Vec::new(),
        cities: Vec::new(),
    };
    let what = format!("{region}/{} primary", shard.name);
    let primary = match connect_read_only(&shard.primary_url, &what).await {
        Ok(primary) => {
            if let Err(e) = read_primary(&primary, mapped, how, &mut status).await {
                status.error = Some(format!("{what}: {e}"));
            }
            Some(primary)
        }
        Err(e) => {
            status.error = Some(e.to_string());
            None
        }
    };
    for url in &shard.replica_urls {
        let what = format!("{region}/{} replica {}", shard.name, redact::url(url));
        let r = replica::inspect(&what, url, primary.as_ref()).await;
        status.replicas.push(r);
    }
    if let Some(p) = primary {
        p.close().await;
    }
    status
}

/// Everything read from the primary.
async fn read_primary(
    primary: &PgPool,
    mapped: &[String],
    how: Counting,
    status: &mut ShardStatus,
) -> Result<(), sqlx::Error> {
    status.wal_lsn = lsn::fetch("SELECT pg_current_wal_lsn()::text", primary).await?;
    status.slots = sqlx::query_as(
        "SELECT slot_name::text AS name, slot_type::text AS kind, active,
                plugin::text AS plugin,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 AS retained_bytes,
                wal_status::text AS wal_status
           FROM pg_replication_slots ORDER BY slot_name",
    )
    .fetch_all(primary)
    .await?;
    let tables = tables::city_keyed_tables(primary).await?;
    status.tables = tables.iter().map(|t| t.name.clone()).collect();
    status.cities = cities(primary, &tables, mapped, how).await?;
    Ok(())
}

/// The shard's cities with their fence and rows, counted `how` (see
/// [`crate::counts`]).
async fn cities(
    primary: &PgPool,
    tables: &[CityKeyedTable],
    mapped: &[String],
    how: Counting,
) -> Result<Vec<CityStatus>, sqlx::Error> {
    let fences: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT city, state, epoch FROM city_fence")
            .fetch_all(primary)
            .await?;
    let mut by_city: BTreeMap<String, CityStatus> = BTreeMap::new();
    let mut gone = Vec::new();
    for city in mapped {
        city_entry(&mut by_city, city, mapped);
    }
    for (city, state, epoch) in fences {
        // A `gone` fence of a city that left is history, not a city of
        // this shard (it is listed again, with this fence, if rows of it
        // are left behind).
        if state == "gone" && !mapped.contains(&city) {
            gone.push((city, state, epoch));
            continue;
        }
        let c = city_entry(&mut by_city, &city, mapped);
        c.fence = Some(state);
        c.epoch = Some(epoch);
    }
    let mut known: Vec<String> = by_city.keys().cloned().collect();
    known.extend(gone.iter().map(|(c, _, _)| c.clone()));
    for table in tables {
        let counted = counts::count(primary, table, how, &known).await?;
        for (city, n) in &counted.rows {
            let c = city_entry(&mut by_city, city, mapped);
            c.rows += n;
            c.bytes += share(counted.size, *n, counted.total);
            c.table_rows.insert(table.name.clone(), *n);
            if counted.estimated.contains(city) {
                c.counted = Counting::Estimate.label();
            }
        }
    }
    for (city, state, epoch) in gone {
        if let Some(c) = by_city.get_mut(&city) {
            c.fence = Some(state);
            c.epoch = Some(epoch);
        }
    }
    // Every listed city names every table, so a zero is a zero, not a gap.
    for c in by_city.values_mut() {
        for t in tables {
            c.table_rows.entry(t.name.clone()).or_insert(0);
        }
    }
    Ok(by_city.into_values().collect())
}

/// The city's entry, made (with no rows yet) the first time it is seen.
fn city_entry<'a>(
    by_city: &'a mut BTreeMap<String, CityStatus>,
    city: &str,
    mapped: &[String],
) -> &'a mut CityStatus {
    by_city
        .entry(city.to_string())
        .or_insert_with(|| CityStatus {
            city: city.to_string(),
            mapped: mapped.iter().any(|m| m == city),
            fence: None,
            epoch: None,
            rows: 0,
            counted: Counting::Exact.label(),
            bytes: 0,
            table_rows: BTreeMap::new(),
        })
}

/// `size × rows / total`, in integers (no float rounding of big tables).
fn share(size: i64, rows: i64, total: i64) -> u64 {
    if total <= 0 || size <= 0 || rows <= 0 {
        return 0;
    }
    let v = i128::from(size) * i128::from(rows) / i128::from(total);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The cities of every shard, for one region: `shard → cities` from the
/// catalog's shard map.
pub async fn mapped_cities(
    catalog: &PgPool,
    region: &str,
) -> Result<BTreeMap<String, Vec<String>>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT shard, city FROM shard_map WHERE region = $1 ORDER BY city")
            .bind(region)
            .fetch_all(catalog)
            .await?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (shard, city) in rows {
        map.entry(shard).or_default().push(city);
    }
    Ok(map)
}

/// Cities the shard map places on a shard the catalog does not list
/// (misconfiguration an operator must see rather than lose).
pub fn unlisted_shards<'a>(
    mapped: &'a BTreeMap<String, Vec<String>>,
    listed: &[ShardRow],
) -> BTreeSet<&'a str> {
    mapped
        .keys()
        .filter(|s| !listed.iter().any(|l| &l.name == *s))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_citys_bytes_are_its_share_of_the_table_by_rows() {
        assert_eq!(share(1000, 1, 4), 250);
        assert_eq!(share(1000, 0, 4), 0);
        assert_eq!(share(0, 3, 4), 0);
        assert_eq!(share(i64::MAX, i64::MAX, i64::MAX), i64::MAX as u64);
    }
}
