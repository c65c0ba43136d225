//! Where the publisher's pages and tombstones go: a `KvSink`. Locally the
//! edge Worker's signed bulk route (`EdgeBulkSink`), in production the
//! Cloudflare KV REST bulk API (`CloudflareKvSink`). Both take the same body
//! (`kv::BulkWrite`s); the publisher decides versions before either is
//! called (its memory, then the durable marks of `marks`), and the edge
//! route checks them once more.

use std::time::Duration;

use cityboard_protocol::kv::{BULK_MAX_WRITES, BULK_PATH, BulkResult, BulkWrite};
use cityboard_protocol::sign::{self, SIGNATURE_HEADER};
use reqwest::Url;
use serde::Deserialize;

/// Longest one bulk call may take before it counts as failed (and is
/// retried).
const TIMEOUT: Duration = Duration::from_secs(20);

/// What a sink did with one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Entries written.
    pub written: u32,
    /// Entries the sink refused because it holds the same or a newer
    /// version: settled, nothing to retry.
    pub skipped_older: u32,
    /// Keys the sink did not take this time (Cloudflare's
    /// `unsuccessful_keys`): to be written again, after a pause.
    pub retry: Vec<String>,
}

/// Why a call failed as a whole; the publisher retries it with backoff and
/// commits nothing past it meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what}: {source}")]
    Http {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} answered {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what} answered something unreadable: {detail}")]
    Answer { what: &'static str, detail: String },
}

/// A KV namespace that takes pages and tombstones in bulk.
pub trait KvSink: Send + Sync + 'static {
    /// Writes `writes` (at most `BULK_MAX_WRITES`, one per key).
    fn put(
        &self,
        writes: &[BulkWrite],
    ) -> impl std::future::Future<Output = Result<PutReport, SinkError>> + Send;

    /// Most bytes of values one call should carry: the publisher splits
    /// larger batches.
    fn max_bytes(&self) -> usize;
}

/// Splits `writes` into calls of at most `BULK_MAX_WRITES` entries and about
/// `max_bytes` of values each (one entry larger than that goes alone).
pub fn chunks(writes: &[BulkWrite], max_bytes: usize) -> Vec<&[BulkWrite]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, w) in writes.iter().enumerate() {
        let size = w.key.len() + w.value.len() + 256;
        if i > start && (i - start >= BULK_MAX_WRITES || bytes + size > max_bytes) {
            out.push(&writes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < writes.len() {
        out.push(&writes[start..]);
    }
    out
}

/// An HTTP client for the sinks: rustls with the ring provider (installed
/// once per process; reqwest would otherwise want aws-lc).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    crate::roles::common::http_client(TIMEOUT)
}

/// Sends `request` and reads the whole answer: its status and body text.
/// A call that fails, or a body that cannot be read, is `SinkError::Http`
/// for `what`.
async fn status_and_text(
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<(u16, String), SinkError> {
    let http = |source| SinkError::Http { what, source };
    let res = request.send().await.map_err(http)?;
    let status = res.status().as_u16();
    let text = res.text().await.map_err(http)?;
    Ok((status, text))
}

/// The edge Worker's internal bulk route (`POST /__cityboard/kv/bulk`),
/// signed with the `kv-route.key` secret.
#[derive(Clone)]
pub struct EdgeBulkSink {
    client: reqwest::Client,
    url: Url,
    /// The host as the Worker sees it (the URL's authority): it is signed.
    host: String,
    key: sign::Key,
}

impl EdgeBulkSink {
    /// The route of the edge at `base` (e.g. `http://127.0.0.1:27002`).
    pub fn new(base: &str, kv_route_key: &[u8]) -> anyhow::Result<EdgeBulkSink> {
        let base: Url = base.parse()?;
        let url = base.join(BULK_PATH)?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => anyhow::bail!("edge URL {base} names no host"),
        };
        Ok(EdgeBulkSink {
            client: http_client()?,
            url,
            host,
            key: sign::Key::strong("kv-route.key", kv_route_key.to_vec())
                .map_err(anyhow::Error::msg)?,
        })
    }
}

/// What the bulk route's body is (signed, as the header is sent).
const CONTENT_TYPE: &str = "application/json";

/// The Worker reads at most 16 MiB of body.
const EDGE_MAX_BYTES: usize = 12 * 1024 * 1024;

impl KvSink for EdgeBulkSink {
    async fn put(&self, writes: &[BulkWrite]) -> Result<PutReport, SinkError> {
        const WHAT: &str = "the edge's bulk route";
        let body = serde_json::to_vec(writes).map_err(|e| SinkError::Answer {
            what: WHAT,
            detail: format!("encoding the writes: {e}"),
        })?;
        let signed = sign::Request {
            method: "POST",
            host: &self.host,
            path_and_query: BULK_PATH,
            client_ip: "",
            city: "",
            body_sha256: sign::body_sha256(&body),
            content_type: CONTENT_TYPE,
        };
        // A fresh nonce per call: the route refuses one it has seen.
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let signature = sign::sign(&self.key, &signed, chrono::Utc::now().timestamp(), &nonce);
        let request = self
            .client
            .post(self.url.clone())
            .header(SIGNATURE_HEADER, signature)
            .header("content-type", CONTENT_TYPE)
            .body(body);
        let (status, text) = status_and_text(request, WHAT).await?;
        if status != 200 {
            return Err(SinkError::Status {
                what: WHAT,
                status,
                body: text.chars().take(300).collect(),
            });
        }
        let result: BulkResult = serde_json::from_str(&text).map_err(|e| SinkError::Answer {
            what: WHAT,
            detail: format!("{e}: {}", text.chars().take(300).collect::<String>()),
        })?;
        Ok(PutReport {
            written: result.written,
            skipped_older: result.skipped_older,
            retry: Vec::new(),
        })
    }

    fn max_bytes(&self) -> usize {
        EDGE_MAX_BYTES
    }
}

pub use crate::roles::common::CLOUDFLARE_API;

/// A Cloudflare KV namespace through the REST bulk API:
/// `PUT {api}/accounts/{account}/storage/kv/namespaces/{namespace}/bulk`
/// with an API token (permission "Workers KV Storage: Edit").
///
/// That API writes unconditionally (last write wins, no version check), and
/// its reads may be stale: "never an older version" rests on the publisher
/// here, on the durable per-key marks it claims before every write
/// (`marks`), which a restart or a rebalance does not lose.
#[derive(Clone)]
pub struct CloudflareKvSink {
    client: reqwest::Client,
    url: Url,
    token: String,
}

impl std::fmt::Debug for CloudflareKvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloudflareKvSink({})", self.url)
    }
}

/// Cloudflare's envelope around the bulk write's answer.
type Envelope = crate::roles::common::CloudflareEnvelope<BulkOutcome>;

#[derive(Debug, Deserialize)]
struct BulkOutcome {
    #[serde(default)]
    successful_key_count: Option<u32>,
    #[serde(default)]
    unsuccessful_keys: Vec<String>,
}

/// The bulk API takes at most 100 MB per call.
const CLOUDFLARE_MAX_BYTES: usize = 90 * 1000 * 1000;

impl CloudflareKvSink {
    /// The namespace `namespace` of `account`; `api` is normally
    /// `CLOUDFLARE_API` (a test points it at a local server).
    pub fn new(
        api: &str,
        account: &str,
        namespace: &str,
        token: &str,
    ) -> anyhow::Result<CloudflareKvSink> {
        Ok(CloudflareKvSink {
            client: http_client()?,
            url: crate::roles::common::cloudflare_kv_url(api, account, namespace, &["bulk"])?,
            token: token.to_string(),
        })
    }

    /// The URL the writes are PUT to.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl KvSink for CloudflareKvSink {
    async fn put(&self, writes: &[BulkWrite]) -> Result<PutReport, SinkError> {
        const WHAT: &str = "Cloudflare KV's bulk API";
        let request = self
            .client
            .put(self.url.clone())
            .bearer_auth(&self.token)
            .json(writes);
        let (status, text) = status_and_text(request, WHAT).await?;
        let envelope: Option<Envelope> = serde_json::from_str(&text).ok();
        match envelope {
            Some(Envelope {
                success: true,
                result,
                ..
            }) if (200..300).contains(&status) => {
                let (count, retry) = result
                    .map(|r| (r.successful_key_count, r.unsuccessful_keys))
                    .unwrap_or_default();
                let written = count.unwrap_or_else(|| {
                    u32::try_from(writes.len().saturating_sub(retry.len())).unwrap_or(u32::MAX)
                });
                Ok(PutReport {
                    written,
                    skipped_older: 0,
                    retry,
                })
            }
            Some(e) => Err(SinkError::Status {
                what: WHAT,
                status,
                body: serde_json::to_string(&e.errors).unwrap_or_default(),
            }),
            None => Err(SinkError::Status {
                what: WHAT,
                status,
                body: text.chars().take(300).collect(),
            }),
        }
    }

    fn max_bytes(&self) -> usize {
        CLOUDFLARE_MAX_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, bytes: usize) -> BulkWrite {
        BulkWrite {
            key: key.into(),
            value: "x".repeat(bytes),
            metadata: None,
            expiration_ttl: None,
        }
    }

    #[test]
    fn batches_are_split_by_bytes_and_count() {
        let ws: Vec<BulkWrite> = (0..5).map(|i| write(&format!("k{i}"), 1000)).collect();
        let sizes: Vec<usize> = chunks(&ws, 2600).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(chunks(&ws, 10).len(), 5, "an oversized entry goes alone");
        assert!(chunks(&[], 10).is_empty());
        let many: Vec<BulkWrite> = (0..BULK_MAX_WRITES + 1).map(|_| write("k", 0)).collect();
        assert_eq!(chunks(&many, usize::MAX).len(), 2);
    }

    #[test]
    fn the_cloudflare_url_names_account_and_namespace() {
        let s = CloudflareKvSink::new(CLOUDFLARE_API, "acc", "ns", "t").unwrap();
        assert_eq!(
            s.url().as_str(),
            "https://api.cloudflare.com/client/v4/accounts/acc/storage/kv/namespaces/ns/bulk"
        );
        let s = CloudflareKvSink::new("http://127.0.0.1:9/", "a", "n", "t").unwrap();
        assert_eq!(
            s.url().as_str(),
            "http://127.0.0.1:9/accounts/a/storage/kv/namespaces/n/bulk"
        );
    }
}
