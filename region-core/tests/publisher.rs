//! The publisher, in process, against the stack's broker, edge (through its
//! signed bulk route), edge KV service, Redis and region catalog (its
//! shard map and KV marks), or the production sink against a local
//! stand-in for Cloudflare KV: each test on an events topic and consumer
//! group of its own, with cities and post ids no other test uses.

#[path = "common/cloudflare_kv.rs"]
mod cloudflare_kv;
mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cityboard_protocol::kv::{BulkWrite, PostMeta, TOMBSTONE_TTL_SECS, post_key};
use cityboard_test_support::eventually;
use pipeline_common::*;
use prometheus_client::metrics::counter::Counter;
use region_core::bus::failpoint::{DEAD_LETTER_SEND, PUBLISHER_AFTER_KV_WRITE};
use region_core::bus::{COMMAND_ID_HEADER, Producer, REASON_HEADER, SOURCE_HEADER, Topics};
use region_core::cache::pages::PageCache;
use region_core::model::event::GoneReason;
use region_core::model::{Event, Id, Post, PostFields, PostStatus};
use region_core::roles::publisher::invalidate::Invalidator;
use region_core::roles::publisher::marks::Marks;
use region_core::roles::publisher::metrics::PublisherMetrics;
use region_core::roles::publisher::sink::{CloudflareKvSink, EdgeBulkSink, KvSink};
use region_core::roles::publisher::{PublisherConfig, PublisherParts};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(60);

/// What the tests need of `state.json` beyond the regions.
struct Stack {
    home: PathBuf,
    state: serde_json::Value,
}

impl Stack {
    fn load() -> Stack {
        let home = PathBuf::from(std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME"));
        let text = std::fs::read_to_string(home.join("state.json")).expect("state.json");
        Stack {
            state: serde_json::from_str(&text).expect("state.json is JSON"),
            home,
        }
    }

    fn port(&self, component: &str) -> u16 {
        self.state["components"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == component)
            .and_then(|c| c["port"].as_u64())
            .unwrap_or_else(|| panic!("the stack has no {component} component")) as u16
    }

    fn apex(&self) -> String {
        self.state["apex"].as_str().expect("apex").to_string()
    }

    fn cache_url(&self) -> String {
        self.state["regions"][0]["redis_cache_url"]
            .as_str()
            .expect("redis_cache_url")
            .to_string()
    }

    /// A new city of the stack's first region, on its first shard: served
    /// by the publishers these tests start.
    async fn city(&self, prefix: &str) -> String {
        let state = common::State::load();
        let region = state.region();
        common::new_city(region, &region.shards[0], prefix).await
    }

    /// A city the edge serves (its host resolves to a region).
    fn served_city(&self) -> String {
        self.state["regions"][0]["shards"][0]["cities"][0]
            .as_str()
            .expect("a city")
            .to_string()
    }

    fn edge_sink(&self) -> EdgeBulkSink {
        let key = std::fs::read(self.home.join("secrets/kv-route.key")).expect("kv-route.key");
        EdgeBulkSink::new(
            &format!("http://127.0.0.1:{}", self.port("edge")),
            key.trim_ascii(),
        )
        .unwrap()
    }

    /// `post:{id}` as the edge's KV service holds it: value and metadata.
    async fn kv(&self, id: u64) -> Option<(String, PostMeta)> {
        let url = format!(
            "http://127.0.0.1:{}/{}?urlencoded=true",
            self.port("edge-kv"),
            post_key(id)
        );
        let res = reqwest::Client::new()
            .get(&url)
            .bearer_auth(common::kv_key())
            .send()
            .await
            .expect("the edge's KV service");
        if res.status() == 404 {
            return None;
        }
        assert_eq!(res.status(), 200, "GET {url}");
        let meta = res
            .headers()
            .get("cf-kv-metadata")
            .and_then(|v| v.to_str().ok())
            .map(|m| serde_json::from_str::<PostMeta>(m).expect("post metadata"))
            .expect("a post entry has metadata");
        Some((res.text().await.unwrap(), meta))
    }

    /// The version KV holds for `id`, once it is at least `version`.
    async fn kv_at(&self, id: u64, version: i64) -> (String, PostMeta) {
        eventually(&format!("post:{id} at v{version}"), LIMIT, || async {
            self.kv(id).await.filter(|(_, m)| m.version >= version)
        })
        .await
    }
}

/// An id no real post and no other test has.
fn fresh_id() -> i64 {
    8_200_000_000_000 + i64::from(rand::random::<u32>())
}

fn post(city: &str, id: i64, version: i64, title: &str) -> Post {
    let now = chrono::Utc::now();
    Post {
        city: city.into(),
        id: Id(id),
        user_id: Id(42),
        fields: PostFields {
            category: "for-sale".into(),
            title: title.into(),
            description: "solid oak".into(),
            price: Some(40),
            location: None,
            image_count: 0,
        },
        status: PostStatus::Live,
        version,
        created_at: now,
        updated_at: now,
        expires_at: now + chrono::Duration::days(7),
        listed_at: now,
        photos: Vec::new(),
    }
}

async fn emit(producer: &Producer, topic: &str, event: &Event) {
    let payload = serde_json::to_vec(event).unwrap();
    producer
        .produce(topic, event.city(), &payload, &[])
        .await
        .unwrap();
}

async fn changed(producer: &Producer, topic: &str, p: &Post) {
    let event = Event::PostChanged {
        command_id: Id(fresh_id()),
        request_id: None,
        post: Box::new(p.clone()),
    };
    emit(producer, topic, &event).await;
}

/// A publisher running in this process.
struct RunningPublisher {
    metrics: Arc<PublisherMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningPublisher {
    /// A publisher of the stack's first region on `topics` (events in, dead
    /// letters out) with consumer group `group` (the same group again
    /// resumes from its committed offsets, as a restarted role does).
    async fn start<S: KvSink>(
        stack: &Stack,
        sink: S,
        topics: &Topics,
        group: &str,
    ) -> RunningPublisher {
        Self::start_with(stack, sink, topics, group, |_| {}).await
    }

    async fn start_with<S: KvSink>(
        stack: &Stack,
        sink: S,
        topics: &Topics,
        group: &str,
        tune: impl FnOnce(&mut PublisherConfig),
    ) -> RunningPublisher {
        let state = common::State::load();
        let region = state.region();
        let mut config = PublisherConfig::new(&region.name);
        config.topic = topics.events.clone();
        config.dead_letters = topics.dead_letters.clone();
        config.group = group.to_string();
        config.retry_max = Duration::from_millis(500);
        tune(&mut config);
        let metrics = Arc::new(PublisherMetrics::default());
        let parts = PublisherParts {
            sink: Arc::new(sink),
            cache: Arc::new(Invalidator::new(&stack.cache_url())),
            metrics: metrics.clone(),
            brokers: broker(),
            producer: producer(),
            router: common::router(region).await,
            marks: Marks::new(common::pool(&region.catalog_url).await),
            photos: None,
        };
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(region_core::roles::publisher::publish_events(
            config,
            parts,
            async {
                let _ = rx.await;
            },
        ));
        RunningPublisher {
            metrics,
            stop: Some(tx),
            task,
        }
    }

    fn count(&self, f: impl Fn(&PublisherMetrics) -> &Counter) -> u64 {
        f(&self.metrics).get()
    }

    fn stuck(&self) -> i64 {
        self.metrics.dead_letter_stuck.get()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    async fn ended(self) -> anyhow::Result<()> {
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the publisher did not end")
            .unwrap()
    }
}

#[tokio::test]
async fn a_new_post_becomes_its_origin_page_in_kv_and_the_edge_serves_it() {
    let stack = Stack::load();
    let topics = own_topics("pub-new", 2).await;
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let city = stack.served_city();
    let p = post(&city, fresh_id(), 1, "oak desk");
    changed(&producer(), &topics.events, &p).await;

    let (page, meta) = stack.kv_at(p.id.0 as u64, 1).await;
    assert_eq!(
        page,
        region_core::render::post_page(&p),
        "the origin's template"
    );
    assert_eq!(
        meta,
        PostMeta::page(&city, 1, p.expires_at.timestamp())
            .with_template(region_core::roles::publisher::template_version()),
        "version, expiry and template in the metadata"
    );
    // The edge serves it from KV.
    let edge = stack.port("edge");
    let host = format!("{city}.{}:{edge}", stack.apex());
    let res = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{edge}/post/{}", p.id))
        .header("host", host)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), page);
    assert_eq!(publisher.count(|m| &m.written), 1);
    publisher.stop().await;
}

#[tokio::test]
async fn an_older_event_replayed_after_a_newer_one_changes_nothing() {
    let stack = Stack::load();
    let topics = own_topics("pub-older", 1).await;
    let city = stack.city("pub-older").await;
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let producer = producer();
    let id = fresh_id();
    changed(&producer, &topics.events, &post(&city, id, 2, "v2")).await;
    stack.kv_at(id as u64, 2).await;
    // The relay re-sending an old row, or a replay after a crash.
    changed(&producer, &topics.events, &post(&city, id, 1, "v1")).await;
    // A later event of another post: once it is in KV, v1 was read too
    // (one partition, in order).
    let marker = fresh_id();
    changed(&producer, &topics.events, &post(&city, marker, 1, "m")).await;
    stack.kv_at(marker as u64, 1).await;
    let (page, meta) = stack.kv(id as u64).await.unwrap();
    assert_eq!(meta.version, 2);
    assert!(page.contains("<h1>v2</h1>"), "{page}");
    assert_eq!(publisher.count(|m| &m.stale), 1);
    assert_eq!(publisher.count(|m| &m.written), 2, "v2 and the marker");
    publisher.stop().await;
}

#[tokio::test]
async fn a_gone_post_becomes_a_tombstone_for_every_reason() {
    let stack = Stack::load();
    let topics = own_topics("pub-gone", 2).await;
    let city = stack.city("pub-gone").await;
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let producer = producer();
    let reasons = [
        GoneReason::Deleted,
        GoneReason::Hidden,
        GoneReason::Expired,
        GoneReason::UserDeleted,
    ];
    let mut ids = Vec::new();
    for reason in reasons {
        let id = fresh_id();
        changed(&producer, &topics.events, &post(&city, id, 1, "x")).await;
        stack.kv_at(id as u64, 1).await;
        let gone = Event::PostGone {
            command_id: Id(fresh_id()),
            request_id: None,
            city: city.clone(),
            post_id: Id(id),
            version: 2,
            reason,
        };
        emit(&producer, &topics.events, &gone).await;
        ids.push(id);
    }
    for id in ids {
        let (value, meta) = stack.kv_at(id as u64, 2).await;
        assert_eq!(meta, PostMeta::tombstone(2));
        assert_eq!(value, "", "a tombstone has no page");
    }
    assert_eq!(publisher.count(|m| &m.written), 8);
    publisher.stop().await;
}

#[tokio::test]
async fn versions_within_a_second_make_one_kv_write_of_the_last() {
    let stack = Stack::load();
    let topics = own_topics("pub-coalesce", 1).await;
    let city = stack.city("pub-coalesce").await;
    let producer = producer();
    let id = fresh_id();
    for v in 1..=5 {
        changed(
            &producer,
            &topics.events,
            &post(&city, id, v, &format!("v{v}")),
        )
        .await;
    }
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let (page, _) = stack.kv_at(id as u64, 5).await;
    assert!(page.contains("<h1>v5</h1>"));
    assert_eq!(publisher.count(|m| &m.consumed), 5);
    assert_eq!(publisher.count(|m| &m.written), 1, "one write");
    assert_eq!(publisher.count(|m| &m.coalesced), 4);

    // Edits a page already written less than a second ago wait for the
    // second to pass, then go as one write.
    let t0 = std::time::Instant::now();
    for v in 6..=8 {
        changed(
            &producer,
            &topics.events,
            &post(&city, id, v, &format!("v{v}")),
        )
        .await;
    }
    stack.kv_at(id as u64, 8).await;
    assert_eq!(publisher.count(|m| &m.written), 2);
    eprintln!("v6..v8 visible after {:?}", t0.elapsed());
    publisher.stop().await;
}

#[tokio::test]
async fn a_written_page_drops_its_citys_cached_listing_and_search_pages() {
    let stack = Stack::load();
    let topics = own_topics("pub-cache", 1).await;
    let city = stack.city("pub-cache").await;
    let other = common::unique_city("pub-cache");
    let mut redis = redis::Client::open(stack.cache_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = [
        PageCache::key(&city, "all|None|20|false"),
        PageCache::key(&city, "search=desk|None|20|true"),
    ];
    let kept = PageCache::key(&other, "all|None|20|false");
    for k in keys.iter().chain([&kept]) {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("page")
            .arg("EX")
            .arg(300)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let id = fresh_id();
    changed(&producer(), &topics.events, &post(&city, id, 1, "desk")).await;
    stack.kv_at(id as u64, 1).await;
    eventually("the city's pages gone", LIMIT, || {
        let mut redis = redis.clone();
        let keys = keys.clone();
        async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&keys[..])
                .query_async(&mut redis)
                .await
                .unwrap();
            (n == 0).then_some(())
        }
    })
    .await;
    let n: i64 = redis::cmd("EXISTS")
        .arg(&kept)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(n, 1, "another city's page stays");
    assert_eq!(publisher.count(|m| &m.invalidate_failures), 0);
    publisher.stop().await;
}

#[tokio::test]
async fn an_unreachable_kv_is_retried_and_its_events_stay_uncommitted() {
    let stack = Stack::load();
    let topics = own_topics("pub-down", 1).await;
    let city = stack.city("pub-down").await;
    let id = fresh_id();
    changed(&producer(), &topics.events, &post(&city, id, 1, "desk")).await;
    // Nothing listens on port 9 (discard) of loopback.
    let key = std::fs::read(stack.home.join("secrets/kv-route.key")).unwrap();
    let dead = EdgeBulkSink::new("http://127.0.0.1:9", key.trim_ascii()).unwrap();
    let publisher = RunningPublisher::start(&stack, dead, &topics, "p").await;
    eventually("retried failures", LIMIT, || async {
        (publisher.count(|m| &m.failures) >= 2).then_some(())
    })
    .await;
    assert_eq!(publisher.count(|m| &m.written), 0);
    publisher.stop().await;
    // The same group resumes before the event: it was never committed.
    let again = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    stack.kv_at(id as u64, 1).await;
    assert_eq!(again.count(|m| &m.consumed), 1);
    again.stop().await;
}

#[tokio::test]
async fn a_crash_after_the_kv_write_redelivers_and_ends_with_the_right_page() {
    let stack = Stack::load();
    let topics = own_topics("pub-crash", 1).await;
    let city = stack.city("pub-crash").await;
    let producer = producer();
    let id = fresh_id();
    changed(&producer, &topics.events, &post(&city, id, 1, "v1")).await;
    fail::cfg(PUBLISHER_AFTER_KV_WRITE, "1*return(error)").unwrap();
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let err = publisher.ended().await.unwrap_err();
    assert!(
        err.to_string().contains(PUBLISHER_AFTER_KV_WRITE),
        "{err:#}"
    );
    assert_eq!(stack.kv(id as u64).await.map(|(_, m)| m.version), Some(1));

    changed(&producer, &topics.events, &post(&city, id, 2, "v2")).await;
    let again = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let (page, _) = stack.kv_at(id as u64, 2).await;
    assert!(page.contains("<h1>v2</h1>"), "{page}");
    assert_eq!(
        again.count(|m| &m.consumed),
        2,
        "v1 delivered again (its offset was never committed), then v2"
    );
    again.stop().await;
}

/// One request as the local stand-in for Cloudflare received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: serde_json::Value,
}

#[tokio::test]
async fn the_cloudflare_sink_puts_the_bulk_api_request() {
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};
    let seen: Arc<tokio::sync::Mutex<Vec<Received>>> = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Arc<tokio::sync::Mutex<Vec<Received>>>>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: axum::body::Bytes| async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                seen.lock().await.push(Received {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    authorization: header("authorization"),
                    content_type: header("content-type"),
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                let failed = if seen.lock().await.len() > 1 {
                    vec!["post:2"]
                } else {
                    vec![]
                };
                axum::Json(serde_json::json!({
                    "success": true, "errors": [], "messages": [],
                    "result": {"successful_key_count": 2 - failed.len(), "unsuccessful_keys": failed}
                }))
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sink =
        CloudflareKvSink::new(&format!("http://{addr}/client/v4"), "acc1", "ns1", "tok").unwrap();
    let meta = PostMeta::page("boston", 3, 1_900_000_000);
    let writes = vec![
        BulkWrite {
            key: "post:1".into(),
            value: "<p>page</p>".into(),
            metadata: Some(serde_json::to_value(&meta).unwrap()),
            expiration_ttl: None,
        },
        BulkWrite {
            key: "post:2".into(),
            value: String::new(),
            metadata: Some(serde_json::to_value(PostMeta::tombstone(4)).unwrap()),
            expiration_ttl: Some(TOMBSTONE_TTL_SECS),
        },
    ];
    let report = sink.put(&writes).await.unwrap();
    assert_eq!((report.written, report.retry.len()), (2, 0));
    let got = seen.lock().await[0].clone();
    assert_eq!(got.method, "PUT");
    assert_eq!(
        got.path,
        "/client/v4/accounts/acc1/storage/kv/namespaces/ns1/bulk"
    );
    assert_eq!(got.authorization, "Bearer tok");
    assert_eq!(got.content_type, "application/json");
    assert_eq!(
        got.body,
        serde_json::json!([
            {"key": "post:1", "value": "<p>page</p>",
             "metadata": {"version": 3, "city": "boston", "expires_at": 1_900_000_000}},
            {"key": "post:2", "value": "", "metadata": {"version": 4, "gone": true},
             "expiration_ttl": TOMBSTONE_TTL_SECS}
        ])
    );
    // Keys Cloudflare did not take come back to be retried.
    let report = sink.put(&writes).await.unwrap();
    assert_eq!(report.retry, vec!["post:2".to_string()]);
    assert_eq!(report.written, 1);
}

/// Emits a page for a post of `city` no other test knows, and waits until
/// KV has it: every event emitted before it on the same partition (one
/// partition topics) has been handled by then.
async fn marker(stack: &Stack, topics: &Topics, city: &str) {
    let id = fresh_id();
    changed(&producer(), &topics.events, &post(city, id, 1, "marker")).await;
    stack.kv_at(id as u64, 1).await;
}

#[tokio::test]
async fn an_unreadable_event_lands_in_the_dead_letter_topic_with_its_reason() {
    let stack = Stack::load();
    let topics = own_topics("pub-unreadable", 1).await;
    let city = stack.city("pub-unreadable").await;
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let producer = producer();
    let garbage: [&[u8]; 2] = [b"\xff not json", br#"{"type":"post_renamed","city":"x"}"#];
    for payload in garbage {
        producer
            .produce(&topics.events, &city, payload, &[])
            .await
            .unwrap();
    }
    // The partition goes on past them.
    marker(&stack, &topics, &city).await;

    let letters = read_until(&topics.dead_letters, LIMIT, |r| r.len() >= 2).await;
    for (i, (letter, payload)) in letters.iter().zip(garbage).enumerate() {
        assert_eq!(letter.payload, payload, "copied byte for byte");
        assert_eq!(letter.key, city);
        let reason = letter.header(REASON_HEADER).expect("a reason");
        assert!(reason.starts_with("unreadable event: "), "{reason}");
        assert_eq!(
            letter.header(SOURCE_HEADER),
            Some(format!("{}/0/{i}", topics.events).as_str())
        );
    }
    assert_eq!(publisher.count(|m| &m.unreadable), 2);
    assert_eq!(publisher.count(|m| &m.dead_lettered), 2);
    assert_eq!(publisher.stuck(), 0);
    publisher.stop().await;

    // Their offsets were committed with the marker's: a restart reads
    // only what comes after.
    let again = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    marker(&stack, &topics, &city).await;
    assert_eq!(again.count(|m| &m.consumed), 1);
    assert_eq!(again.count(|m| &m.unreadable), 0);
    again.stop().await;
}

#[tokio::test]
async fn an_event_of_a_city_this_region_no_longer_serves_is_dead_lettered_not_written() {
    let stack = Stack::load();
    let topics = own_topics("pub-moved", 1).await;
    let city = stack.city("pub-moved").await;
    let moved = stack.city("pub-moved").await;
    let state = common::State::load();
    // The city moved to another region (as a cross-region cutover leaves
    // the map); `never` was never this region's.
    sqlx::query("UPDATE shard_map SET region = 'elsewhere', epoch = epoch + 1 WHERE city = $1")
        .bind(&moved)
        .execute(&common::pool(&state.region().catalog_url).await)
        .await
        .unwrap();
    let never = common::unique_city("pub-never");
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics, "p").await;
    let producer = producer();
    let (a, b) = (fresh_id(), fresh_id());
    changed(&producer, &topics.events, &post(&moved, a, 1, "old page")).await;
    let gone = Event::PostGone {
        command_id: Id(fresh_id()),
        request_id: None,
        city: never.clone(),
        post_id: Id(b),
        version: 2,
        reason: GoneReason::Deleted,
    };
    emit(&producer, &topics.events, &gone).await;
    marker(&stack, &topics, &city).await;

    assert_eq!(stack.kv(a as u64).await, None, "nothing written for it");
    assert_eq!(stack.kv(b as u64).await, None);
    let letters = read_until(&topics.dead_letters, LIMIT, |r| r.len() >= 2).await;
    let region = &state.region().name;
    for (letter, c) in letters.iter().zip([&moved, &never]) {
        assert_eq!(
            letter.header(REASON_HEADER),
            Some(format!("city {c} is not served by region {region}").as_str())
        );
        assert_eq!(&letter.key, c);
        assert!(letter.header(COMMAND_ID_HEADER).is_some());
    }
    assert_eq!(letters[1].payload, serde_json::to_vec(&gone).unwrap());
    assert_eq!(publisher.count(|m| &m.not_served), 2);
    assert_eq!(publisher.count(|m| &m.dead_lettered), 2);
    publisher.stop().await;
}

#[tokio::test]
async fn a_dead_letter_the_broker_does_not_take_is_bounded_and_alerts_until_it_is_sent() {
    let stack = Stack::load();
    let topics = own_topics("pub-stuck", 1).await;
    let city = stack.city("pub-stuck").await;
    fail::cfg(DEAD_LETTER_SEND, "return").unwrap();
    let publisher = RunningPublisher::start_with(&stack, stack.edge_sink(), &topics, "p", |c| {
        c.dead_letter_deadline = Duration::from_secs(1);
    })
    .await;
    producer()
        .produce(&topics.events, &city, b"not an event", &[])
        .await
        .unwrap();
    eventually("the stuck gauge", LIMIT, || async {
        (publisher.stuck() == 1).then_some(())
    })
    .await;
    assert!(publisher.count(|m| &m.dead_letter_send_failures) >= 1);
    assert_eq!(publisher.count(|m| &m.dead_lettered), 0);

    fail::remove(DEAD_LETTER_SEND);
    eventually("the letter sent after all", LIMIT, || async {
        (publisher.stuck() == 0 && publisher.count(|m| &m.dead_lettered) == 1).then_some(())
    })
    .await;
    let letters = read_until(&topics.dead_letters, LIMIT, |r| !r.is_empty()).await;
    assert_eq!(letters[0].payload, b"not an event");
    // The partition resumed: a later event is written.
    marker(&stack, &topics, &city).await;
    publisher.stop().await;
}

/// Page v1, then the post deleted (tombstone v2), written by a publisher
/// that then stops; the same `post_changed` v1 produced again (a duplicate
/// after a producer retry, or an old batch replayed); a new publisher of the
/// same group, whose memory is empty, reads it.
async fn tombstone_then_duplicate_after_a_restart<S: KvSink, T: KvSink>(
    stack: &Stack,
    topics: &Topics,
    city: &str,
    (first, second): (S, T),
    written: impl AsyncFn(u64) -> Option<PostMeta>,
) -> (u64, RunningPublisher) {
    let producer = producer();
    let id = fresh_id();
    let created = post(city, id, 1, "desk");
    changed(&producer, &topics.events, &created).await;
    let gone = Event::PostGone {
        command_id: Id(fresh_id()),
        request_id: None,
        city: city.to_string(),
        post_id: Id(id),
        version: 2,
        reason: GoneReason::Deleted,
    };
    let publisher = RunningPublisher::start(stack, first, topics, "p").await;
    eventually("page v1", LIMIT, || async {
        written(id as u64).await.filter(|m| m.version == 1)
    })
    .await;
    emit(&producer, &topics.events, &gone).await;
    eventually("tombstone v2", LIMIT, || async {
        written(id as u64).await.filter(|m| m.gone)
    })
    .await;
    publisher.stop().await;

    changed(&producer, &topics.events, &created).await;
    let again = RunningPublisher::start(stack, second, topics, "p").await;
    (id as u64, again)
}

#[tokio::test]
async fn a_duplicate_post_created_after_a_tombstone_and_a_restart_leaves_the_tombstone_in_local_kv()
{
    let stack = Stack::load();
    let topics = own_topics("pub-dup-local", 1).await;
    let city = stack.city("pub-dup-local").await;
    let sinks = (stack.edge_sink(), stack.edge_sink());
    let kv = async |id| stack.kv(id).await.map(|(_, m)| m);
    let (id, again) =
        tombstone_then_duplicate_after_a_restart(&stack, &topics, &city, sinks, kv).await;
    marker(&stack, &topics, &city).await;
    assert_eq!(
        stack.kv(id).await,
        Some((String::new(), PostMeta::tombstone(2)))
    );
    assert_eq!(
        again.count(|m| &m.skipped_older),
        1,
        "refused by its durable mark"
    );
    assert_eq!(again.count(|m| &m.written), 1, "the marker only");
    again.stop().await;
}

#[tokio::test]
async fn a_duplicate_post_created_after_a_tombstone_and_a_restart_leaves_the_tombstone_in_cloudflare_kv()
 {
    let stack = Stack::load();
    let topics = own_topics("pub-dup-cf", 1).await;
    let city = stack.city("pub-dup-cf").await;
    let cf = cloudflare_kv::KvStandIn::start().await;
    let holds = async |id| cf.holds(&post_key(id)).await.map(|(_, m)| m);
    let (id, again) = tombstone_then_duplicate_after_a_restart(
        &stack,
        &topics,
        &city,
        (cf.sink(), cf.sink()),
        holds,
    )
    .await;
    // A later event of another post: once it is in KV, the duplicate was
    // read (one partition, in order).
    let marker = fresh_id();
    changed(&producer(), &topics.events, &post(&city, marker, 1, "m")).await;
    eventually("the marker", LIMIT, || async {
        cf.holds(&post_key(marker as u64)).await
    })
    .await;
    let key = post_key(id);
    assert_eq!(
        cf.holds(&key).await,
        Some((String::new(), PostMeta::tombstone(2)))
    );
    let writes = cf.writes_of(&key).await;
    assert_eq!(
        writes
            .iter()
            .map(|m| (m.version, m.gone))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)],
        "the duplicate never reached the API"
    );
    assert_eq!(again.count(|m| &m.skipped_older), 1);
    assert_eq!(
        Marks::new(common::pool(&common::State::load().region().catalog_url).await)
            .of(&key)
            .await
            .unwrap(),
        Some(PostMeta::tombstone(2))
    );

    // Restoring the post (a newer version) still replaces the tombstone.
    let mut restored = post(&city, id as i64, 3, "desk again");
    restored.updated_at = chrono::Utc::now();
    changed(&producer(), &topics.events, &restored).await;
    let (page, meta) = eventually("the restored page", LIMIT, || async {
        cf.holds(&key).await.filter(|(_, m)| m.version == 3)
    })
    .await;
    assert!(!meta.gone);
    assert!(page.contains("desk again"), "{page}");
    // Reads may lag a bulk call behind, as Cloudflare's do; the stand-in
    // serves them.
    assert!(cf.read(&key).await.is_some());
    again.stop().await;
}

#[tokio::test]
async fn several_bulk_writes_go_at_once_for_distinct_keys_and_each_key_keeps_its_order() {
    let stack = Stack::load();
    let topics = own_topics("pub-parallel", 1).await;
    let city = stack.city("pub-parallel").await;
    let producer = producer();
    // One key edited three times among 600 posts of other keys, all
    // waiting before the publisher starts (a backlog).
    let edited = fresh_id();
    let others: Vec<i64> = (0..600).map(|_| fresh_id()).collect();
    for (i, id) in others.iter().enumerate() {
        if i % 200 == 0 {
            let v = i64::try_from(i / 200).unwrap() + 1;
            changed(
                &producer,
                &topics.events,
                &post(&city, edited, v, &format!("v{v}")),
            )
            .await;
        }
        changed(&producer, &topics.events, &post(&city, *id, 1, "other")).await;
    }
    // Calls that take a while to answer, as a distant API's do.
    let cf = cloudflare_kv::KvStandIn::start_with_latency(Duration::from_millis(300)).await;
    let publisher = RunningPublisher::start_with(&stack, cf.sink(), &topics, "p", |c| {
        c.batch_max = 50;
        c.max_in_flight = 4;
    })
    .await;
    for id in &others {
        eventually("every page", LIMIT, || async {
            cf.holds(&post_key(*id as u64)).await
        })
        .await;
    }
    let key = post_key(edited as u64);
    eventually("the last edit", LIMIT, || async {
        cf.holds(&key).await.filter(|(_, m)| m.version == 3)
    })
    .await;
    let most = cf.most_at_once().await;
    assert!((2..=4).contains(&most), "{most} bulk calls at once");
    // The edited key: its versions in order, one write a second at most.
    let writes = cf.timed_writes_of(&key).await;
    let versions: Vec<i64> = writes.iter().map(|(_, m)| m.version).collect();
    assert!(versions.is_sorted_by(|a, b| a < b), "{versions:?}");
    for pair in writes.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_secs(1), "two writes {gap:?} apart");
    }
    assert_eq!(publisher.count(|m| &m.written), 600 + versions.len() as u64);
    publisher.stop().await;
}
