//! The internal bulk KV route (`POST /__cityboard/kv/bulk`): the publisher's
//! way to write KV in local runs, shaped like Cloudflare's REST bulk API.
//!
//! Off unless `KV_ROUTE_KEY` is set (404 then, as if it did not exist).
//! Requests are signed with the same scheme as forwarded requests but their
//! own key, in either version (a publisher of before version 2 signs
//! version 1; version 2 also covers the `Content-Type`); a forged or stale
//! signature is a 401, and so is a replayed one:
//! seen nonces are kept in KV (`nonce:{kid}:{nonce}`) for the validity
//! window. KV is eventually consistent, so two copies of one request racing
//! through different edge locations could both pass; locally (one KV
//! service) and for the publisher's sequential calls that does not happen,
//! and a replayed write is harmless anyway (`replaces` makes it a no-op). Each write goes in
//! only if `replaces(existing, new)` holds, so a late or replayed older
//! version never overwrites a newer page or brings back a tombstone.

use std::collections::HashMap;

use cityboard_protocol::kv::{
    BULK_MAX_WRITES, BulkResult, BulkWrite, PostMeta, TOMBSTONE_TTL_SECS, post_id_of_key, replaces,
};
use cityboard_protocol::sign::{self, Keyring, NONCE_TTL_SECS, SIGNATURE_HEADER};
use futures_util::future::join_all;
use web_sys::Response;
use worker::{Env, KvStore};

use crate::body;
use crate::clock;
use crate::config::{self, Config};
use crate::error::EdgeError;
use crate::incoming::Incoming;
use crate::origin::PAGES_BINDING;
use crate::respond;

/// Most bytes in one request body.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// KV's shortest expiration TTL: a shorter one asked for is raised to it.
const MIN_TTL_SECS: u64 = 60;
/// Keys written at once.
const CONCURRENCY: usize = 32;

/// Handles the bulk route.
pub async fn handle(req: &Incoming, config: &Config, env: &Env) -> Result<Response, EdgeError> {
    let Some(current) = config.kv_route_key.clone() else {
        return Err(EdgeError::NotFound);
    };
    if req.method != "POST" {
        return Err(EdgeError::MethodNotAllowed);
    }
    let header = req
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| EdgeError::Unauthorized("no signature".into()))?;
    let bytes = body::read(req, MAX_BYTES).await?;
    // The route signs what the publisher knows: no visitor, no city.
    let content_type = req.header("content-type").unwrap_or_default();
    let signed = sign::Request {
        method: &req.method,
        host: &req.host,
        path_and_query: &req.path_and_query,
        client_ip: "",
        city: "",
        body_sha256: sign::body_sha256(&bytes),
        content_type: &content_type,
    };
    let mut keyring = Keyring::new(current);
    if let Some(previous) = config::text(env, "KV_ROUTE_KEY_PREVIOUS")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        let previous = sign::Key::strong("KV_ROUTE_KEY_PREVIOUS", previous.into_bytes())
            .map_err(EdgeError::Config)?;
        keyring = keyring.with_previous(previous, None);
    }
    let signature = keyring
        .verify(&header, &signed, clock::now_secs())
        .map_err(|e| EdgeError::Unauthorized(e.to_string()))?;
    let kv = env
        .kv(PAGES_BINDING)
        .map_err(|e| EdgeError::Config(format!("{PAGES_BINDING}: {e}")))?;
    let nonce_key = format!("nonce:{}:{}", signature.key_id, signature.nonce);
    if kv.get(&nonce_key).text().await?.is_some() {
        return Err(EdgeError::Unauthorized("replayed nonce".into()));
    }
    kv.put(&nonce_key, "1")?
        .expiration_ttl(NONCE_TTL_SECS)
        .execute()
        .await?;

    let writes: Vec<BulkWrite> = serde_json::from_slice(&bytes)
        .map_err(|_| EdgeError::BadRequest("body is not a JSON array of bulk writes"))?;
    if writes.len() > BULK_MAX_WRITES {
        return Err(EdgeError::BadRequest(
            "more than 10000 writes in one request",
        ));
    }
    let (winners, mut result) = newest_per_key(writes);
    for chunk in winners.chunks(CONCURRENCY) {
        for outcome in join_all(chunk.iter().map(|w| write_one(&kv, w))).await {
            match outcome? {
                true => result.written += 1,
                false => result.skipped_older += 1,
            }
        }
    }
    let body = serde_json::to_string(&result)
        .map_err(|e| EdgeError::Internal(format!("bulk result: {e}")))?;
    respond::json(200, "application/json", &body)
}

/// Post metadata of a write, when it has any (route keys have none).
fn post_meta(w: &BulkWrite) -> Option<PostMeta> {
    w.metadata
        .as_ref()
        .and_then(|m| serde_json::from_value::<PostMeta>(m.clone()).ok())
}

/// Several writes of one key in a batch: only the one that would win is
/// written (KV takes one write per second per key); the others count as
/// skipped.
fn newest_per_key(writes: Vec<BulkWrite>) -> (Vec<BulkWrite>, BulkResult) {
    let mut result = BulkResult {
        written: 0,
        skipped_older: 0,
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut winners: Vec<BulkWrite> = Vec::new();
    for w in writes {
        match index.get(&w.key) {
            None => {
                index.insert(w.key.clone(), winners.len());
                winners.push(w);
            }
            Some(&i) => {
                let newer = match (post_meta(&winners[i]), post_meta(&w)) {
                    (Some(old), Some(new)) => replaces(Some(&old), &new),
                    _ => true,
                };
                if newer {
                    winners[i] = w;
                }
                result.skipped_older += 1;
            }
        }
    }
    (winners, result)
}

/// Writes one key unless what KV holds is newer. `Ok(false)`: skipped.
async fn write_one(kv: &KvStore, w: &BulkWrite) -> Result<bool, EdgeError> {
    // This isolate serves the new version once the put is done (others
    // within their `PAGE_CACHE_MS`, as KV's own caches do), and keeps no
    // page read while it was in flight.
    let _writing = post_id_of_key(&w.key).map(crate::hot::Writing::start);
    let new = post_meta(w);
    if let Some(new) = &new {
        let (value, existing) = kv
            .get(&w.key)
            .stream_with_metadata::<serde_json::Value>()
            .await?;
        if let Some(value) = value {
            let _ = value.cancel();
        }
        let existing = existing.and_then(|m| serde_json::from_value::<PostMeta>(m).ok());
        if !replaces(existing.as_ref(), new) {
            return Ok(false);
        }
    }
    let mut put = kv.put(&w.key, w.value.as_str())?;
    if let Some(meta) = &w.metadata {
        put = put.metadata(meta)?;
    }
    let ttl = match (&new, w.expiration_ttl) {
        (_, Some(ttl)) => Some(ttl.max(MIN_TTL_SECS)),
        (Some(meta), None) if meta.gone => Some(TOMBSTONE_TTL_SECS),
        _ => None,
    };
    if let Some(ttl) = ttl {
        put = put.expiration_ttl(ttl);
    }
    put.execute().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, meta: Option<PostMeta>) -> BulkWrite {
        BulkWrite {
            key: key.into(),
            value: String::new(),
            metadata: meta.map(|m| serde_json::to_value(m).expect("json")),
            expiration_ttl: None,
        }
    }

    #[test]
    fn one_write_per_key_the_newest_wins() {
        let (winners, result) = newest_per_key(vec![
            write("post:1", Some(PostMeta::page("a", 2, 0))),
            write("post:1", Some(PostMeta::page("a", 1, 0))),
            write("post:2", Some(PostMeta::page("a", 1, 0))),
            write("post:1", Some(PostMeta::tombstone(2))),
            write("route:a", None),
            write("route:a", None),
        ]);
        assert_eq!(result.skipped_older, 3);
        let keys: Vec<&str> = winners.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["post:1", "post:2", "route:a"]);
        assert_eq!(post_meta(&winners[0]).map(|m| m.gone), Some(true));
    }
}
