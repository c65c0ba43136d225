//! Which tables move with a city: derived from the shard's schema, never
//! listed by hand.
//!
//! A table moves with its city when its primary key starts with `city`.
//! That is the rule the shard schema is written to (its first migration:
//! logical replication's row filter `WHERE (city = '…')` needs `city` in the
//! replica identity, which is the primary key), so a table added by a later
//! migration moves too without anyone editing shard-tool. `status` counts a
//! city's rows over exactly these tables, and the move's publication will
//! list exactly these tables: one derivation, so the figures an operator
//! reads are the rows that will be copied.
//!
//! One exception, by name: `city_fence` is keyed by city but is each
//! shard's own claim on the city (the cutover flips the source's and the
//! target's rows separately), so it never moves.

use sqlx::PgPool;

/// Tables keyed by city that stay on their shard (see the module doc).
pub const NEVER_MOVED: &[&str] = &["city_fence"];

/// A table of the shard's schema whose primary key starts with `city`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CityKeyedTable {
    /// The table's name (`relname`).
    pub name: String,
    /// The name as SQL text, quoted and schema-qualified as needed
    /// (`oid::regclass::text`): safe to put in a statement as is.
    #[serde(skip)]
    pub sql_name: String,
    /// Its primary key columns in order; the first is `city`.
    pub primary_key: Vec<String>,
}

/// A table of the schema with its primary key, as the catalog query
/// returns it, before the rule is applied.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyedTable {
    /// `relname`.
    pub name: String,
    /// `oid::regclass::text`.
    pub sql_name: String,
    /// Primary key columns in key order.
    pub primary_key: Vec<String>,
}

/// The rule itself: primary key led by `city`, and not one of
/// [`NEVER_MOVED`]. Sorted by name, so every command lists them alike.
pub fn city_keyed(tables: Vec<KeyedTable>) -> Vec<CityKeyedTable> {
    let mut out: Vec<CityKeyedTable> = tables
        .into_iter()
        .filter(|t| t.primary_key.first().is_some_and(|c| c == "city"))
        .filter(|t| !NEVER_MOVED.contains(&t.name.as_str()))
        .map(|t| CityKeyedTable {
            name: t.name,
            sql_name: t.sql_name,
            primary_key: t.primary_key,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every ordinary or partitioned table of the connection's current schema
/// with a primary key, with that key's columns in order, read from
/// `pg_catalog`. Partitions are left out: a publication names the
/// partitioned table, and counting both would count rows twice.
pub async fn keyed_tables(shard: &PgPool) -> Result<Vec<KeyedTable>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.relname::text AS name,
                c.oid::regclass::text AS sql_name,
                array_agg(a.attname::text ORDER BY k.ord) AS primary_key
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
          WHERE i.indisprimary
            AND n.nspname = current_schema()
            AND c.relkind IN ('r', 'p')
            AND NOT c.relispartition
          GROUP BY c.oid, c.relname
          ORDER BY c.relname",
    )
    .fetch_all(shard)
    .await
}

/// The tables that move with a city on this shard: [`keyed_tables`]
/// through [`city_keyed`].
pub async fn city_keyed_tables(shard: &PgPool) -> Result<Vec<CityKeyedTable>, sqlx::Error> {
    Ok(city_keyed(keyed_tables(shard).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, pk: &[&str]) -> KeyedTable {
        KeyedTable {
            name: name.into(),
            sql_name: name.into(),
            primary_key: pk.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_table_moves_when_its_primary_key_starts_with_city() {
        let found = city_keyed(vec![
            table("posts", &["city", "id"]),
            table("outbox", &["city", "seq"]),
            table("_sqlx_migrations", &["version"]),
            // `city` in the key but not first: a row filter on city could
            // not use the key, so it is not a city-keyed table.
            table("by_user", &["user_id", "city"]),
            table("city_fence", &["city"]),
            table("added_later", &["city", "post_id", "at"]),
        ]);
        let names: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["added_later", "outbox", "posts"]);
        assert_eq!(found[2].primary_key, ["city", "id"]);
    }

    #[test]
    fn the_fence_never_moves() {
        assert!(city_keyed(vec![table("city_fence", &["city"])]).is_empty());
    }
}
