//! Building responses as raw `web_sys::Response`s.
//!
//! workers-rs' own `Response` converts to the JS object with `unwrap()`, which
//! panics (and resets the instance, killing every request in flight) when the
//! JS constructor throws, e.g. for a 304 with a body. Everything here returns
//! a `Result` instead, and origin responses pass through untouched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use cityboard_protocol::headers::{SECURITY_HEADERS, is_html};
use wasm_bindgen::JsValue;
use web_sys::{Headers, ReadableStream, Response, ResponseInit};

use crate::error::EdgeError;

/// `Content-Type` of the pages the Worker renders itself.
pub const HTML: &str = "text/html; charset=utf-8";

/// Headers of a response under construction.
pub fn headers(pairs: &[(&str, &str)]) -> Result<Headers, EdgeError> {
    let h = Headers::new().map_err(EdgeError::js)?;
    for (name, value) in pairs {
        h.set(name, value).map_err(EdgeError::js)?;
    }
    Ok(h)
}

/// A response with a text body (or none: `body` must be `None` for 204/304).
pub fn text(status: u16, headers: &Headers, body: Option<&str>) -> Result<Response, EdgeError> {
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(headers.as_ref());
    Response::new_with_opt_str_and_init(body, &init).map_err(EdgeError::js)
}

/// A response streaming `body` (a KV value) without copying it through Rust.
pub fn stream(
    status: u16,
    headers: &Headers,
    body: &ReadableStream,
) -> Result<Response, EdgeError> {
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(headers.as_ref());
    Response::new_with_opt_readable_stream_and_init(Some(body), &init).map_err(EdgeError::js)
}

/// A response with bytes held in JS memory (a kept KV page); the
/// constructor copies them, so the same array can answer again.
pub fn bytes(
    status: u16,
    headers: &Headers,
    body: &js_sys::Uint8Array,
) -> Result<Response, EdgeError> {
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(headers.as_ref());
    Response::new_with_opt_js_u8_array_and_init(Some(body), &init).map_err(EdgeError::js)
}

/// Headers of an HTML page: `extra`, the type and the security headers
/// (`cityboard_protocol::headers`).
pub fn html_headers(extra: &[(&str, &str)]) -> Result<Headers, EdgeError> {
    let h = headers(extra)?;
    h.set("content-type", HTML).map_err(EdgeError::js)?;
    for (name, value) in SECURITY_HEADERS {
        h.set(name, value).map_err(EdgeError::js)?;
    }
    Ok(h)
}

/// An HTML page the Worker rendered.
pub fn html(status: u16, extra: &[(&str, &str)], page: &str) -> Result<Response, EdgeError> {
    text(status, &html_headers(extra)?, Some(page))
}

thread_local! {
    /// Fixed pages (the 410 of a deleted post) with their status and
    /// headers, prepared once per isolate: a tombstone kept in the isolate
    /// is answered with one runtime call, as a kept page is.
    static KEPT_PAGES: RefCell<HashMap<&'static str, (ResponseInit, String)>> =
        RefCell::new(HashMap::new());
}

/// A fixed HTML page named `name`, rendered by `page` and given its
/// headers once per isolate.
pub fn kept_html(
    name: &'static str,
    status: u16,
    extra: &[(&str, &str)],
    page: impl FnOnce() -> String,
) -> Result<Response, EdgeError> {
    let kept = KEPT_PAGES.with(|m| {
        m.borrow()
            .get(name)
            .map(|(init, body)| Response::new_with_opt_str_and_init(Some(body), init))
    });
    if let Some(res) = kept {
        return res.map_err(EdgeError::js);
    }
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(html_headers(extra)?.as_ref());
    let body = page();
    let res = Response::new_with_opt_str_and_init(Some(&body), &init).map_err(EdgeError::js)?;
    KEPT_PAGES.with(|m| m.borrow_mut().insert(name, (init, body)));
    Ok(res)
}

/// A JSON body (problem documents, the bulk route's answer).
pub fn json(status: u16, content_type: &str, body: &str) -> Result<Response, EdgeError> {
    text(
        status,
        &headers(&[("content-type", content_type)])?,
        Some(body),
    )
}

/// Most redirect answers an isolate keeps prepared; past this, the rest are
/// built per request. Locations are `{scheme}://{city host}{:port}/`, so a
/// real isolate needs a handful, and a visitor sending odd ports cannot
/// make the map grow.
const MAX_KEPT_REDIRECTS: usize = 64;

thread_local! {
    /// The `ResponseInit` (status and headers) of each redirect answered,
    /// by status, location and extra headers. The apex redirect is the
    /// hottest answer and one of a few for every visitor: building it is
    /// seven calls into the runtime, answering from a kept init one, since
    /// the `Response` constructor copies the init's headers into the
    /// response's own.
    static KEPT_REDIRECTS: RefCell<HashMap<String, ResponseInit>> = RefCell::new(HashMap::new());
}

/// A redirect that browsers and caches must not keep: the answer depends on
/// the visitor (cookie, location). Its status and headers are prepared once
/// per isolate for each distinct answer (`KEPT_REDIRECTS`).
pub fn redirect(
    status: u16,
    location: &str,
    extra: &[(&str, &str)],
) -> Result<Response, EdgeError> {
    let mut key = format!("{status} {location}");
    for (name, value) in extra {
        let _ = write!(key, "\n{name}: {value}");
    }
    // A kept init answers inside the borrow: no handle to clone per request.
    let kept = KEPT_REDIRECTS.with(|m| {
        m.borrow()
            .get(&key)
            .map(|init| Response::new_with_opt_str_and_init(None, init))
    });
    if let Some(res) = kept {
        return res.map_err(EdgeError::js);
    }
    let h = headers(&[
        ("location", location),
        ("cache-control", "private, no-store"),
    ])?;
    for (name, value) in extra {
        h.append(name, value).map_err(EdgeError::js)?;
    }
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(h.as_ref());
    let res = Response::new_with_opt_str_and_init(None, &init).map_err(EdgeError::js)?;
    KEPT_REDIRECTS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < MAX_KEPT_REDIRECTS {
            m.insert(key, init);
        }
    });
    Ok(res)
}

/// Plain-text answer (health check).
pub fn plain(status: u16, body: &str) -> Result<Response, EdgeError> {
    text(
        status,
        &headers(&[("content-type", "text/plain; charset=utf-8")])?,
        Some(body),
    )
}

/// The origin's response with one header added. Responses from `fetch` have
/// immutable headers, so this makes a new response around the same body.
pub fn with_header(res: Response, name: &str, value: &str) -> Response {
    with_headers(res, &[(name, value)])
}

/// The origin's response with the security headers set (replacing the
/// origin's own) when it is an HTML page; anything else as it came.
pub fn secure(res: Response) -> Response {
    let html = res
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|t| is_html(&t));
    if html {
        with_headers(res, SECURITY_HEADERS)
    } else {
        res
    }
}

/// The origin's response with `pairs` set; the response unchanged when the
/// runtime refuses (never an error: the page matters more than a header).
fn with_headers(res: Response, pairs: &[(&str, &str)]) -> Response {
    let headers = match web_sys::Headers::new_with_headers(&res.headers()) {
        Ok(h) => h,
        Err(_) => return res,
    };
    for (name, value) in pairs {
        if headers.set(name, value).is_err() {
            return res;
        }
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(res.status());
    init.set_status_text(&res.status_text());
    init.set_headers(headers.as_ref());
    match Response::new_with_opt_readable_stream_and_init(res.body().as_ref(), &init) {
        Ok(new) => new,
        Err(_) => res,
    }
}

/// Describes a thrown JS value for logs and error details.
pub fn describe(value: &JsValue) -> String {
    if let Some(s) = value.as_string() {
        return s;
    }
    js_sys::Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}
