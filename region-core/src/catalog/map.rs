//! The shard map and its per-process cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum CityState {
    Active,
    Frozen,
    Moving,
}

/// Where a city lives, and the epoch its writes must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CityRoute {
    pub city: String,
    pub region: String,
    pub shard: String,
    pub state: CityState,
    pub epoch: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    /// `shard_map_version` when this copy was read.
    pub version: i64,
    pub cities: HashMap<String, CityRoute>,
}

impl ShardMap {
    pub async fn load(catalog: &PgPool) -> Result<ShardMap, sqlx::Error> {
        // One transaction (REPEATABLE READ) so the version matches the rows.
        let mut tx = catalog.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM shard_map_version")
            .fetch_one(&mut *tx)
            .await?;
        let rows: Vec<CityRoute> =
            sqlx::query_as("SELECT city, region, shard, state, epoch FROM shard_map")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(ShardMap {
            version,
            cities: rows.into_iter().map(|r| (r.city.clone(), r)).collect(),
        })
    }

    pub fn route(&self, city: &str) -> Option<&CityRoute> {
        self.cities.get(city)
    }
}

/// The process's copy of the shard map, reloaded when the catalog's version
/// changes: on NOTIFY `shard_map`, and by a periodic comparison in case a
/// notification was missed (listener reconnecting).
#[derive(Debug, Clone)]
pub struct ShardMapCache {
    catalog: PgPool,
    current: Arc<RwLock<Arc<ShardMap>>>,
    /// The version of `current`, published after every swap, so a role can
    /// react to a new map the moment it is in place (the writer wakes the
    /// cities it holds) instead of polling for it.
    version: Arc<watch::Sender<i64>>,
}

impl ShardMapCache {
    pub async fn load(catalog: PgPool) -> Result<Self, sqlx::Error> {
        let map = ShardMap::load(&catalog).await?;
        let (version, _) = watch::channel(map.version);
        Ok(ShardMapCache {
            catalog,
            current: Arc::new(RwLock::new(Arc::new(map))),
            version: Arc::new(version),
        })
    }

    /// Follows the cached map's version: the receiver sees a change once a
    /// newer map is in place (so `get` and `route` already return it). A
    /// cutover's flip, and an aborted cutover's unfreeze, both change the
    /// catalog's `shard_map`, so this is how a role learns that a city it
    /// held or re-routed can go on, without waiting out a backoff.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.version.subscribe()
    }

    pub fn get(&self) -> Arc<ShardMap> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn route(&self, city: &str) -> Option<CityRoute> {
        self.get().route(city).cloned()
    }

    /// Reloads when the catalog's version differs from the cached one.
    /// Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, sqlx::Error> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM shard_map_version")
            .fetch_one(&self.catalog)
            .await?;
        if version == self.get().version {
            return Ok(false);
        }
        let map = ShardMap::load(&self.catalog).await?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Never go back to an older map if two reloads raced.
        if map.version > cur.version {
            let version = map.version;
            *cur = Arc::new(map);
            // Still under the lock, so subscribers see versions in order,
            // and only after the swap, so what they read is the new map.
            self.version.send_replace(version);
        }
        Ok(true)
    }

    /// Keeps the cache current until the task is aborted.
    pub fn watch(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut listener: Option<PgListener> = None;
            let mut tick = tokio::time::interval(period);
            loop {
                if listener.is_none() {
                    match PgListener::connect_with(&cache.catalog).await {
                        Ok(mut l) => match l.listen("shard_map").await {
                            Ok(()) => listener = Some(l),
                            Err(e) => tracing::warn!(error = %e, "LISTEN shard_map failed"),
                        },
                        Err(e) => tracing::warn!(error = %e, "shard map listener cannot connect"),
                    }
                }
                match listener.as_mut() {
                    Some(l) => {
                        tokio::select! {
                            n = l.recv() => if let Err(e) = n {
                                tracing::warn!(error = %e, "shard map listener lost");
                                listener = None;
                            },
                            _ = tick.tick() => {}
                        }
                    }
                    None => {
                        tick.tick().await;
                    }
                }
                if let Err(e) = cache.refresh().await {
                    tracing::warn!(error = %e, "shard map reload failed; keeping the cached one");
                }
            }
        })
    }
}
