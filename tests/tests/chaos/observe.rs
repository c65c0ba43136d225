//! What the chaos test reads back from the stack: the posts on the shard
//! primaries, the outbox, and the edge's KV (its service, read directly).

use std::collections::HashMap;

use cityboard_deploy::edge_kv;
use cityboard_protocol::kv::{PostMeta, post_key};
use cityboard_tests::StackState;
use serde_json::json;

/// A post row of a shard primary.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub city: String,
    pub title: String,
    pub price: Option<i64>,
    pub status: String,
    pub version: i64,
}

/// Every post row of every shard primary (duplicates kept: the checks
/// count them).
pub async fn rows(state: &StackState) -> Vec<Row> {
    let mut all = Vec::new();
    for shard in state.regions.iter().flat_map(|r| &r.shards) {
        let db = cityboard_tests::pg(&shard.primary_url).await;
        let found: Vec<(i64, String, String, Option<i64>, String, i64)> =
            sqlx::query_as("SELECT id, city, title, price, status, version FROM posts")
                .fetch_all(&db)
                .await
                .expect("read the posts");
        db.close().await;
        all.extend(
            found
                .into_iter()
                .map(|(id, city, title, price, status, version)| Row {
                    id: id as u64,
                    city,
                    title,
                    price,
                    status,
                    version,
                }),
        );
    }
    all
}

/// Outbox rows not yet relayed, all shards.
pub async fn outbox_len(state: &StackState) -> i64 {
    let mut n = 0;
    for shard in state.regions.iter().flat_map(|r| &r.shards) {
        let db = cityboard_tests::pg(&shard.primary_url).await;
        n += sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&db)
            .await
            .expect("count the outbox");
        db.close().await;
    }
    n
}

/// A post's KV entry: its metadata and page.
#[derive(Debug, Clone)]
pub struct KvEntry {
    pub meta: PostMeta,
    pub page: String,
}

/// The KV entries of `ids` (absent ones left out), 100 per bulk get.
pub async fn kv_entries(kv: &edge_kv::Client, ids: &[u64]) -> HashMap<u64, KvEntry> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(100) {
        let keys: Vec<String> = chunk.iter().map(|id| post_key(*id)).collect();
        let body = json!({"keys": keys, "type": "text", "withMetadata": true}).to_string();
        let r = kv
            .request("POST", "/bulk/get", &[], body.as_bytes())
            .await
            .expect("edge-kv answers");
        assert_eq!(r.status, 200, "edge-kv bulk get: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("bulk get JSON");
        for (id, key) in chunk.iter().zip(&keys) {
            let entry = &v[key];
            if entry.is_null() {
                continue;
            }
            let meta: PostMeta =
                serde_json::from_value(entry["metadata"].clone()).expect("post metadata");
            let page = entry["value"].as_str().unwrap_or("").to_string();
            out.insert(*id, KvEntry { meta, page });
        }
    }
    out
}

/// Every post id KV holds an entry for.
pub async fn kv_post_ids(kv: &edge_kv::Client) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/?prefix=post%3A&key_count_limit=1000".to_string();
        if let Some(c) = &cursor {
            let c: String = c
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            path.push_str(&format!("&cursor={c}"));
        }
        let r = kv
            .request("GET", &path, &[], b"")
            .await
            .expect("edge-kv answers");
        assert_eq!(r.status, 200, "edge-kv list: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("list JSON");
        for k in v["keys"].as_array().into_iter().flatten() {
            if let Some(id) = k["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("post:"))
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        match (v["list_complete"].as_bool(), v["cursor"].as_str()) {
            (Some(false), Some(c)) => cursor = Some(c.to_string()),
            _ => return ids,
        }
    }
}
