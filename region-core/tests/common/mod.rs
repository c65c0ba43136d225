//! The stack `deploy/test` started: read from `$CITYBOARD_HOME/state.json`.
#![allow(dead_code)]

pub mod api;
pub mod nodes;

use std::path::PathBuf;

#[allow(unused_imports)]
pub use nodes::{start_node, stop_node};

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Deserialize)]
pub struct State {
    pub regions: Vec<Region>,
}

#[derive(Debug, Deserialize)]
pub struct Region {
    pub name: String,
    pub catalog_url: String,
    pub shards: Vec<Shard>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Shard {
    pub name: String,
    pub primary_url: String,
    pub replica_urls: Vec<String>,
    pub cities: Vec<String>,
}

impl State {
    /// Fails the test (never skips it) when no stack is described.
    pub fn load() -> State {
        let Some(home) = std::env::var_os("CITYBOARD_HOME") else {
            panic!(
                "CITYBOARD_HOME is not set: these tests run against a stack; \
                 run them through deploy/test (or `cityboard up` and export CITYBOARD_HOME)"
            );
        };
        let path = PathBuf::from(home).join("state.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a stack description: {e}", path.display()))
    }

    pub fn region(&self) -> &Region {
        self.regions
            .first()
            .unwrap_or_else(|| panic!("state.json lists no region"))
    }

    /// The first shard that has at least one replica.
    pub fn replicated_shard(&self) -> &Shard {
        self.region()
            .shards
            .iter()
            .find(|s| !s.replica_urls.is_empty())
            .unwrap_or_else(|| panic!("state.json lists no shard with a replica"))
    }
}

pub async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", region_core::redact::url(url)))
}

/// A city name no other test uses, so tests can run side by side on one
/// shared stack.
pub fn unique_city(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

impl Region {
    /// The region's topology as `cityboard up` passes it to `catalog::seed`.
    pub fn topology(&self, number: u16) -> region_core::catalog::RegionTopology {
        region_core::catalog::RegionTopology {
            name: self.name.clone(),
            number,
            shards: self
                .shards
                .iter()
                .map(|s| region_core::catalog::ShardTopology {
                    name: s.name.clone(),
                    primary_url: s.primary_url.clone(),
                    replica_urls: s.replica_urls.clone(),
                    cities: s.cities.clone(),
                })
                .collect(),
        }
    }
}

/// Migrates and seeds every region (idempotent, as `cityboard up` does), so a
/// test can run first on a fresh stack.
pub async fn prepared() -> State {
    let state = State::load();
    for (i, region) in state.regions.iter().enumerate() {
        let catalog = pool(&region.catalog_url).await;
        region_core::migrate::catalog(&catalog).await.unwrap();
        for shard in &region.shards {
            region_core::migrate::shard(&pool(&shard.primary_url).await)
                .await
                .unwrap();
        }
        let number = u16::try_from(i).unwrap();
        region_core::catalog::seed(&catalog, &region.topology(number))
            .await
            .unwrap();
    }
    state
}

/// Puts a new city on `shard` (catalog shard_map and the shard's fence, both
/// at epoch 1, active), as `seed` would.
pub async fn new_city(region: &Region, shard: &Shard, prefix: &str) -> String {
    let city = unique_city(prefix);
    let catalog = pool(&region.catalog_url).await;
    sqlx::query(
        "INSERT INTO shard_map (city, region, shard, state, epoch) VALUES ($1, $2, $3, 'active', 1)",
    )
    .bind(&city)
    .bind(&region.name)
    .bind(&shard.name)
    .execute(&catalog)
    .await
    .unwrap();
    sqlx::query("INSERT INTO city_fence (city, epoch, state) VALUES ($1, 1, 'active')")
        .bind(&city)
        .execute(&pool(&shard.primary_url).await)
        .await
        .unwrap();
    city
}

/// An id generator with a node number leased from the region's catalog.
pub async fn ids(region: &Region) -> region_core::model::IdGenerator {
    let catalog = pool(&region.catalog_url).await;
    let lease = region_core::catalog::NodeLease::acquire(
        &catalog,
        &unique_city("test-holder"),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    region_core::model::IdGenerator::new(
        std::sync::Arc::new(region_core::clock::SystemClock),
        0,
        lease.node,
        lease.valid_until,
    )
}

pub fn sample_post(title: &str) -> region_core::model::PostFields {
    region_core::model::PostFields {
        category: "for-sale".into(),
        title: title.into(),
        description: "Barely used. <b>No</b> '; DROP TABLE posts; --".into(),
        price: Some(120),
        location: Some("Back Bay".into()),
        image_count: 0,
    }
}

/// A create command for a new post by `user` in `city` at epoch 1.
pub async fn create_command(
    ids: &region_core::model::IdGenerator,
    city: &str,
    user: region_core::model::Id,
    title: &str,
) -> region_core::model::Command {
    region_core::model::Command {
        id: ids.next().await.unwrap(),
        city: city.to_string(),
        created_at: chrono::Utc::now(),
        epoch: 1,
        request_id: None,
        kind: region_core::model::CommandKind::Create {
            post_id: ids.next().await.unwrap(),
            user_id: user,
            post: sample_post(title),
        },
    }
}

pub fn target(shard: &Shard, primary: PgPool) -> region_core::apply::ShardTarget {
    region_core::apply::ShardTarget {
        name: shard.name.clone(),
        primary,
    }
}

pub async fn count(pool: &PgPool, sql: &str, city: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(city)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A router over the region, with fresh replica status.
pub async fn router(region: &Region) -> region_core::db::Router {
    let catalog = pool(&region.catalog_url).await;
    let r = region_core::db::Router::connect(catalog, &region.name, Default::default())
        .await
        .unwrap();
    r.poll_now().await;
    r
}

/// Scans of `posts` on one node, from Postgres' own statistics. Counters on
/// a standby count that standby's reads only.
pub async fn post_scans(url: &str) -> i64 {
    let p = pool(url).await;
    sqlx::query_scalar(
        "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::bigint
         FROM pg_stat_user_tables WHERE relname = 'posts'",
    )
    .fetch_one(&p)
    .await
    .unwrap()
}

/// Waits until every replica of `shard` has replayed the primary's current
/// position.
pub async fn replicas_caught_up(shard: &Shard) {
    let primary = pool(&shard.primary_url).await;
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&primary)
        .await
        .unwrap();
    for url in &shard.replica_urls {
        let r = pool(url).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let done: bool =
                sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                    .bind(&target)
                    .fetch_one(&r)
                    .await
                    .unwrap();
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{url} does not catch up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Runs `body`, then `cleanup` even if `body` panicked, then re-raises.
pub async fn with_cleanup<F, C>(body: F, cleanup: C)
where
    F: std::future::Future<Output = ()> + Send + 'static,
    C: std::future::Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The stack's edge-kv key (its service refuses any request without it).
pub fn kv_key() -> String {
    let home = std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME");
    std::fs::read_to_string(std::path::Path::new(&home).join("secrets/edge-kv.key"))
        .expect("secrets/edge-kv.key")
        .trim()
        .to_string()
}
