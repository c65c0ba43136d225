mod common;

use std::time::{Duration, Instant};

use common::*;
use region_core::apply::{ApplyConfig, CityBatch, apply};
use region_core::db::Node;
use region_core::db::queries::GetPost;
use region_core::model::Id;
use region_core::token::{Consistency, WriteToken};

/// Creates one post in a new city on the replicated shard; returns the city,
/// the query for the post and the write's token.
async fn one_post(state: &State, prefix: &str) -> (String, GetPost, WriteToken) {
    let region = state.region();
    let shard = state.replicated_shard();
    let city = new_city(region, shard, prefix).await;
    let ids = ids(region).await;
    let create = create_command(&ids, &city, Id(7), "table").await;
    let post_id = create.kind.post_id().unwrap();
    let applied = apply(
        &target(shard, pool(&shard.primary_url).await),
        &[CityBatch {
            city: city.clone(),
            epoch: 1,
            commands: vec![create.clone()],
        }],
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    let token = applied.token(create.id).unwrap();
    (city.clone(), GetPost { city, id: post_id }, token)
}

#[tokio::test]
async fn reads_without_a_token_are_served_by_replicas() {
    let state = prepared().await;
    let shard = state.replicated_shard();
    let (city, query, _) = one_post(&state, "replicaread").await;
    replicas_caught_up(shard).await;
    let router = router(state.region()).await;
    let mut before = 0;
    for url in &shard.replica_urls {
        before += post_scans(url).await;
    }

    const READS: i64 = 20;
    for _ in 0..READS {
        let served = router.read(&city, &Consistency::Any, &query).await.unwrap();
        assert!(matches!(served.node, Node::Replica(_)), "{:?}", served.node);
        assert!(served.value.is_some());
    }

    // Backends publish their statistics about once a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut after = 0;
        for url in &shard.replica_urls {
            after += post_scans(url).await;
        }
        if after - before >= READS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas' statistics show {} reads of posts, expected at least {READS}",
            after - before
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_token_from_another_shard_or_epoch_reads_from_the_primary() {
    let state = prepared().await;
    let (city, query, token) = one_post(&state, "foreigntoken").await;
    let router = router(state.region()).await;
    let moved = WriteToken {
        epoch: token.epoch + 1,
        ..token
    };
    let served = router
        .read(&city, &Consistency::AtLeast(moved), &query)
        .await
        .unwrap();
    assert_eq!(served.node, Node::Primary);
    assert!(served.value.is_some());
}

/// The city moved (its map row at a newer epoch) and this process has not
/// heard: a token from the newer epoch makes the read reload the map before
/// it picks a shard.
#[tokio::test]
async fn a_token_from_a_newer_epoch_reloads_the_map_first() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "newerepoch").await;
    let ids = ids(region).await;
    let create = create_command(&ids, &city, Id(7), "chair").await;
    let post_id = create.kind.post_id().unwrap();
    let applied = apply(
        &target(shard, pool(&shard.primary_url).await),
        &[CityBatch {
            city: city.clone(),
            epoch: 1,
            commands: vec![create.clone()],
        }],
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    let token = applied.token(create.id).unwrap();
    // No watcher runs beside this router: its map stays as loaded.
    let router = router(region).await;
    sqlx::query("UPDATE shard_map SET epoch = 2 WHERE city = $1")
        .bind(&city)
        .execute(&pool(&region.catalog_url).await)
        .await
        .unwrap();
    assert_eq!(router.map.route(&city).unwrap().epoch, 1);
    let newer = WriteToken { epoch: 2, ..token };
    let served = router
        .read(
            &city,
            &Consistency::AtLeast(newer),
            &GetPost {
                city: city.clone(),
                id: post_id,
            },
        )
        .await
        .unwrap();
    assert!(served.value.is_some());
    assert_eq!(router.map.route(&city).unwrap().epoch, 2, "reloaded");
}

#[tokio::test]
async fn a_city_of_no_shard_here_is_not_served() {
    let state = prepared().await;
    let router = router(state.region()).await;
    let err = router
        .read(
            "atlantis",
            &Consistency::Any,
            &GetPost {
                city: "atlantis".into(),
                id: Id(1),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, region_core::db::RouteError::NotServed(_)),
        "{err}"
    );
}

async fn set_apply_delay(urls: &[String], delay: &str) {
    for url in urls {
        let p = pool(url).await;
        sqlx::query(&format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"
        ))
        .execute(&p)
        .await
        .unwrap();
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&p)
            .await
            .unwrap();
    }
}

/// Delays every replica of the shard (shared nodes: serial, and put back).
#[tokio::test]
async fn serial_a_token_read_is_never_answered_by_a_delayed_replica() {
    let state = prepared().await;
    let shard = state.replicated_shard().clone();
    let urls = shard.replica_urls.clone();
    set_apply_delay(&urls, "3s").await;
    // The new setting applies to the next commit the replicas replay.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = async move {
        let (city, query, token) = one_post(&state, "delayed").await;
        // The proof that the replicas really are behind this write.
        for url in &state.replicated_shard().replica_urls {
            let direct = pool(url).await;
            let mut conn = direct.acquire().await.unwrap();
            use region_core::db::ReadQuery;
            assert!(
                query.run(&mut conn).await.unwrap().is_none(),
                "{url} is not delayed"
            );
        }
        let router = router(state.region()).await;
        let with_token = Consistency::AtLeast(token);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let served = router.read(&city, &with_token, &query).await.unwrap();
            assert_eq!(served.node, Node::Primary, "a delayed replica answered");
            assert!(served.value.is_some(), "the author must see the post");
            router.poll_now().await;
        }
    };
    with_cleanup(body, async {
        set_apply_delay(&urls, "0").await;
        replicas_caught_up(&shard).await;
    })
    .await;
}

/// Stops one replica (shared node: serial, and started again).
#[tokio::test]
async fn serial_a_stopped_replica_causes_no_error() {
    let state = prepared().await;
    let shard = state.replicated_shard().clone();
    let (city, query, _) = one_post(&state, "stopped").await;
    replicas_caught_up(&shard).await;
    let victim = shard.replica_urls[0].clone();
    let router = router(state.region()).await;
    let node = stop_node(&victim).await;
    let body = async move {
        for _ in 0..10 {
            let served = router.read(&city, &Consistency::Any, &query).await.unwrap();
            assert_ne!(served.node, Node::Replica(victim.clone()));
            assert!(served.value.is_some());
        }
    };
    with_cleanup(body, start_node(node)).await;
}

/// A replica whose read connections are all taken is loaded, not down: the
/// read that found it busy goes to the primary, and the replica serves the
/// next read once a connection is free.
#[tokio::test]
async fn a_replica_with_every_connection_busy_is_skipped_not_marked_down() {
    let state = prepared().await;
    let shard = state.replicated_shard();
    let (city, query, _) = one_post(&state, "busyreplica").await;
    replicas_caught_up(shard).await;
    let config = region_core::db::ReadConfig {
        max_connections: 1,
        replica_acquire_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let catalog = pool(&state.region().catalog_url).await;
    let router = region_core::db::Router::connect(catalog, &state.region().name, config)
        .await
        .unwrap();
    router.poll_now().await;
    let (_, pools) = router.route(&city).unwrap();
    let mut held = Vec::new();
    for replica in &pools.replicas {
        assert!(
            replica.status().up,
            "{} is not up to begin with",
            replica.url
        );
        held.push(replica.reads.acquire().await.unwrap());
    }

    let served = router.read(&city, &Consistency::Any, &query).await.unwrap();
    assert_eq!(served.node, Node::Primary);
    assert!(served.value.is_some());
    for replica in &pools.replicas {
        assert!(
            replica.status().up,
            "{} was marked down for being busy",
            replica.url
        );
    }

    drop(held);
    let served = router.read(&city, &Consistency::Any, &query).await.unwrap();
    assert!(matches!(served.node, Node::Replica(_)), "{:?}", served.node);
}

/// A read that holds its snapshot for a while, long enough for the primary's
/// VACUUM to remove rows it could still see.
struct SlowCount {
    city: String,
}

impl region_core::db::ReadQuery for SlowCount {
    type Output = i64;
    fn run<'c>(
        &'c self,
        conn: &'c mut sqlx::PgConnection,
    ) -> region_core::db::read::BoxFuture<'c, Result<i64, sqlx::Error>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT count(*) FROM posts, pg_sleep(3) WHERE city = $1")
                .bind(&self.city)
                .fetch_one(conn)
                .await
        })
    }
}

async fn standby_conflicts(url: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (confl_snapshot + confl_lock + confl_bufferpin)::bigint
         FROM pg_stat_database_conflicts WHERE datname = current_database()",
    )
    .fetch_one(&pool(url).await)
    .await
    .unwrap()
}

async fn set_standby_delay(urls: &[String], value: Option<&str>) {
    for url in urls {
        let p = pool(url).await;
        // The stack runs replicas with hot_standby_feedback, which exists to
        // prevent exactly the conflict this test needs: off while it runs.
        let statements = match value {
            Some(v) => vec![
                format!("ALTER SYSTEM SET max_standby_streaming_delay = '{v}'"),
                "ALTER SYSTEM SET hot_standby_feedback = off".to_string(),
            ],
            None => vec![
                "ALTER SYSTEM RESET max_standby_streaming_delay".to_string(),
                "ALTER SYSTEM RESET hot_standby_feedback".to_string(),
            ],
        };
        for sql in statements {
            sqlx::query(&sql).execute(&p).await.unwrap();
        }
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&p)
            .await
            .unwrap();
    }
}

/// Makes the replicas cancel conflicting queries at once (shared nodes:
/// serial, and put back).
#[tokio::test]
async fn serial_a_read_cancelled_by_a_recovery_conflict_is_answered_by_the_primary() {
    let state = prepared().await;
    let shard = state.replicated_shard().clone();
    let urls = shard.replica_urls.clone();
    set_standby_delay(&urls, Some("0")).await;
    // Until the replicas' last feedback is cleared, the primary keeps the
    // rows their queries read and VACUUM cannot conflict.
    let primary = pool(&shard.primary_url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE xmin IS NOT NULL")
                .fetch_one(&primary)
                .await
                .unwrap();
        if held == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a replication slot still holds an xmin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = async move {
        // A conflict needs VACUUM to remove rows the replica's snapshot still
        // sees; another session's old snapshot on the primary can hold them
        // back. Such a round proves nothing either way and is tried again.
        for attempt in 1..=3 {
            let (city, _, _) = one_post(&state, "conflict").await;
            let shard = state.replicated_shard();
            replicas_caught_up(shard).await;
            let mut before = 0;
            for url in &shard.replica_urls {
                before += standby_conflicts(url).await;
            }
            let router = router(state.region()).await;
            let reader = {
                let city = city.clone();
                tokio::spawn(async move {
                    router
                        .read(&city, &Consistency::Any, &SlowCount { city: city.clone() })
                        .await
                })
            };
            // Conflict only once the slow read holds its snapshot on a replica:
            // wait for it there instead of guessing how long a busy machine takes.
            let mut watchers = Vec::new();
            for url in &shard.replica_urls {
                watchers.push(pool(url).await);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            'running: loop {
                for watcher in &watchers {
                    let running: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE state = 'active' AND query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()",
                )
                .fetch_one(watcher)
                .await
                .unwrap();
                    if running > 0 {
                        break 'running;
                    }
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the slow read never started on a replica"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let primary = pool(&shard.primary_url).await;
            sqlx::query("UPDATE posts SET description = description || '.' WHERE city = $1")
                .bind(&city)
                .execute(&primary)
                .await
                .unwrap();
            sqlx::raw_sql("VACUUM posts")
                .execute(&primary)
                .await
                .unwrap();
            let served = reader.await.unwrap().unwrap();
            let mut after = 0;
            for url in &shard.replica_urls {
                after += standby_conflicts(url).await;
            }
            if after == before {
                assert!(
                    attempt < 3,
                    "no recovery conflict happened on the replicas in 3 rounds"
                );
                continue;
            }
            assert_eq!(served.node, Node::Primary);
            assert_eq!(served.value, 1);
            return;
        }
    };
    with_cleanup(body, set_standby_delay(&urls, None)).await;
}
