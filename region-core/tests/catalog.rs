mod common;

use std::time::Duration;

use common::{pool, prepared, unique_city};
use region_core::catalog::{NodeLease, ShardMapCache};

#[tokio::test]
async fn seeding_twice_changes_nothing_and_fences_every_city() {
    let state = prepared().await;
    let region = state.region();
    let catalog = pool(&region.catalog_url).await;
    let again = region_core::catalog::seed(&catalog, &region.topology(0))
        .await
        .unwrap();
    assert!(again.cities_added.is_empty(), "{again:?}");
    for shard in &region.shards {
        let primary = pool(&shard.primary_url).await;
        for city in &shard.cities {
            let state: String = sqlx::query_scalar("SELECT state FROM city_fence WHERE city = $1")
                .bind(city)
                .fetch_one(&primary)
                .await
                .unwrap();
            assert_eq!(state, "active", "{city} on {}", shard.name);
        }
    }
}

#[tokio::test]
async fn two_processes_never_share_a_node_number() {
    let state = prepared().await;
    let catalog = pool(&state.region().catalog_url).await;
    let ttl = Duration::from_secs(30);
    let a = NodeLease::acquire(&catalog, &unique_city("holder"), ttl)
        .await
        .unwrap();
    let mut b = NodeLease::acquire(&catalog, &unique_city("holder"), ttl)
        .await
        .unwrap();
    assert_ne!(a.node, b.node);
    b.renew(&catalog).await.unwrap();
    let node_a = a.node;
    a.release(&catalog).await.unwrap();
    b.release(&catalog).await.unwrap();
    let mut gone = NodeLease {
        node: node_a,
        holder: "someone-else".into(),
        ttl,
        valid_until: std::time::Instant::now(),
    };
    assert!(gone.renew(&catalog).await.is_err());
}

#[tokio::test]
async fn the_shard_map_cache_follows_an_epoch_change() {
    let state = prepared().await;
    let region = state.region();
    let catalog = pool(&region.catalog_url).await;
    let cache = ShardMapCache::load(catalog.clone()).await.unwrap();
    let watcher = cache.watch(Duration::from_secs(5));
    let city = unique_city("mapcity");
    sqlx::query(
        "INSERT INTO shard_map (city, region, shard, state, epoch) VALUES ($1, $2, $3, 'active', 1)",
    )
    .bind(&city)
    .bind(&region.name)
    .bind(&region.shards[0].name)
    .execute(&catalog)
    .await
    .unwrap();
    sqlx::query("UPDATE shard_map SET epoch = 2 WHERE city = $1")
        .bind(&city)
        .execute(&catalog)
        .await
        .unwrap();
    // NOTIFY makes this quick; far below the 5 s periodic check.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while cache.route(&city).map(|r| r.epoch) != Some(2) {
        assert!(std::time::Instant::now() < deadline, "cache did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
    sqlx::query("DELETE FROM shard_map WHERE city = $1")
        .bind(&city)
        .execute(&catalog)
        .await
        .unwrap();
}
