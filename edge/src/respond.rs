//! Building responses as raw `web_sys::Response`s, error answers included.
//!
//! workers-rs' own `Response` converts to the JS object with `unwrap()`, which
//! panics (and resets the instance, killing every request in flight) when the
//! JS constructor throws, e.g. for a 304 with a body. Everything here returns
//! a `Result` instead, and origin responses pass through untouched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use cityboard_protocol::headers::{SECURITY_HEADERS, is_html};
use cityboard_protocol::problem::PROBLEM_TYPE_BASE;
use web_sys::{Headers, ReadableStream, Response, ResponseInit};

use crate::config::Config;
use crate::error::{EdgeError, RETRY_AFTER_SECS};
use crate::html;

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

/// The answer to a failed request: the picker page for unknown hosts and
/// cities (when the configuration and the apex base URL are known), an HTML
/// page for browsers, a problem document for everyone else.
pub fn error(
    err: EdgeError,
    wants_html: bool,
    picker: Option<(&Config, &str)>,
) -> Result<Response, EdgeError> {
    let status = err.status();
    if matches!(
        err,
        EdgeError::Config(_) | EdgeError::Internal(_) | EdgeError::OriginUnavailable { .. }
    ) {
        worker::console_error!("edge error: {err}");
    }
    let mut extra: Vec<(&str, String)> = vec![("cache-control", "no-store".into())];
    if let EdgeError::OriginUnavailable { .. } = err {
        extra.push(("retry-after", RETRY_AFTER_SECS.to_string()));
    }
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if wants_html {
        let page = match (&err, picker) {
            (EdgeError::NotOurHost | EdgeError::CityNotServed(_), Some((config, base))) => {
                html::picker(config, base, Some(&err.detail()))
            }
            _ => html::message_page(&title(status), &err.detail()),
        };
        return html(status, &extra, &page);
    }
    let body = serde_json::json!({
        "type": format!("{PROBLEM_TYPE_BASE}{}", err.kind()),
        "title": title(status),
        "status": status,
        "detail": err.detail(),
    });
    let h = headers(&extra)?;
    h.set("content-type", "application/problem+json")
        .map_err(EdgeError::js)?;
    text(status, &h, Some(&body.to_string()))
}

/// Reason phrase used as the problem title and the page heading.
fn title(status: u16) -> String {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        404 => "Not found",
        405 => "Method not allowed",
        410 => "Gone",
        413 => "Payload too large",
        503 => "Service unavailable",
        _ => "Internal error",
    }
    .to_string()
}
