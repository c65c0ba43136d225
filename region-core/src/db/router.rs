//! Every query for a city goes to that city's shard.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// One shard as the router knows it: the addresses its pools were made
/// from (a changed address in the catalog, a failover, replaces them).
#[derive(Debug)]
struct KnownShard {
    primary_url: String,
    replica_urls: Vec<String>,
    pools: Arc<ShardPools>,
}

type ShardSet = HashMap<String, Arc<KnownShard>>;

#[derive(Debug, Clone)]
pub struct Router {
    pub region: String,
    pub map: ShardMapCache,
    catalog: PgPool,
    config: ReadConfig,
    /// The region's shards, swapped whole when the catalog's list changes
    /// (see [`Router::refresh_shards`]); readers clone the `Arc` and never
    /// hold the lock across an await.
    shards: Arc<RwLock<Arc<ShardSet>>>,
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
        let router = Router {
            region: region.to_string(),
            map,
            catalog,
            config,
            shards: Arc::default(),
        };
        router.load_shards(true).await?;
        Ok(router)
    }

    /// Reloads the region's shard list from the catalog: pools for a shard
    /// that is new or whose addresses changed, none kept for a shard that is
    /// gone; the others keep their pools (and what their monitor knows).
    /// Returns whether the list changed. A new shard whose schema is not
    /// this build's is left out (its cities answer 503) and tried again at
    /// the next reload, rather than stopping a running role.
    pub async fn refresh_shards(&self) -> Result<bool, anyhow::Error> {
        self.load_shards(false).await
    }

    /// `refresh_shards`; at start (`strict`), a schema mismatch fails.
    async fn load_shards(&self, strict: bool) -> Result<bool, anyhow::Error> {
        let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
            "SELECT name, primary_url, replica_urls FROM shards WHERE region = $1 ORDER BY name",
        )
        .bind(&self.region)
        .fetch_all(&self.catalog)
        .await?;
        let current = self.shard_set();
        let mut next = ShardSet::new();
        let mut changed = rows.len() != current.len();
        for (name, primary_url, replica_urls) in rows {
            if let Some(known) = current
                .get(&name)
                .filter(|k| k.primary_url == primary_url && k.replica_urls == replica_urls)
            {
                next.insert(name, known.clone());
                continue;
            }
            changed = true;
            let pools = ShardPools::new(&name, &primary_url, &replica_urls, self.config)?;
            match crate::migrate::check_shard(&pools.primary).await {
                Ok(()) => {}
                Err(crate::migrate::SchemaError::Query { source, .. })
                    if crate::db::read::is_connection_error(&source) =>
                {
                    tracing::warn!(shard = %name, error = %source, "shard primary down; its cities answer 503 until it is back");
                }
                Err(e) if strict => {
                    return Err(anyhow::Error::new(e).context(format!("shard {name}")));
                }
                Err(e) => {
                    tracing::error!(shard = %name, error = %e, "shard left out: its schema is not this build's");
                    if let Some(old) = current.get(&name) {
                        next.insert(name, old.clone());
                    }
                    continue;
                }
            }
            if !strict {
                tracing::info!(shard = %name, "shard list changed: new pools for this shard");
            }
            next.insert(
                name,
                Arc::new(KnownShard {
                    primary_url,
                    replica_urls,
                    pools: Arc::new(pools),
                }),
            );
        }
        if changed {
            *self.shards.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
        Ok(changed)
    }

    fn shard_set(&self) -> Arc<ShardSet> {
        self.shards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For a role that reads: starts the shard-map watcher and the
    /// shard-list follower, which reloads the list whenever the map's
    /// version changes (the catalog bumps it for a change of `shards` too)
    /// and keeps one lag monitor per shard running.
    pub fn spawn_background(
        &self,
        map_check: std::time::Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            self.map.watch(map_check),
            self.follow_shards(map_check, true),
        ]
    }

    /// For a role that only writes to primaries (the writer): the map
    /// watcher and the shard-list follower, without lag monitors.
    pub fn follow_catalog(
        &self,
        map_check: std::time::Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            self.map.watch(map_check),
            self.follow_shards(map_check, false),
        ]
    }

    /// The follower of `spawn_background` and `follow_catalog`. Its
    /// monitors are tasks of a `JoinSet` it owns, so aborting it stops them
    /// too.
    fn follow_shards(
        &self,
        retry: std::time::Duration,
        monitor: bool,
    ) -> tokio::task::JoinHandle<()> {
        let router = self.clone();
        let mut versions = self.map.subscribe();
        tokio::spawn(async move {
            let mut monitors = tokio::task::JoinSet::new();
            let mut running: HashMap<String, (Arc<ShardPools>, tokio::task::AbortHandle)> =
                HashMap::new();
            let mut failed = false;
            loop {
                let set = router.shard_set();
                running.retain(|name, (pools, handle)| {
                    let keep = set.get(name).is_some_and(|k| Arc::ptr_eq(&k.pools, pools));
                    if !keep {
                        handle.abort();
                    }
                    keep
                });
                for (name, known) in set.iter().filter(|_| monitor) {
                    if !running.contains_key(name) {
                        let handle = monitors.spawn(known.pools.clone().monitor_loop());
                        running.insert(name.clone(), (known.pools.clone(), handle));
                    }
                }
                while monitors.try_join_next().is_some() {}
                tokio::select! {
                    changed = versions.changed() => if changed.is_err() {
                        return;
                    },
                    _ = tokio::time::sleep(retry), if failed => {}
                }
                failed = match router.refresh_shards().await {
                    Ok(_) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "reloading the shard list; trying again");
                        true
                    }
                };
            }
        })
    }

    /// One monitor round on every shard now (tests, and start-up so the
    /// first reads already know the replicas).
    pub async fn poll_now(&self) {
        for s in self.shards() {
            s.poll().await;
        }
    }

    /// Every shard of the region (health checks, monitors, sweeps), as the
    /// list is now.
    pub fn shards(&self) -> Vec<Arc<ShardPools>> {
        let mut shards: Vec<_> = self.shard_set().values().map(|k| k.pools.clone()).collect();
        shards.sort_by(|a, b| a.name.cmp(&b.name));
        shards
    }

    pub fn shard(&self, name: &str) -> Option<Arc<ShardPools>> {
        self.shard_set().get(name).map(|k| k.pools.clone())
    }

    pub fn route(&self, city: &str) -> Result<(CityRoute, Arc<ShardPools>), RouteError> {
        let route = self
            .map
            .route(city)
            .filter(|r| r.region == self.region)
            .ok_or_else(|| RouteError::NotServed(city.to_string()))?;
        let shard = self
            .shard(&route.shard)
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
        let (mut route, mut shard) = match self.route(city) {
            Err(RouteError::UnknownShard { .. }) => {
                // The map already names a shard the list has not caught up
                // with (a shard added a moment ago): reload it, once.
                if let Err(e) = self.refresh_shards().await {
                    tracing::warn!(%city, error = %e, "reloading the shard list");
                }
                self.route(city)?
            }
            other => other?,
        };
        if consistency.newer_epoch_than(route.epoch) {
            if let Err(e) = self.map.refresh().await {
                tracing::warn!(%city, error = %e, "reloading the shard map for a newer read token");
            }
            (route, shard) = self.route(city)?;
        }
        Ok(read(&shard, &route, consistency, query).await?)
    }
}
