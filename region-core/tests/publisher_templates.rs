//! A template change re-publishes a city's KV pages (issue 24): against the
//! stack's shard primary, catalog, broker and edge (its signed bulk route
//! and KV service). The city is one of the test's own, so only its posts
//! are re-published.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cityboard_protocol::kv::{BulkWrite, PostMeta, post_key};
use cityboard_test_support::eventually;
use common::*;
use pipeline_common::*;
use region_core::apply::{ApplyConfig, CityBatch, apply};
use region_core::model::post::POST_COLUMNS;
use region_core::model::{Id, Post};
use region_core::roles::publisher::invalidate::Invalidator;
use region_core::roles::publisher::marks::Marks;
use region_core::roles::publisher::metrics::PublisherMetrics;
use region_core::roles::publisher::republish::{self, Republish};
use region_core::roles::publisher::sink::{EdgeBulkSink, KvSink};
use region_core::roles::publisher::{PublisherConfig, PublisherParts, template_version};
use region_core::stack::StackFile;

const LIMIT: Duration = Duration::from_secs(60);

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME"))
}

/// The port of a component of the stack.
fn port(component: &str) -> u16 {
    let text = std::fs::read_to_string(home().join("state.json")).expect("state.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    state["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == component)
        .and_then(|c| c["port"].as_u64())
        .unwrap_or_else(|| panic!("the stack has no {component} component")) as u16
}

fn edge_sink() -> EdgeBulkSink {
    let key = std::fs::read(home().join("secrets/kv-route.key")).expect("kv-route.key");
    EdgeBulkSink::new(
        &format!("http://127.0.0.1:{}", port("edge")),
        key.trim_ascii(),
    )
    .unwrap()
}

/// `post:{id}` as the edge's KV service holds it.
async fn kv(id: i64) -> Option<(String, PostMeta)> {
    let url = format!(
        "http://127.0.0.1:{}/{}?urlencoded=true",
        port("edge-kv"),
        post_key(id as u64)
    );
    let client = region_core::roles::publisher::sink::http_client().unwrap();
    let res = client
        .get(&url)
        .bearer_auth(common::kv_key())
        .send()
        .await
        .expect("the edge's KV service");
    if res.status() == 404 {
        return None;
    }
    let meta = res
        .headers()
        .get("cf-kv-metadata")
        .and_then(|v| v.to_str().ok())
        .map(|m| serde_json::from_str::<PostMeta>(m).expect("post metadata"))
        .expect("a post entry has metadata");
    Some((res.text().await.unwrap(), meta))
}

/// The city's live posts as the primary holds them.
async fn posts(primary: &sqlx::PgPool, city: &str) -> Vec<Post> {
    sqlx::query_as(&format!(
        "SELECT {POST_COLUMNS} FROM posts WHERE city = $1 ORDER BY id"
    ))
    .bind(city)
    .fetch_all(primary)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_template_change_republishes_the_live_pages_of_a_city() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "tpl").await;
    let primary = pool(&shard.primary_url).await;
    let catalog = pool(&region.catalog_url).await;
    let ids = ids(region).await;

    // Three live posts, applied as the writer would; the stack's relay and
    // publisher put their pages in KV with the current template.
    let mut commands = Vec::new();
    for title in ["oak desk", "red bike", "blue lamp"] {
        commands.push(create_command(&ids, &city, Id(42), title).await);
    }
    let batch = [CityBatch {
        city: city.clone(),
        epoch: 1,
        commands,
    }];
    apply(
        &target(shard, primary.clone()),
        &batch,
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    let live = posts(&primary, &city).await;
    assert_eq!(live.len(), 3);
    let current = template_version();
    for p in &live {
        eventually(&format!("post {} published", p.id.0), LIMIT, || async {
            kv(p.id.0)
                .await
                .filter(|(_, m)| m.template == Some(current))
        })
        .await;
    }

    // As if they had been published by a build with another template: the
    // same versions, another template, other bytes; recorded so.
    let old = current.wrapping_add(1);
    let stale: Vec<BulkWrite> = live
        .iter()
        .map(|p| {
            let meta =
                PostMeta::page(&city, p.version, p.expires_at.timestamp()).with_template(old);
            BulkWrite {
                key: post_key(p.id.0 as u64),
                value: "<p>the old template</p>".into(),
                metadata: serde_json::to_value(meta).ok(),
                expiration_ttl: None,
            }
        })
        .collect();
    // KV takes one write a second per key.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = edge_sink().put(&stale).await.unwrap();
    assert_eq!(report.written, 3, "a page of another template replaces one");
    sqlx::query(
        "INSERT INTO published_templates (city, version) VALUES ($1, $2) \
         ON CONFLICT (city) DO UPDATE SET version = EXCLUDED.version",
    )
    .bind(&city)
    .bind(i64::from(old))
    .execute(&catalog)
    .await
    .unwrap();
    for p in &live {
        let (page, meta) = kv(p.id.0).await.expect("a page");
        assert_eq!(
            (page.as_str(), meta.template),
            ("<p>the old template</p>", Some(old))
        );
    }

    // A publisher of the current template starts: it plans the city, and
    // re-publishes its pages beside the (empty) events topic of its own.
    let only = [city.clone()];
    let router = router(region).await;
    let plan = Republish::plan(&catalog, &router, current, Some(&only))
        .await
        .unwrap()
        .expect("the city is recorded with another template");
    assert_eq!(plan.cities_left(), [city.as_str()]);
    let topics = own_topics("tpl", 1).await;
    let mut config = PublisherConfig::new("test");
    config.topic = topics.events.clone();
    config.dead_letters = topics.dead_letters.clone();
    config.group = format!("{}.publisher", topics.events);
    let stack = StackFile::read(&home().join("state.json")).unwrap();
    let parts = PublisherParts {
        sink: Arc::new(edge_sink()),
        cache: Arc::new(Invalidator::new(&stack.regions[0].redis_cache_url)),
        metrics: Arc::new(PublisherMetrics::default()),
        brokers: broker(),
        producer: producer(),
        router: router.clone(),
        marks: Marks::new(catalog.clone()),
        photos: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(region_core::roles::publisher::run_republishing(
        config,
        parts,
        Some(plan),
        async {
            let _ = stopped.await;
        },
    ));

    for p in &live {
        let (page, meta) = eventually(&format!("post {} re-published", p.id.0), LIMIT, || async {
            kv(p.id.0)
                .await
                .filter(|(_, m)| m.template == Some(current))
        })
        .await;
        assert_eq!(page, region_core::render::post_page(p), "post {}", p.id.0);
        assert_eq!(
            meta,
            PostMeta::page(&city, p.version, p.expires_at.timestamp()).with_template(current)
        );
    }
    // The new version is recorded once the pages are written, and a
    // publisher starting again finds nothing to do.
    eventually("the template version recorded", LIMIT, || async {
        let v = republish::recorded(&catalog, &city).await.unwrap();
        (v == Some(i64::from(current))).then_some(())
    })
    .await;
    assert!(
        Republish::plan(&catalog, &router, current, Some(&only))
            .await
            .unwrap()
            .is_none()
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
