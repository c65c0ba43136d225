//! `GET /post/{id}` for browsers: the pre-rendered page from KV, with no
//! origin call on a hit.
//!
//! The page's metadata (`PostMeta`) decides: a tombstone is a 410, a page of
//! another city a 301 to its canonical host, a page older than the version
//! the visitor's read-your-writes cookie names (or one with a write still
//! pending on it) goes to the origin, an expired one too. A miss — including
//! a KV error, since KV caches negative lookups for about a minute — always
//! falls through to the origin, never becomes a 404 by itself.
//!
//! With `PAGE_CACHE_MS` on (the default) KV's answer is kept in the isolate
//! for that long ([`crate::hot`]) and every check above is still made on
//! each request against the kept metadata; with it off the value is
//! streamed from KV to the visitor, never copied through Rust.

use cityboard_protocol::kv::{PostMeta, etag, post_key};
use cityboard_protocol::ryw::{self, RYW_COOKIE, kv_page_is_stale};
use web_sys::Response;
use worker::Env;

use crate::apex::city_host;
use crate::clock;
use crate::config::Config;
use crate::error::EdgeError;
use crate::hot::{self, Kept};
use crate::html;
use crate::incoming::Incoming;
use crate::origin::{self, PAGES_BINDING};
use crate::respond;

/// `/post/new`: the origin's new-post form, the one `/post/{segment}`
/// that is not a post id.
pub const NEW_POST_SEGMENT: &str = "new";

/// Parses the `{id}` of `/post/{id}`: a decimal post id as the origin
/// writes them (`^[1-9][0-9]{0,18}$`, region-core's OpenAPI pattern).
/// Anything else is no post: 404 at the edge, no origin call.
pub fn parse_id(segment: &str) -> Option<u64> {
    let ok = !segment.is_empty()
        && segment.len() <= 19
        && !segment.starts_with('0')
        && segment.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| segment.parse::<u64>().ok()).flatten()
}

/// A page's bytes as KV (or the keep) gave them.
enum Body {
    /// Streamed from KV, read once.
    Stream(web_sys::ReadableStream),
    /// Held in JS memory with the 200's headers; a response copies both.
    Kept(Kept),
}

/// What KV says about a post, decided before any body moves.
enum Decision {
    Serve(Body, PostMeta),
    Gone,
    Elsewhere(String),
    Origin(&'static str),
}

/// Serves a post page to a browser on a city host.
pub async fn page(
    req: &Incoming,
    config: &Config,
    env: &Env,
    city: &str,
    id: u64,
) -> Result<Response, EdgeError> {
    match answer(req, config, id, decide(req, config, env, city, id).await) {
        Ok(result) => result,
        Err(why) => {
            let mut res = origin::forward(req, config, env, city, origin::Outgoing::None).await?;
            // A page the edge could not serve says why, for the tests and
            // for an operator reading response headers.
            res = respond::with_header(res, "x-cityboard-edge", why);
            Ok(res)
        }
    }
}

/// The answer from a page kept in this isolate, when there is one and it
/// needs no origin; `None` sends the request to [`page`].
pub fn kept_page(
    req: &Incoming,
    config: &Config,
    city: &str,
    id: u64,
) -> Option<Result<Response, EdgeError>> {
    let (body, meta) = kept(config, id, clock::now_ms())?;
    answer(req, config, id, judge(req, config, city, id, body, meta)).ok()
}

/// The answer to a decision the edge can give itself, or `Err` with why the
/// origin must give it.
fn answer(
    req: &Incoming,
    config: &Config,
    id: u64,
    decision: Decision,
) -> Result<Result<Response, EdgeError>, &'static str> {
    Ok(match decision {
        Decision::Serve(body, meta) => serve(req, id, &meta, body),
        Decision::Gone => respond::kept_html(
            "gone",
            410,
            &[("cache-control", "public, max-age=60")],
            html::gone_page,
        ),
        Decision::Elsewhere(other) => {
            let location = format!("{}/post/{id}", req.base_of(&city_host(&other, config)));
            respond::headers(&[
                ("location", &location),
                ("cache-control", "public, max-age=300"),
            ])
            .and_then(|h| respond::text(301, &h, None))
        }
        Decision::Origin(why) => return Err(why),
    })
}

/// The page kept for post `id`, with its metadata, when keeping is on and
/// it is young enough.
fn kept(config: &Config, id: u64, now_ms: f64) -> Option<(Body, PostMeta)> {
    let ttl_ms = config.page_cache_ms;
    let kept = (ttl_ms > 0)
        .then(|| hot::get(id, ttl_ms, now_ms))
        .flatten()?;
    let meta = kept.meta.clone();
    Some((Body::Kept(kept), meta))
}

async fn decide(req: &Incoming, config: &Config, env: &Env, city: &str, id: u64) -> Decision {
    let now_ms = clock::now_ms();
    let (body, meta) = match kept(config, id, now_ms) {
        Some(pair) => pair,
        None => match lookup(env, id, config.page_cache_ms, now_ms).await {
            Ok(Some(pair)) => pair,
            Ok(None) => return Decision::Origin("kv-miss"),
            Err(why) => return Decision::Origin(why),
        },
    };
    judge(req, config, city, id, body, meta)
}

/// What a page's metadata decides for this visitor on `city`'s host.
fn judge(
    req: &Incoming,
    config: &Config,
    city: &str,
    id: u64,
    body: Body,
    meta: PostMeta,
) -> Decision {
    if meta.gone {
        return Decision::Gone;
    }
    if let Some(page_city) = meta.city.as_deref().filter(|c| *c != city) {
        return Decision::Elsewhere(page_city.to_string());
    }
    if meta.expires_at.is_some_and(|t| t <= clock::now_secs()) {
        return Decision::Origin("kv-expired");
    }
    // A page of another template (or of none, written before templates
    // were versioned) looks other than the site: the origin renders it
    // until the publisher has re-published it.
    if config
        .template_version
        .is_some_and(|current| meta.template != Some(current))
    {
        return Decision::Origin("kv-template");
    }
    let ryw = req
        .cookie(RYW_COOKIE)
        .and_then(|v| ryw::open(v, &[config.ryw_key], clock::now_secs()));
    if kv_page_is_stale(ryw.as_ref(), id, meta.version) {
        return Decision::Origin("kv-stale");
    }
    Decision::Serve(body, meta)
}

/// Reads `post:{id}` from KV: as bytes, kept for `ttl_ms`, or streamed
/// when keeping is off. `Ok(None)` is a miss; `Err` says why KV failed.
async fn lookup(
    env: &Env,
    id: u64,
    ttl_ms: u32,
    now_ms: f64,
) -> Result<Option<(Body, PostMeta)>, &'static str> {
    let kv = env.kv(PAGES_BINDING).map_err(|_| "no-kv")?;
    let read = hot::read_started();
    let get = kv.get(&post_key(id));
    if ttl_ms == 0 {
        let (body, meta) = get
            .stream_with_metadata::<PostMeta>()
            .await
            .map_err(|e| kv_error(id, e))?;
        return Ok(body.zip(meta).map(|(b, m)| (Body::Stream(b), m)));
    }
    let (value, meta) = get
        .bytes_with_metadata::<PostMeta>()
        .await
        .map_err(|e| kv_error(id, e))?;
    let Some((value, meta)) = value.zip(meta) else {
        return Ok(None);
    };
    // KV answered; only the runtime failed to make headers (never seen).
    let headers = answer_headers(&etag(id, &meta), true).map_err(|e| {
        worker::console_warn!("post:{id}: headers of a kept page: {e}");
        "edge-error"
    })?;
    let kept = Kept {
        bytes: js_sys::Uint8Array::from(value.as_slice()),
        meta: meta.clone(),
        headers,
    };
    hot::keep(id, kept.clone(), now_ms, read);
    Ok(Some((Body::Kept(kept), meta)))
}

fn kv_error(id: u64, e: worker::kv::KvError) -> &'static str {
    worker::console_warn!("kv post:{id}: {e}");
    "kv-error"
}

/// Headers of a KV page's answer: a 200's (`with_type`) or a 304's.
fn answer_headers(tag: &str, with_type: bool) -> Result<web_sys::Headers, EdgeError> {
    // Browsers revalidate every time (no-cache) and get a cheap 304 while
    // the version is unchanged; a new version shows on the next load.
    let extra = [
        ("etag", tag),
        ("cache-control", "no-cache"),
        ("x-cityboard-edge", "kv-hit"),
    ];
    // A kept page's headers are built once, security headers included.
    if with_type {
        respond::html_headers(&extra)
    } else {
        respond::headers(&extra)
    }
}

fn serve(req: &Incoming, id: u64, meta: &PostMeta, body: Body) -> Result<Response, EdgeError> {
    let tag = etag(id, meta);
    if req
        .header("if-none-match")
        .is_some_and(|v| etag_matches(&v, &tag))
    {
        if let Body::Stream(stream) = body {
            let _ = stream.cancel();
        }
        return respond::text(304, &answer_headers(&tag, false)?, None);
    }
    match body {
        Body::Stream(stream) => respond::stream(200, &answer_headers(&tag, true)?, &stream),
        // Built once when the page was kept: no header calls per request.
        Body::Kept(kept) => respond::bytes(200, &kept.headers, &kept.bytes),
    }
}

/// `If-None-Match` semantics: `*`, or any listed tag equal to ours under
/// the weak comparison (RFC 9110 §13.1.2).
pub fn etag_matches(header: &str, tag: &str) -> bool {
    let ours = tag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_id("1"), Some(1));
        assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX as u64));
        for bad in [
            "",
            "0",
            "01",
            "abc",
            "12a",
            "-1",
            "+1",
            "99999999999999999999",
            "1 ",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
