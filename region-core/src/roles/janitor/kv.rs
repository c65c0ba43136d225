//! Reading what edge KV holds for posts, for the reconciler. The janitor
//! only reads: the publisher alone writes KV (design §3).
//!
//! Both KV services answer a bulk read of up to 100 keys with their values
//! and metadata: the stack's `cityboard edge-kv` (`POST /bulk/get`, the
//! protocol workerd's binding speaks, with the stack's bearer key) and
//! Cloudflare's REST API (`POST .../namespaces/{ns}/bulk/get`, with an API
//! token that may read the namespace). Cloudflare's reads may be up to a
//! minute stale, which the reconciler allows for by looking only at posts
//! that have not changed for longer (`JanitorConfig::reconcile_settle`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use cityboard_protocol::kv::PostMeta;
use reqwest::Url;
use serde::Deserialize;

/// Most keys one bulk read may name (both services' limit).
pub const BULK_GET_MAX: usize = 100;

/// Longest one bulk read may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// What KV holds under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// No entry (never written, or a tombstone whose TTL ran out).
    Nothing,
    /// An entry with the post metadata the publisher writes.
    Entry(PostMeta),
    /// An entry whose metadata is not a `PostMeta`: nothing the edge would
    /// serve as a page or honour as a tombstone.
    Unreadable,
}

/// A KV namespace the janitor reads.
#[derive(Debug, Clone)]
pub struct KvReader {
    client: reqwest::Client,
    url: Url,
    /// Bearer credential: the stack's edge-kv key, or a Cloudflare token.
    bearer: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EdgeKv,
    Cloudflare,
}

/// Cloudflare's envelope around the bulk read's answer.
type Envelope = crate::roles::common::CloudflareEnvelope<Values>;

#[derive(Debug, Deserialize)]
struct Values {
    values: serde_json::Map<String, serde_json::Value>,
}

impl KvReader {
    /// The stack's KV service at `base` (e.g. `http://127.0.0.1:27003`),
    /// which requires `key`.
    pub fn edge_kv(base: &str, key: &str) -> anyhow::Result<KvReader> {
        let base: Url = base
            .parse()
            .with_context(|| format!("edge-kv URL {base}"))?;
        Ok(KvReader {
            client: crate::roles::common::http_client(TIMEOUT)?,
            url: base.join("/bulk/get")?,
            bearer: key.trim().to_string(),
            kind: Kind::EdgeKv,
        })
    }

    /// The Cloudflare KV namespace `namespace` of `account`, through the
    /// REST API at `api` (normally `https://api.cloudflare.com/client/v4`).
    pub fn cloudflare(
        api: &str,
        account: &str,
        namespace: &str,
        token: &str,
    ) -> anyhow::Result<KvReader> {
        Ok(KvReader {
            client: crate::roles::common::http_client(TIMEOUT)?,
            url: crate::roles::common::cloudflare_kv_url(
                api,
                account,
                namespace,
                &["bulk", "get"],
            )?,
            bearer: token.trim().to_string(),
            kind: Kind::Cloudflare,
        })
    }

    /// The URL bulk reads go to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// What KV holds under each of `keys`, read `BULK_GET_MAX` at a time.
    pub async fn held(&self, keys: &[String]) -> anyhow::Result<HashMap<String, Held>> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(BULK_GET_MAX) {
            let body = serde_json::json!({ "keys": chunk, "withMetadata": true });
            let res = self
                .client
                .post(self.url.clone())
                .bearer_auth(&self.bearer)
                .json(&body)
                .send()
                .await
                .with_context(|| format!("bulk read from {}", self.url))?;
            let status = res.status();
            let text = res
                .text()
                .await
                .with_context(|| format!("bulk read from {}", self.url))?;
            if !status.is_success() {
                anyhow::bail!(
                    "bulk read from {} answered {status}: {}",
                    self.url,
                    text.chars().take(300).collect::<String>()
                );
            }
            let values = self.values(&text)?;
            for key in chunk {
                out.insert(key.clone(), held_of(values.get(key)));
            }
        }
        Ok(out)
    }

    /// The `{key: entry | null}` map of an answer.
    fn values(&self, text: &str) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let unreadable = |e: serde_json::Error| {
            anyhow::anyhow!(
                "bulk read from {} answered something unreadable ({e}): {}",
                self.url,
                text.chars().take(300).collect::<String>()
            )
        };
        match self.kind {
            Kind::EdgeKv => serde_json::from_str(text).map_err(unreadable),
            Kind::Cloudflare => {
                let e: Envelope = serde_json::from_str(text).map_err(unreadable)?;
                match (e.success, e.result) {
                    (true, Some(r)) => Ok(r.values),
                    _ => anyhow::bail!(
                        "bulk read from {} failed: {}",
                        self.url,
                        serde_json::to_string(&e.errors).unwrap_or_default()
                    ),
                }
            }
        }
    }
}

/// One key's answer: `null` (absent), or `{value, metadata}`.
fn held_of(entry: Option<&serde_json::Value>) -> Held {
    match entry {
        None | Some(serde_json::Value::Null) => Held::Nothing,
        Some(e) => e
            .get("metadata")
            .cloned()
            .and_then(|m| serde_json::from_value::<PostMeta>(m).ok())
            .map_or(Held::Unreadable, Held::Entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_what_kv_holds() {
        let page = PostMeta::page("boston", 3, 99);
        let entry = serde_json::json!({"value": "<html>", "metadata": page});
        assert_eq!(held_of(Some(&entry)), Held::Entry(page));
        assert_eq!(held_of(None), Held::Nothing);
        assert_eq!(held_of(Some(&serde_json::Value::Null)), Held::Nothing);
        let bare = serde_json::json!({"value": "<html>", "metadata": null});
        assert_eq!(held_of(Some(&bare)), Held::Unreadable);
    }

    #[test]
    fn cloudflare_reads_go_to_the_namespace_bulk_get() {
        let r = KvReader::cloudflare("http://127.0.0.1:9/", "acc", "ns", "t").unwrap();
        assert_eq!(
            r.url().as_str(),
            "http://127.0.0.1:9/accounts/acc/storage/kv/namespaces/ns/bulk/get"
        );
        let answer = r#"{"success":true,"errors":[],"result":{"values":{"post:1":null}}}"#;
        assert_eq!(r.values(answer).unwrap().len(), 1);
        let refused = r#"{"success":false,"errors":[{"code":10000}]}"#;
        assert!(r.values(refused).is_err());
        let local = KvReader::edge_kv("http://127.0.0.1:9", "k").unwrap();
        assert_eq!(local.url().as_str(), "http://127.0.0.1:9/bulk/get");
    }
}
