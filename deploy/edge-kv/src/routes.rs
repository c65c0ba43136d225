//! The HTTP protocol workerd's `kvNamespace` binding speaks to the service
//! behind it (workerd `src/workerd/api/kv.c++`, the same one Miniflare's KV
//! gateway answers):
//!
//! | binding call | request |
//! | --- | --- |
//! | `get(key)`, `getWithMetadata(key)` | `GET /{key}?urlencoded=true[&cache_ttl=N]` → 200 value with `CF-KV-Metadata: <json>`, or 404 (null) |
//! | `get([keys])` | `POST /bulk/get` `{"keys":[..],"type"?,"withMetadata"?}` → `{key: value \| {value, metadata} \| null}` |
//! | `put(key, value, opts)` | `PUT /{key}?urlencoded=true[&expiration=S][&expiration_ttl=S]`, metadata in `CF-KV-Metadata` |
//! | `delete(key)` | `DELETE /{key}?urlencoded=true` |
//! | `list(opts)` | `GET /?key_count_limit=N&prefix=P&cursor=C` → `{"keys":[{name, expiration?, metadata?}], "list_complete", "cursor"?}` |
//!
//! The key is one percent-encoded path segment. Errors answer the status
//! Cloudflare KV gives (400, 413, 414) with the reason as text; workerd
//! turns any non-2xx into an exception naming the status.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::store::{
    Entry, MAX_KEY_BYTES, MAX_LIST_KEYS, MAX_METADATA_BYTES, MAX_VALUE_BYTES, Store,
};

/// Unix seconds now; a function so that a test can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The header that carries an entry's metadata, both ways.
pub const METADATA_HEADER: &str = "cf-kv-metadata";
/// Most keys one bulk get may name (as in Cloudflare KV).
const MAX_BULK_KEYS: usize = 100;

/// What the routes share.
pub struct Service {
    /// The namespace.
    pub store: Store,
    /// Shortest expiration accepted, seconds from now; Cloudflare's is 60.
    pub min_ttl: i64,
    /// The clock, unix seconds (a test moves it).
    pub now: Clock,
    /// When set, every request must carry `Authorization: Bearer <key>`
    /// (the stack's: workerd injects it into its binding's requests);
    /// anything else is a 401.
    pub key: Option<String>,
}

/// Whether `headers` carry `key` as a bearer token. Digests are compared,
/// so the time taken says nothing about how much of the key was right.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    Sha256::digest(given.as_bytes()) == Sha256::digest(key.as_bytes())
}

/// A request the protocol refuses: status and reason.
#[derive(Debug)]
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad(message: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, message.into())
}

/// The router: every path is a key, so one handler reads the method and path.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .fallback(handle)
        // The value limit is checked by the handler, with Cloudflare's message.
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES + 1))
        .with_state(service)
}

async fn handle(
    State(service): State<Arc<Service>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(key) = &service.key
        && !authorized(&headers, key)
    {
        return Refused(StatusCode::UNAUTHORIZED, "a key is required".into()).into_response();
    }
    let path = uri.path();
    let result = match (&method, path) {
        (&Method::GET, "/") => list(&service, &query),
        (&Method::POST, "/bulk/get") => bulk_get(&service, &body),
        (&Method::GET, _) => key_of(path).map(|key| get(&service, &key)),
        (&Method::PUT, _) => match key_of(path) {
            Ok(key) => put(service, key, &query, &headers, body).await,
            Err(e) => Err(e),
        },
        (&Method::DELETE, _) => match key_of(path) {
            Ok(key) => delete(service, key).await,
            Err(e) => Err(e),
        },
        _ => Err(Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not a KV operation"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The key of a `/{key}` path: one percent-encoded segment, checked as
/// Cloudflare KV checks names.
fn key_of(path: &str) -> Result<String, Refused> {
    let raw = path.strip_prefix('/').unwrap_or(path);
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad("Could not URL-decode key name"))?
        .into_owned();
    check_key(&key)?;
    Ok(key)
}

fn check_key(key: &str) -> Result<(), Refused> {
    if key.is_empty() {
        return Err(bad("Key names must not be empty"));
    }
    if key == "." || key == ".." {
        return Err(bad(format!(
            "Illegal key name \"{key}\". Please use a different name."
        )));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Refused(
            StatusCode::URI_TOO_LONG,
            format!(
                "UTF-8 encoded length of {} exceeds key length limit of {MAX_KEY_BYTES}.",
                key.len()
            ),
        ));
    }
    Ok(())
}

fn get(service: &Service, key: &str) -> Response {
    let Some(entry) = service.store.get(key, (service.now)()) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let mut response = Response::new(Body::from(entry.value.clone()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(metadata) = &entry.metadata
        && let Ok(value) = HeaderValue::from_str(&metadata.to_string())
    {
        headers.insert(METADATA_HEADER, value);
    }
    if let Some(at) = entry.expiration {
        headers.insert("cf-expiration", HeaderValue::from(at));
    }
    response
}

async fn put(
    service: Arc<Service>,
    key: String,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    value: Bytes,
) -> Result<Response, Refused> {
    let now = (service.now)();
    let expiration = expiration_of(query, now, service.min_ttl)?;
    let metadata = match headers.get(METADATA_HEADER) {
        None => None,
        Some(raw) => {
            let raw = raw.as_bytes();
            if raw.len() > MAX_METADATA_BYTES {
                return Err(Refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Metadata length of {} exceeds limit of {MAX_METADATA_BYTES}.",
                        raw.len()
                    ),
                ));
            }
            Some(serde_json::from_slice(raw).map_err(|e| bad(format!("Invalid metadata: {e}")))?)
        }
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Value length of {} exceeds limit of {MAX_VALUE_BYTES}.",
                value.len()
            ),
        ));
    }
    let entry = Entry {
        value,
        metadata,
        expiration,
    };
    write(service, move |store| store.put(&key, entry)).await
}

/// `expiration_ttl` wins over `expiration`, as in Cloudflare KV and Miniflare.
fn expiration_of(
    query: &HashMap<String, String>,
    now: i64,
    min_ttl: i64,
) -> Result<Option<i64>, Refused> {
    if let Some(raw) = query.get("expiration_ttl") {
        let ttl: i64 = raw.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
            bad(format!(
                "Invalid expiration_ttl of {raw}. Please specify integer greater than 0."
            ))
        })?;
        if ttl < min_ttl {
            return Err(bad(format!(
                "Invalid expiration_ttl of {raw}. Expiration TTL must be at least {min_ttl}."
            )));
        }
        return Ok(Some(now + ttl));
    }
    if let Some(raw) = query.get("expiration") {
        let at: i64 = raw.parse().ok().filter(|at| *at > now).ok_or_else(|| {
            bad(format!(
                "Invalid expiration of {raw}. Please specify integer greater than the current number of seconds since the UNIX epoch."
            ))
        })?;
        if at < now + min_ttl {
            return Err(bad(format!(
                "Invalid expiration of {raw}. Expiration times must be at least {min_ttl} seconds in the future."
            )));
        }
        return Ok(Some(at));
    }
    Ok(None)
}

async fn delete(service: Arc<Service>, key: String) -> Result<Response, Refused> {
    write(service, move |store| store.delete(&key)).await
}

/// Runs a write (file I/O) off the async threads.
async fn write(
    service: Arc<Service>,
    op: impl FnOnce(&Store) -> anyhow::Result<()> + Send + 'static,
) -> Result<Response, Refused> {
    let done = tokio::task::spawn_blocking(move || op(&service.store)).await;
    match done {
        Ok(Ok(())) => Ok(StatusCode::OK.into_response()),
        Ok(Err(e)) => Err(Refused(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))),
        Err(e) => Err(Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write task failed: {e}"),
        )),
    }
}

fn list(service: &Service, query: &HashMap<String, String>) -> Result<Response, Refused> {
    let limit = match query.get("key_count_limit") {
        None => MAX_LIST_KEYS,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST_KEYS).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "Invalid key_count_limit of {raw}. Please specify an integer from 1 to {MAX_LIST_KEYS}."
                ))
            })?,
    };
    let prefix = query.get("prefix").map_or("", String::as_str);
    if prefix.len() > MAX_KEY_BYTES {
        return Err(Refused(
            StatusCode::URI_TOO_LONG,
            format!("prefix exceeds key length limit of {MAX_KEY_BYTES}."),
        ));
    }
    let cursor = query
        .get("cursor")
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    let listing = service.store.list(prefix, limit, cursor, (service.now)());
    Ok(axum::Json(listing).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkGet {
    keys: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    with_metadata: bool,
}

fn bulk_get(service: &Service, body: &[u8]) -> Result<Response, Refused> {
    let request: BulkGet =
        serde_json::from_slice(body).map_err(|e| bad(format!("Invalid bulk get: {e}")))?;
    if request.keys.is_empty() || request.keys.len() > MAX_BULK_KEYS {
        return Err(bad(format!(
            "You can request from 1 to {MAX_BULK_KEYS} keys"
        )));
    }
    let json = match request.kind.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(bad(format!(
                "\"{other}\" is not a valid type. Use \"json\" or \"text\""
            )));
        }
    };
    let now = (service.now)();
    let mut out = serde_json::Map::new();
    for key in request.keys {
        check_key(&key)?;
        let value = match service.store.get(&key, now) {
            None => serde_json::Value::Null,
            Some(entry) => {
                let text = std::str::from_utf8(&entry.value)
                    .map_err(|_| bad(format!("{key} is not a text value")))?;
                let value = if json {
                    serde_json::from_str(text)
                        .map_err(|_| bad(format!("{key} is not a JSON value")))?
                } else {
                    serde_json::Value::String(text.to_owned())
                };
                if request.with_metadata {
                    serde_json::json!({
                        "value": value,
                        "metadata": entry.metadata.clone().unwrap_or(serde_json::Value::Null),
                    })
                } else {
                    value
                }
            }
        };
        out.insert(key, value);
    }
    Ok(axum::Json(out).into_response())
}
