//! A city-keyed table's rows per city: counted exactly, or estimated from
//! the planner's statistics for shards too big to scan at every `status`.
//!
//! Exact is the default: one `count(*) … GROUP BY city` per table, a scan
//! (about a second per million rows on these machines), and the figure the
//! copy will see. `--estimate` reads `pg_class.reltuples` times the city's
//! frequency in `pg_stats.most_common_vals` of `city` (what ANALYZE
//! sampled: cheap, and as old as the last analyze); a city the statistics
//! do not name (a small one) is counted exactly with `WHERE city = $1`,
//! which the primary key (led by `city`) answers without a scan. A table
//! never analyzed is counted exactly. Every figure says which it is.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::PgPool;

use crate::tables::CityKeyedTable;

/// How rows are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// `count(*)` over every row.
    Exact,
    /// Statistics where the table has them (see the module doc).
    Estimate,
}

impl Counting {
    /// The label the output carries.
    pub fn label(self) -> &'static str {
        match self {
            Counting::Exact => "exact",
            Counting::Estimate => "estimate",
        }
    }
}

/// One table's rows per city, and its total size for each city's share.
#[derive(Debug, Default)]
pub struct TableCounts {
    /// Rows per city.
    pub rows: BTreeMap<String, i64>,
    /// Cities whose figure is an estimate.
    pub estimated: BTreeSet<String>,
    /// Rows in the table (estimated when the per-city figures are), the
    /// denominator of each city's share of `size`.
    pub total: i64,
    /// `pg_total_relation_size`: heap, indexes and TOAST.
    pub size: i64,
}

/// `pg_stats` of a table's `city`: its most common values and their
/// frequencies (none when ANALYZE found no common value).
type CityStatistics = (Option<Vec<String>>, Option<Vec<f64>>);

/// Counts `table`'s rows per city; `known` are the cities the shard map
/// and the fences name (counted even when the statistics miss them).
pub async fn count(
    primary: &PgPool,
    table: &CityKeyedTable,
    how: Counting,
    known: &[String],
) -> Result<TableCounts, sqlx::Error> {
    let (size, reltuples): (i64, f64) = sqlx::query_as(
        "SELECT pg_total_relation_size(c.oid)::int8, c.reltuples::float8
           FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(&table.sql_name)
    .fetch_one(primary)
    .await?;
    let mut counts = TableCounts {
        size,
        ..TableCounts::default()
    };
    // reltuples is -1 until the first VACUUM or ANALYZE.
    if how == Counting::Exact || reltuples < 0.0 {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT city::text, count(*)::int8 FROM {} GROUP BY city",
            table.sql_name
        ))
        .fetch_all(primary)
        .await?;
        counts.total = rows.iter().map(|(_, n)| n).sum();
        counts.rows = rows.into_iter().collect();
        return Ok(counts);
    }
    let stats: Option<CityStatistics> = sqlx::query_as(
        "SELECT most_common_vals::text::text[], most_common_freqs::float8[]
           FROM pg_stats
          WHERE schemaname = current_schema() AND tablename = $1 AND attname = 'city'",
    )
    .bind(&table.name)
    .fetch_optional(primary)
    .await?;
    let (values, freqs) = match stats {
        Some((Some(v), Some(f))) => (v, f),
        _ => (Vec::new(), Vec::new()),
    };
    for (city, freq) in values.into_iter().zip(freqs) {
        counts
            .rows
            .insert(city.clone(), (freq * reltuples).round() as i64);
        counts.estimated.insert(city);
    }
    for city in known {
        if counts.rows.contains_key(city) {
            continue;
        }
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*)::int8 FROM {} WHERE city = $1",
            table.sql_name
        ))
        .bind(city)
        .fetch_one(primary)
        .await?;
        if n > 0 {
            counts.rows.insert(city.clone(), n);
        }
    }
    let sum: i64 = counts.rows.values().sum();
    counts.total = sum.max(reltuples.round() as i64);
    Ok(counts)
}
