//! Short edge caching of anonymous GETs that go to the origin (listings,
//! searches, forms), with the Cache API.
//!
//! Only requests without a session (`cb_session` cookie or `Authorization`)
//! and without a read-your-writes cookie are cached: what those visitors see
//! depends on who they are or on a write they just made. Only plain 200s
//! without `Set-Cookie` or a private/no-store `Cache-Control` are stored, for
//! [`TTL_SECS`]. HTML and non-HTML answers of one URL are different entries
//! (the Workers cache ignores `Vary`). Under bare workerd without a cache
//! service the Cache API stores nothing, which changes nothing but speed.
//!
//! Static assets (`/static/…`, fingerprinted names that never change
//! content) are the same for every visitor: they are cached whoever asks,
//! and an answer the origin marks `immutable` keeps its own
//! `Cache-Control` (a year) in the cache and at the browser instead of
//! [`TTL_SECS`].

use cityboard_protocol::ryw::RYW_COOKIE;
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response, WorkerGlobalScope};
use worker::{Context, Env};

use crate::config::Config;
use crate::error::{self, EdgeError};
use crate::incoming::{self, Incoming};
use crate::origin;
use crate::respond;

/// How long an anonymous answer is reused.
pub const TTL_SECS: u32 = 10;

/// The session cookie region-core sets.
pub const SESSION_COOKIE: &str = "cb_session";

/// Whether the request carries a read-your-writes cookie the origin
/// issued (and that has not expired): only then does it go past the cache.
/// One a client made up is ignored, here as at the origin.
fn ryw_cookie_opens(req: &Incoming, config: &Config) -> bool {
    req.cookie(RYW_COOKIE).is_some_and(|v| {
        cityboard_protocol::ryw::open(v, &[config.ryw_key], crate::clock::now_secs()).is_some()
    })
}

/// A GET to the origin, through the cache when the visitor is anonymous.
pub async fn get(
    req: &Incoming,
    config: &Config,
    env: &Env,
    ctx: &Context,
    city: &str,
) -> Result<Response, EdgeError> {
    let asset = is_asset(&req.path);
    let anonymous = req.method == "GET"
        && (asset
            || (req.cookie(SESSION_COOKIE).is_none()
                && !ryw_cookie_opens(req, config)
                && req.header("authorization").is_none()));
    let cache = if anonymous { default_cache() } else { None };
    let Some(cache) = cache else {
        return origin::forward(req, config, env, city, origin::Outgoing::None).await;
    };
    let variant = if asset {
        "asset"
    } else if incoming::wants_html(&req.headers) {
        "html"
    } else {
        "other"
    };
    let sep = if req.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let key = format!(
        "{}://{}{}{sep}cb-variant={variant}",
        req.scheme, req.host, req.path_and_query
    );
    if let Ok(hit) = JsFuture::from(cache.match_with_str(&key)).await
        && let Ok(res) = hit.dyn_into::<Response>()
    {
        return Ok(respond::with_header(res, "x-cityboard-cache", "hit"));
    }
    let res = origin::forward(req, config, env, city, origin::Outgoing::None).await?;
    if cacheable(&res)
        && let Some(stored) = stored_copy(&res)
    {
        ctx.wait_until(async move {
            if let Err(e) = JsFuture::from(cache.put_with_str(&key, &stored)).await {
                worker::console_warn!("cache put {key}: {}", error::describe(&e));
            }
        });
    }
    Ok(res)
}

/// Static assets and photos (`/media/…`, whose names are new for every
/// stored image, so the bytes under one never change): the same bytes for
/// every visitor, cached whoever asks, the origin's `immutable`
/// `Cache-Control` kept.
pub fn is_asset(path: &str) -> bool {
    (path.starts_with("/static/") || path.starts_with("/media/")) && !path.contains("..")
}

/// Whether the origin says an answer never changes (fingerprinted assets).
fn immutable(cache_control: &str) -> bool {
    cache_control
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("immutable"))
}

fn default_cache() -> Option<Cache> {
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let caches = global.caches().ok()?;
    Reflect::get(caches.as_ref(), &JsValue::from_str("default"))
        .ok()?
        .dyn_into::<Cache>()
        .ok()
}

fn cacheable(res: &Response) -> bool {
    let h = res.headers();
    let cache_control = h.get("cache-control").ok().flatten().unwrap_or_default();
    res.status() == 200
        && !h.has("set-cookie").unwrap_or(true)
        && !["no-store", "private", "no-cache"]
            .iter()
            .any(|d| cache_control.contains(d))
}

/// A copy of `res` (its body teed) whose `Cache-Control` tells the cache how
/// long to keep it: [`TTL_SECS`], or the origin's own for an immutable
/// answer.
fn stored_copy(res: &Response) -> Option<Response> {
    let copy = res.clone().ok()?;
    let headers = web_sys::Headers::new_with_headers(&copy.headers()).ok()?;
    let origin_says = headers.get("cache-control").ok().flatten();
    if !origin_says.as_deref().is_some_and(immutable) {
        headers
            .set("cache-control", &format!("public, max-age={TTL_SECS}"))
            .ok()?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(copy.status());
    init.set_headers(headers.as_ref());
    Response::new_with_opt_readable_stream_and_init(copy.body().as_ref(), &init).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_and_immutable_answers() {
        assert!(is_asset("/static/site.3f2a9c1b.css"));
        assert!(!is_asset("/static/../post"));
        assert!(!is_asset("/post/static/x"));
        assert!(is_asset("/media/1200x900/7311.jpg"));
        assert!(!is_asset("/media/../post"));
        assert!(immutable("public, max-age=31536000, immutable"));
        assert!(immutable("Immutable"));
        assert!(!immutable("public, max-age=10"));
        assert!(!immutable("no-immutable-here"));
    }
}
