//! Forwarding to the origin of a city's region, signed (design §4).
//!
//! The region comes from KV `route:{city}` (a moved city's route changes
//! there), falling back to the `ORIGINS` binding by the city's configured
//! region. An origin that answers 421 no longer serves the city: the route is
//! read again past KV's cache and the request sent once more. Every request
//! carries a fresh signature (timestamp and nonce), so the retry is a new
//! request for the origin's replay check, not a replay. Redirects are never
//! followed (`redirect: manual`): the browser must see them, and following
//! one would resend the visitor's headers to wherever it points.
//!
//! A photo upload ([`Outgoing::Streamed`]) is the exception to both the
//! body hash and the retry: its body goes to the origin as the visitor's
//! stream, never held in the isolate, signed in the unsigned-payload mode
//! (`v2u`: the path and query, which carry the upload token, but not the
//! body). A stream can be sent once, so a 421 on it is not retried: the
//! visitor is told to send it again (503), by when the route is fresh.

use std::pin::pin;
use std::time::Duration;

use cityboard_protocol::kv::{Route, route_key};
use cityboard_protocol::sign::{
    self, CITY_HEADER, CLIENT_IP_HEADER, FORWARDED_HOST_HEADER, SIGNATURE_HEADER,
};
use cityboard_protocol::trace;
use futures_util::future::{Either, select};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, RequestInit, RequestRedirect, Response, WorkerGlobalScope,
};
use worker::{Delay, Env, KvStore};

use crate::clock;
use crate::config::Config;
use crate::error::{self, EdgeError};
use crate::incoming::{self, Incoming};
use crate::respond;

/// Name of the KV binding (pages and routes).
pub const PAGES_BINDING: &str = "PAGES";

/// How long the origin may take to answer an upload: it answers after it
/// has read the whole body, which a phone sends slowly (region-core
/// `UPLOAD_TIMEOUT` is 120 s as well).
const UPLOAD_TIMEOUT_MS: u32 = 120_000;

/// The body sent on to the origin.
#[derive(Clone, Copy)]
pub enum Outgoing<'a> {
    /// None (reads).
    None,
    /// The visitor's body, already read (and size-checked) once; signed by
    /// its hash.
    Bytes(&'a [u8]),
    /// The visitor's body stream, passed on unread (photo uploads,
    /// `body::streamed`); signed in the unsigned-payload mode.
    Streamed,
}

/// Seconds KV may cache a route at the edge on the normal path. A stale
/// route costs one 421 and a fresh read, so it may be cached.
const ROUTE_CACHE_TTL_SECS: u64 = 60;

/// Headers never passed on: hop-by-hop ones (RFC 9110 §7.6.1), the ones the
/// Worker sets itself (a visitor must not be able to supply them), a
/// client's own claims of its address (the origin learns it only from the
/// signed `x-cityboard-client-ip`; a proxy behind the edge that trusted
/// these would be fooled), and the local runtime's `cf` injection header.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "cf-blob",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    FORWARDED_HOST_HEADER,
];

/// Whether the Worker itself owns a header name (case-insensitive input).
fn dropped(name: &str) -> bool {
    DROPPED.contains(&name) || name.starts_with("x-cityboard-")
}

/// Where a city's requests go.
async fn route(
    config: &Config,
    kv: Option<&KvStore>,
    city: &str,
    fresh: bool,
) -> Result<Route, EdgeError> {
    if let Some(kv) = kv {
        let get = kv.get(&route_key(city));
        let get = if fresh {
            get
        } else {
            get.cache_ttl(ROUTE_CACHE_TTL_SECS)
        };
        match get.json::<Route>().await {
            Ok(Some(route)) => return Ok(route),
            Ok(None) => {}
            // A KV failure or a malformed route must not take the city
            // down: the configured region is a good guess.
            Err(e) => worker::console_warn!("route:{city}: {e}; using the configured region"),
        }
    }
    let region = config
        .city(city)
        .map(|c| c.region.clone())
        .ok_or_else(|| EdgeError::CityNotServed(city.to_string()))?;
    let origin = config
        .origins
        .get(&region)
        .cloned()
        .ok_or_else(|| EdgeError::Config(format!("no origin for region {region}")))?;
    Ok(Route { region, origin })
}

/// Sends the visitor's request to the city's origin (one retry after a 421)
/// and returns the origin's response, untouched but for the security
/// headers of an HTML page (`respond::secure`: the edge's, whatever the
/// origin sent).
pub async fn forward(
    req: &Incoming,
    config: &Config,
    env: &Env,
    city: &str,
    body: Outgoing<'_>,
) -> Result<Response, EdgeError> {
    forward_once_more_on_421(req, config, env, city, body)
        .await
        .map(respond::secure)
}

async fn forward_once_more_on_421(
    req: &Incoming,
    config: &Config,
    env: &Env,
    city: &str,
    body: Outgoing<'_>,
) -> Result<Response, EdgeError> {
    let kv = env.kv(PAGES_BINDING).ok();
    // One id for the visitor's request, whichever try reaches an origin
    // (`trace`: it is the signature's nonce).
    let request_id = clock::nonce();
    if !matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        // Writes only: the first line of the trail a post's request id
        // leaves (the roles log the rest); reads would flood the log.
        worker::console_log!(
            "forward {} {} city={city} request_id={request_id}",
            req.method,
            req.path_and_query
        );
    }
    let first = route(config, kv.as_ref(), city, false).await?;
    let nonce = trace::nonce_for(&request_id, 1);
    let res = send(req, config, city, &first.origin, body, &nonce).await?;
    if res.status() != 421 {
        return Ok(res);
    }
    let second = route(config, kv.as_ref(), city, true).await?;
    if matches!(body, Outgoing::Streamed) {
        // The stream went with the first try; the route read above is
        // fresh for the visitor's next one.
        worker::console_log!(
            "421 from {} for {city} on a streamed upload; not retried request_id={request_id}",
            first.origin
        );
        return Err(EdgeError::OriginUnavailable {
            city: city.to_string(),
            reason: "the city moved while the upload was sent; send it again".into(),
        });
    }
    worker::console_log!(
        "421 from {} for {city}; retrying at {} request_id={request_id}",
        first.origin,
        second.origin
    );
    let nonce = trace::nonce_for(&request_id, 2);
    send(req, config, city, &second.origin, body, &nonce).await
}

/// One signed request to `origin`, with the timeout.
async fn send(
    req: &Incoming,
    config: &Config,
    city: &str,
    origin: &str,
    body: Outgoing<'_>,
    nonce: &str,
) -> Result<Response, EdgeError> {
    let unavailable = |reason: String| EdgeError::OriginUnavailable {
        city: city.to_string(),
        reason,
    };
    let headers = forwarded_headers(req, config, city, body, nonce)?;
    let init = RequestInit::new();
    init.set_method(&req.method);
    init.set_headers(headers.as_ref());
    init.set_redirect(RequestRedirect::Manual);
    let mut timeout_ms = config.origin_timeout_ms;
    match body {
        Outgoing::None => {}
        Outgoing::Bytes(bytes) => init.set_body(&js_sys::Uint8Array::from(bytes).into()),
        Outgoing::Streamed => {
            if let Some(stream) = req.raw.body() {
                init.set_body(stream.as_ref());
                // A stream as a fetch body must say that the response may
                // come before the request is sent whole (the Fetch
                // standard's `duplex`, which web-sys has no setter for).
                js_sys::Reflect::set(
                    init.as_ref(),
                    &JsValue::from_str("duplex"),
                    &JsValue::from_str("half"),
                )
                .map_err(EdgeError::js)?;
            }
            timeout_ms = timeout_ms.max(UPLOAD_TIMEOUT_MS);
        }
    }
    let controller = AbortController::new().map_err(EdgeError::js)?;
    init.set_signal(Some(&controller.signal()));
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let url = format!("{origin}{}", req.path_and_query);
    let fetch = JsFuture::from(global.fetch_with_str_and_init(&url, &init));
    let timer = Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    match select(pin!(fetch), pin!(timer)).await {
        Either::Left((Ok(value), _)) => value
            .dyn_into::<Response>()
            .map_err(|_| EdgeError::Internal("fetch resolved to a non-Response".into())),
        Either::Left((Err(e), _)) => Err(unavailable(error::describe(&e))),
        Either::Right(((), _)) => {
            controller.abort_with_reason(&JsValue::from_str("origin timeout"));
            Err(unavailable(format!("no answer within {timeout_ms} ms")))
        }
    }
}

/// The visitor's headers (each within the size limits, else 400) minus the
/// dropped ones, plus the Worker's own and the signature (scheme version 2)
/// over method, host, path and query, client IP, city, body and the
/// `Content-Type` as it is sent on, with `nonce` (which carries the
/// request id). A streamed body is signed in the unsigned-payload mode:
/// everything but the body.
fn forwarded_headers(
    req: &Incoming,
    config: &Config,
    city: &str,
    body: Outgoing<'_>,
    nonce: &str,
) -> Result<Headers, EdgeError> {
    let out = Headers::new().map_err(EdgeError::js)?;
    let mut total = 0;
    if let Ok(Some(iter)) = js_sys::try_iter(req.headers.as_ref()) {
        for entry in iter.flatten() {
            let pair = js_sys::Array::from(&entry);
            let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string())
            else {
                continue;
            };
            incoming::check_header(&name, &value, &mut total)?;
            if !dropped(&name.to_ascii_lowercase()) {
                out.append(&name, &value).map_err(EdgeError::js)?;
            }
        }
    }
    let client_ip = config.client_ip(req);
    // The value the origin will see: the copy's, one value even if the
    // visitor sent several (`Headers` joins them).
    let content_type = out
        .get("content-type")
        .map_err(EdgeError::js)?
        .unwrap_or_default();
    let signed = sign::Request {
        method: &req.method,
        host: &req.host,
        path_and_query: &req.path_and_query,
        client_ip: &client_ip,
        city,
        body_sha256: sign::body_sha256(match body {
            Outgoing::Bytes(bytes) => bytes,
            Outgoing::None | Outgoing::Streamed => &[],
        }),
        content_type: &content_type,
    };
    let now = clock::now_secs();
    let signature = match body {
        Outgoing::Streamed => sign::sign_unsigned_payload(&config.forward_key, &signed, now, nonce),
        Outgoing::None | Outgoing::Bytes(_) => sign::sign(&config.forward_key, &signed, now, nonce),
    };
    for (name, value) in [
        (FORWARDED_HOST_HEADER, req.host.as_str()),
        (CITY_HEADER, city),
        (CLIENT_IP_HEADER, client_ip.as_str()),
        (SIGNATURE_HEADER, signature.as_str()),
    ] {
        out.set(name, value).map_err(EdgeError::js)?;
    }
    Ok(out)
}
