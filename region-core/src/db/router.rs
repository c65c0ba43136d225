//! Every query for a city goes to that city's shard.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::catalog::{CityRoute, ShardMapCache};
use crate::db::read::{ReadError, ReadQuery, Served, read};
use crate::db::shard::{ReadConfig, ShardPools};
use crate::token::Consistency;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Not in this region's map, or placed in another region: 421.
    #[error("city {0} is not served by this region")]
    NotServed(String),
    #[error("city {city} is placed on shard {shard}, which this region's catalog does not list")]
    UnknownShard { city: String, shard: String },
    #[error(transparent)]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone)]
pub struct Router {
    pub region: String,
    pub map: ShardMapCache,
    shards: HashMap<String, ShardPools>,
}

impl Router {
    /// Loads the shard map and the region's shards from the catalog and
    /// creates their pools (lazily connected). Every reachable shard primary
    /// must carry exactly the schema this build knows.
    pub async fn connect(
        catalog: PgPool,
        region: &str,
        config: ReadConfig,
    ) -> Result<Router, anyhow::Error> {
        let map = ShardMapCache::load(catalog.clone()).await?;
        let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
            "SELECT name, primary_url, replica_urls FROM shards WHERE region = $1 ORDER BY name",
        )
        .bind(region)
        .fetch_all(&catalog)
        .await?;
        let mut shards = HashMap::new();
        for (name, primary, replicas) in rows {
            let pools = ShardPools::new(&name, &primary, &replicas, config)?;
            match crate::migrate::check_shard(&pools.primary).await {
                Ok(()) => {}
                Err(crate::migrate::SchemaError::Query { source, .. })
                    if crate::db::read::is_connection_error(&source) =>
                {
                    tracing::warn!(shard = %name, error = %source, "shard primary down at start; its cities answer 503");
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("shard {name}"))),
            }
            shards.insert(name, pools);
        }
        Ok(Router {
            region: region.to_string(),
            map,
            shards,
        })
    }

    /// Starts the shard-map watcher and one lag monitor per shard.
    pub fn spawn_background(
        &self,
        map_check: std::time::Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![self.map.watch(map_check)];
        tasks.extend(self.shards.values().map(ShardPools::monitor));
        tasks
    }

    /// One monitor round on every shard now (tests, and start-up so the
    /// first reads already know the replicas).
    pub async fn poll_now(&self) {
        for s in self.shards.values() {
            s.poll().await;
        }
    }

    /// Every shard of the region (health checks, monitors).
    pub fn shards(&self) -> impl Iterator<Item = &ShardPools> {
        self.shards.values()
    }

    pub fn shard(&self, name: &str) -> Option<&ShardPools> {
        self.shards.get(name)
    }

    pub fn route(&self, city: &str) -> Result<(CityRoute, &ShardPools), RouteError> {
        let route = self
            .map
            .route(city)
            .filter(|r| r.region == self.region)
            .ok_or_else(|| RouteError::NotServed(city.to_string()))?;
        let shard = self
            .shards
            .get(&route.shard)
            .ok_or_else(|| RouteError::UnknownShard {
                city: city.to_string(),
                shard: route.shard.clone(),
            })?;
        Ok((route, shard))
    }

    /// Runs `query` on `city`'s shard with the freshness `consistency`
    /// asks. A read-your-writes token from a newer epoch than the cached
    /// map's means the city moved and the NOTIFY has not reached this
    /// process yet: the map is reloaded first, so the read goes to the shard
    /// that has the write. (Should the reload fail, the read goes on with
    /// the cached map; `read` then sends it to that shard's primary, as for
    /// any token of another epoch.)
    pub async fn read<Q: ReadQuery>(
        &self,
        city: &str,
        consistency: &Consistency,
        query: &Q,
    ) -> Result<Served<Q::Output>, RouteError> {
        let (mut route, mut shard) = self.route(city)?;
        if consistency.newer_epoch_than(route.epoch) {
            if let Err(e) = self.map.refresh().await {
                tracing::warn!(%city, error = %e, "reloading the shard map for a newer read token");
            }
            (route, shard) = self.route(city)?;
        }
        Ok(read(shard, &route, consistency, query).await?)
    }
}
