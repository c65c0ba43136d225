//! A local stand-in for Cloudflare KV's REST API, for the production sink
//! (`CloudflareKvSink`): it behaves as Cloudflare's does where it matters to
//! "never older": a bulk write applies every entry, last write wins, with no
//! version check at all; and reads (`values/{key}`, `metadata/{key}`) may be
//! stale: they answer what the namespace held before the latest bulk call.
//! The test reads the namespace's true content through [`KvStandIn::holds`],
//! and what the API saw (every write, when, how many calls at once) through
//! [`KvStandIn::writes_of`] and [`KvStandIn::most_at_once`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use cityboard_protocol::kv::{BulkWrite, PostMeta};
use region_core::roles::publisher::sink::CloudflareKvSink;
use tokio::sync::Mutex;

const ACCOUNT: &str = "acc-test";
const NAMESPACE: &str = "ns-test";
const TOKEN: &str = "token-test";

#[derive(Debug, Default)]
struct Namespace {
    /// What a bulk call last wrote to each key.
    current: HashMap<String, BulkWrite>,
    /// What reads see: `current` as it was before the latest bulk call.
    visible: HashMap<String, BulkWrite>,
    /// Every entry written, in order, with when its call arrived.
    log: Vec<(Instant, BulkWrite)>,
    /// Bulk calls being answered now, and the most there ever were.
    at_once: usize,
    most_at_once: usize,
    /// How long each bulk call takes to answer (a distant API).
    latency: Duration,
}

type Shared = Arc<Mutex<Namespace>>;

/// The stand-in, listening on loopback until the test ends.
pub struct KvStandIn {
    /// Base of its REST API, as `CloudflareKvSink::new` takes it.
    pub api: String,
    ns: Shared,
}

fn envelope(result: serde_json::Value) -> Json<serde_json::Value> {
    Json(serde_json::json!({"success": true, "errors": [], "messages": [], "result": result}))
}

fn authorized(headers: &axum::http::HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn bulk(
    State(ns): State<Shared>,
    Path((account, namespace)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(writes): Json<Vec<BulkWrite>>,
) -> Response {
    if !authorized(&headers) || account != ACCOUNT || namespace != NAMESPACE {
        return StatusCode::FORBIDDEN.into_response();
    }
    let now = Instant::now();
    let latency = {
        let mut ns = ns.lock().await;
        ns.at_once += 1;
        ns.most_at_once = ns.most_at_once.max(ns.at_once);
        ns.latency
    };
    tokio::time::sleep(latency).await;
    let mut ns = ns.lock().await;
    ns.at_once -= 1;
    ns.visible = ns.current.clone();
    let n = writes.len();
    for w in writes {
        ns.log.push((now, w.clone()));
        ns.current.insert(w.key.clone(), w);
    }
    envelope(serde_json::json!({"successful_key_count": n, "unsuccessful_keys": []}))
        .into_response()
}

async fn value(
    State(ns): State<Shared>,
    Path((_, _, key)): Path<(String, String, String)>,
) -> Response {
    match ns.lock().await.visible.get(&key) {
        Some(w) => w.value.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn metadata(
    State(ns): State<Shared>,
    Path((_, _, key)): Path<(String, String, String)>,
) -> Response {
    match ns.lock().await.visible.get(&key) {
        Some(w) => envelope(w.metadata.clone().unwrap_or_default()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl KvStandIn {
    pub async fn start() -> KvStandIn {
        Self::start_with_latency(Duration::ZERO).await
    }

    /// A stand-in whose bulk calls each take `latency` to answer.
    pub async fn start_with_latency(latency: Duration) -> KvStandIn {
        let ns = Shared::new(Mutex::new(Namespace {
            latency,
            ..Namespace::default()
        }));
        let base = "/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}";
        let app = axum::Router::new()
            .route(&format!("{base}/bulk"), put(bulk))
            .route(&format!("{base}/values/{{key}}"), get(value))
            .route(&format!("{base}/metadata/{{key}}"), get(metadata))
            .with_state(ns.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        KvStandIn {
            api: format!("http://{addr}/client/v4"),
            ns,
        }
    }

    /// The production sink, pointed at the stand-in.
    pub fn sink(&self) -> CloudflareKvSink {
        CloudflareKvSink::new(&self.api, ACCOUNT, NAMESPACE, TOKEN).unwrap()
    }

    /// What the namespace holds for `key` (not a possibly stale read).
    pub async fn holds(&self, key: &str) -> Option<(String, PostMeta)> {
        let ns = self.ns.lock().await;
        let w = ns.current.get(key)?;
        let meta = serde_json::from_value(w.metadata.clone()?).expect("post metadata");
        Some((w.value.clone(), meta))
    }

    /// The metadata of every write `key` received, in order.
    pub async fn writes_of(&self, key: &str) -> Vec<PostMeta> {
        self.timed_writes_of(key)
            .await
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// [`writes_of`](Self::writes_of), with when each call arrived.
    pub async fn timed_writes_of(&self, key: &str) -> Vec<(Instant, PostMeta)> {
        let ns = self.ns.lock().await;
        ns.log
            .iter()
            .filter(|(_, w)| w.key == key)
            .filter_map(|(at, w)| Some((*at, serde_json::from_value(w.metadata.clone()?).ok()?)))
            .collect()
    }

    /// The most bulk calls it was answering at once.
    pub async fn most_at_once(&self) -> usize {
        self.ns.lock().await.most_at_once
    }

    /// A read through the API, as a Worker would make it: possibly stale.
    pub async fn read(&self, key: &str) -> Option<String> {
        let res = reqwest::get(format!(
            "{}/accounts/{ACCOUNT}/storage/kv/namespaces/{NAMESPACE}/values/{key}",
            self.api
        ))
        .await
        .unwrap();
        (res.status() == 200).then_some(res.text().await.unwrap())
    }
}
