//! A local stand-in for Cloudflare KV's REST API, for the production sink
//! (`CloudflareKvSink`): it behaves as Cloudflare's does where it matters to
//! "never older": a bulk write applies every entry, last write wins, with no
//! version check at all; and reads (`values/{key}`, `metadata/{key}`) may be
//! stale: they answer what the namespace held before the latest bulk call.
//! The test reads the namespace's true content through [`KvStandIn::holds`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

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
    /// Every entry written, in order.
    log: Vec<BulkWrite>,
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
    let mut ns = ns.lock().await;
    ns.visible = ns.current.clone();
    let n = writes.len();
    for w in writes {
        ns.log.push(w.clone());
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
        let ns = Shared::default();
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
        let ns = self.ns.lock().await;
        ns.log
            .iter()
            .filter(|w| w.key == key)
            .filter_map(|w| serde_json::from_value(w.metadata.clone()?).ok())
            .collect()
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
