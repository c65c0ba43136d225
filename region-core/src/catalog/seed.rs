//! Registering a region's topology in its catalog (called by `cityboard up`).

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::catalog::CatalogError;
use crate::model::id::MAX_REGION;
use crate::redact;

#[derive(Debug, Clone)]
pub struct RegionTopology {
    pub name: String,
    /// The region bits of every id minted here: its position in the
    /// topology, stable forever.
    pub number: u16,
    pub shards: Vec<ShardTopology>,
}

/// One shard of a [`RegionTopology`]. Its `Debug` masks the passwords of
/// its URLs (`redact::url`), so a topology can be logged.
#[derive(Clone)]
pub struct ShardTopology {
    pub name: String,
    pub primary_url: String,
    pub replica_urls: Vec<String>,
    pub cities: Vec<String>,
}

impl std::fmt::Debug for ShardTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardTopology")
            .field("name", &self.name)
            .field("primary_url", &redact::url(&self.primary_url))
            .field("replica_urls", &redact::urls(&self.replica_urls))
            .field("cities", &self.cities)
            .finish()
    }
}

/// What `seed` did, for `cityboard up` to print.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub shards: usize,
    pub cities_added: Vec<String>,
    /// Cities the catalog already places elsewhere (moved by shard-tool):
    /// the catalog wins, the topology file is only the starting point.
    pub cities_kept_elsewhere: Vec<String>,
}

/// Registers (or updates) the region's shards and adds its cities to the
/// shard map with epoch 1 and an active fence on their shard. Idempotent:
/// run it at every `up`. Both the catalog and every shard must be migrated
/// first (`migrate::catalog`, `migrate::shard`).
pub async fn seed(catalog: &PgPool, topo: &RegionTopology) -> Result<SeedReport, CatalogError> {
    if topo.number > MAX_REGION {
        return Err(CatalogError::RegionNumber(topo.number));
    }
    let number = i16::try_from(topo.number).map_err(|_| CatalogError::RegionNumber(topo.number))?;
    let mut tx = catalog.begin().await?;
    sqlx::query("INSERT INTO region_info (name, number) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&topo.name)
        .bind(number)
        .execute(&mut *tx)
        .await?;
    let (found_name, found_number): (String, i16) =
        sqlx::query_as("SELECT name, number FROM region_info")
            .fetch_one(&mut *tx)
            .await?;
    if found_name != topo.name || found_number != number {
        return Err(CatalogError::WrongRegion {
            name: topo.name.clone(),
            number: topo.number,
            found_name,
            found_number,
        });
    }
    let mut report = SeedReport {
        shards: topo.shards.len(),
        ..SeedReport::default()
    };
    for shard in &topo.shards {
        // Updated only when an address changed: every change to `shards`
        // makes every running role reload the list (catalog trigger).
        sqlx::query(
            "INSERT INTO shards (region, name, primary_url, replica_urls) VALUES ($1, $2, $3, $4)
             ON CONFLICT (region, name) DO UPDATE
                SET primary_url = excluded.primary_url, replica_urls = excluded.replica_urls,
                    updated_at = now()
                WHERE (shards.primary_url, shards.replica_urls)
                      IS DISTINCT FROM (excluded.primary_url, excluded.replica_urls)",
        )
        .bind(&topo.name)
        .bind(&shard.name)
        .bind(&shard.primary_url)
        .bind(&shard.replica_urls)
        .execute(&mut *tx)
        .await?;
        let added: Vec<String> = sqlx::query_scalar(
            "INSERT INTO shard_map (city, region, shard, state, epoch)
             SELECT c, $1, $2, 'active', 1 FROM unnest($3::text[]) AS c
             ON CONFLICT (city) DO NOTHING RETURNING city",
        )
        .bind(&topo.name)
        .bind(&shard.name)
        .bind(&shard.cities)
        .fetch_all(&mut *tx)
        .await?;
        report.cities_added.extend(added);
    }
    // Fences go where the catalog says each city is now, with its epoch.
    let placed: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT city, region, shard, epoch FROM shard_map WHERE city = ANY($1) ORDER BY city",
    )
    .bind(
        topo.shards
            .iter()
            .flat_map(|s| s.cities.iter().cloned())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    for shard in &topo.shards {
        let mine: Vec<(String, i64)> = placed
            .iter()
            .filter(|(_, region, s, _)| *region == topo.name && *s == shard.name)
            .map(|(city, _, _, epoch)| (city.clone(), *epoch))
            .collect();
        for city in &shard.cities {
            if !mine.iter().any(|(c, _)| c == city) {
                report.cities_kept_elsewhere.push(city.clone());
            }
        }
        let fail = |source| CatalogError::Shard {
            shard: shard.name.clone(),
            source,
        };
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&shard.primary_url)
            .await
            .map_err(fail)?;
        let (cities, epochs): (Vec<String>, Vec<i64>) = mine.into_iter().unzip();
        // DO NOTHING: a fence that exists was set by a cutover and is newer
        // than anything the topology file knows.
        sqlx::query(
            "INSERT INTO city_fence (city, epoch, state)
             SELECT c, e, 'active' FROM unnest($1::text[], $2::bigint[]) AS t(c, e)
             ON CONFLICT (city) DO NOTHING",
        )
        .bind(&cities)
        .bind(&epochs)
        .execute(&pool)
        .await
        .map_err(fail)?;
        pool.close().await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_topology_shows_no_password() {
        let topology = RegionTopology {
            name: "us-east".into(),
            number: 0,
            shards: vec![ShardTopology {
                name: "shard-1".into(),
                primary_url: "postgres://writer:pr1mary@127.0.0.1:17110/cityboard".into(),
                replica_urls: vec!["postgres://reader:rep1ica@127.0.0.1:17111/cityboard".into()],
                cities: vec!["boston".into()],
            }],
        };
        let shown = format!("{topology:?}");
        assert!(
            !shown.contains("pr1mary") && !shown.contains("rep1ica"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://writer:***@127.0.0.1:17110/cityboard"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://reader:***@127.0.0.1:17111/cityboard"),
            "{shown}"
        );
    }
}
