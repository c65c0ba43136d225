//! The publisher, in process, against the stack's broker, edge (through its
//! signed bulk route), edge KV service and Redis: each test on an events
//! topic and consumer group of its own, with post ids no other test uses.

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
use region_core::bus::Producer;
use region_core::bus::failpoint::PUBLISHER_AFTER_KV_WRITE;
use region_core::cache::pages::PageCache;
use region_core::model::event::GoneReason;
use region_core::model::{Event, Id, Post, PostFields, PostStatus};
use region_core::roles::publisher::invalidate::Invalidator;
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
        post: p.clone(),
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
    fn start<S: KvSink>(stack: &Stack, sink: S, topic: &str, group: &str) -> RunningPublisher {
        let mut config = PublisherConfig::new("test");
        config.topic = topic.to_string();
        config.group = group.to_string();
        config.retry_max = Duration::from_millis(500);
        let metrics = Arc::new(PublisherMetrics::default());
        let parts = PublisherParts {
            sink: Arc::new(sink),
            cache: Arc::new(Invalidator::new(&stack.cache_url())),
            metrics: metrics.clone(),
            brokers: broker(),
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
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
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
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
    let producer = producer();
    let id = fresh_id();
    changed(&producer, &topics.events, &post("pub-older", id, 2, "v2")).await;
    stack.kv_at(id as u64, 2).await;
    // The relay re-sending an old row, or a replay after a crash.
    changed(&producer, &topics.events, &post("pub-older", id, 1, "v1")).await;
    // A later event of another post: once it is in KV, v1 was read too
    // (one partition, in order).
    let marker = fresh_id();
    changed(
        &producer,
        &topics.events,
        &post("pub-older", marker, 1, "m"),
    )
    .await;
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
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
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
        changed(&producer, &topics.events, &post("pub-gone", id, 1, "x")).await;
        stack.kv_at(id as u64, 1).await;
        let gone = Event::PostGone {
            command_id: Id(fresh_id()),
            city: "pub-gone".into(),
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
    let producer = producer();
    let id = fresh_id();
    for v in 1..=5 {
        changed(
            &producer,
            &topics.events,
            &post("pub-co", id, v, &format!("v{v}")),
        )
        .await;
    }
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
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
            &post("pub-co", id, v, &format!("v{v}")),
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
    let city = common::unique_city("pub-cache");
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
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
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
    let id = fresh_id();
    changed(
        &producer(),
        &topics.events,
        &post("pub-down", id, 1, "desk"),
    )
    .await;
    // Nothing listens on port 9 (discard) of loopback.
    let key = std::fs::read(stack.home.join("secrets/kv-route.key")).unwrap();
    let dead = EdgeBulkSink::new("http://127.0.0.1:9", key.trim_ascii()).unwrap();
    let publisher = RunningPublisher::start(&stack, dead, &topics.events, "p");
    eventually("retried failures", LIMIT, || async {
        (publisher.count(|m| &m.failures) >= 2).then_some(())
    })
    .await;
    assert_eq!(publisher.count(|m| &m.written), 0);
    publisher.stop().await;
    // The same group resumes before the event: it was never committed.
    let again = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
    stack.kv_at(id as u64, 1).await;
    assert_eq!(again.count(|m| &m.consumed), 1);
    again.stop().await;
}

#[tokio::test]
async fn a_crash_after_the_kv_write_redelivers_and_ends_with_the_right_page() {
    let stack = Stack::load();
    let topics = own_topics("pub-crash", 1).await;
    let producer = producer();
    let id = fresh_id();
    changed(&producer, &topics.events, &post("pub-crash", id, 1, "v1")).await;
    fail::cfg(PUBLISHER_AFTER_KV_WRITE, "1*return(error)").unwrap();
    let publisher = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
    let err = publisher.ended().await.unwrap_err();
    assert!(
        err.to_string().contains(PUBLISHER_AFTER_KV_WRITE),
        "{err:#}"
    );
    assert_eq!(stack.kv(id as u64).await.map(|(_, m)| m.version), Some(1));

    changed(&producer, &topics.events, &post("pub-crash", id, 2, "v2")).await;
    let again = RunningPublisher::start(&stack, stack.edge_sink(), &topics.events, "p");
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
