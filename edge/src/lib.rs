//! The cityboard edge Worker (design §4, issue 6).
//!
//! - The apex sends each visitor to their city ([`apex`]): cookie, then
//!   `request.cf`, then the client IP in the embedded IPv4 range table
//!   ([`geo`]), else the city picker.
//! - City hosts serve post pages from KV with no origin call ([`post`]) and
//!   pass everything else to the city's region origin, signed ([`origin`]);
//!   anonymous GETs are cached briefly ([`cache`]).
//! - The internal bulk KV route lets the local publisher write KV ([`bulk`]).
//!
//! This file is only the router. Every handler returns
//! `Result<Response, EdgeError>` ([`error`] describes the failures) and the
//! one mapping to a response is [`respond::error`]; nothing on a request path panics, since a panic resets the
//! wasm instance and kills every request in flight on it.

pub mod apex;
pub mod body;
pub mod bulk;
pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod geo;
pub mod hot;
pub mod html;
pub mod incoming;
pub mod origin;
pub mod post;
pub mod respond;
#[cfg(feature = "test-mode")]
pub mod testmode;

use std::rc::Rc;

use cityboard_protocol::kv::BULK_PATH;
use geo_router::{SiteHost, parse_host};
use wasm_bindgen::prelude::wasm_bindgen;
use web_sys::{Request, Response};
use worker::{Context, Env, event};

use crate::config::Config;
use crate::error::EdgeError;
use crate::incoming::Incoming;

/// Entry point of every request the Worker receives that [`answer_now`]
/// left unanswered (`edge/entry.js` asks that first), and of every request
/// when it is called alone.
#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let (incoming, config) = match prepare(&req, &env) {
        Ok(prepared) => prepared,
        Err(answer) => return answer,
    };
    let result = match route_now(&incoming, &config) {
        Step::Answer(result) => result,
        Step::Later(later) => route_later(later, &incoming, &config, &env, &ctx).await,
    };
    finish(result, &incoming, &config)
}

/// Answers, synchronously, a request that needs no I/O: the apex (its
/// redirects and picker), a post page kept in this isolate ([`hot`]), and
/// what the request alone makes an error. `undefined` for anything else,
/// which `edge/entry.js` then passes to the async [`fetch`].
///
/// Why a second export: an async export answers through a Rust future, a JS
/// promise and a microtask turn even when nothing is awaited; a throwaway
/// Rust Worker answering a static 302 through the async export reached
/// only 0.77-1.07 of the JavaScript Worker (BENCHMARKS.md, edge round 7;
/// round 8 is this path's). A request this leaves to `fetch`
/// is taken apart twice; those all wait on KV or an origin, so it does not
/// show.
#[wasm_bindgen(js_name = answerNow)]
pub fn answer_now(req: Request, env: Env) -> Option<Response> {
    let (incoming, config) = match prepare(&req, &env) {
        Ok(prepared) => prepared,
        Err(answer) => return answer.ok(),
    };
    match route_now(&incoming, &config) {
        // An answer that cannot even be built is left to `fetch`, which
        // builds it again and says why.
        Step::Answer(result) => finish(result, &incoming, &config).ok(),
        Step::Later(_) => None,
    }
}

/// Takes the request apart and reads the configuration, or answers at once
/// (health check, a request or configuration that is no good).
fn prepare(req: &Request, env: &Env) -> Result<(Incoming, Rc<Config>), worker::Result<Response>> {
    // `Accept` is read only when an answer depends on it (errors, post
    // pages), not on every redirect.
    // `Clone::clone` copies the reference; `Request::clone` would copy the
    // request and tee its body.
    let incoming = match Incoming::new(Clone::clone(req)) {
        Ok(incoming) => incoming,
        Err(e) => {
            let wants_html = incoming::wants_html(&req.headers());
            return Err(respond::error(e, wants_html, None).map_err(last_resort));
        }
    };
    if incoming.path == "/healthz" {
        return Err(respond::plain(200, "ok").map_err(last_resort));
    }
    match config::get(env) {
        Ok(config) => Ok((incoming, config)),
        Err(e) => {
            let wants_html = incoming::wants_html(&incoming.headers);
            Err(respond::error(e, wants_html, None).map_err(last_resort))
        }
    }
}

/// A route's result as the visitor gets it: an error becomes its page.
fn finish(
    result: Result<Response, EdgeError>,
    incoming: &Incoming,
    config: &Config,
) -> worker::Result<Response> {
    result.or_else(|e| {
        let base = incoming.base_of(&config.apex);
        let wants_html = incoming::wants_html(&incoming.headers);
        respond::error(e, wants_html, Some((config, &base))).map_err(last_resort)
    })
}

/// Only when even an error page cannot be built: workers-rs answers a bare 500.
fn last_resort(e: EdgeError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// What the router decided without I/O.
enum Step {
    /// The answer, or the error to answer with.
    Answer(Result<Response, EdgeError>),
    /// The route that needs KV, the cache, an origin or the body.
    Later(Later),
}

/// The routes [`route_later`] serves, with what [`route_now`] found out.
enum Later {
    Bulk,
    /// A test route (test-mode builds only).
    #[cfg(feature = "test-mode")]
    Test,
    /// A browser's post page that was not kept, or that must go to the
    /// origin (a newer version in the visitor's cookie, an expired page).
    Post {
        city: String,
        id: u64,
    },
    /// Any other read on a city host.
    Read {
        city: String,
    },
    /// A write on a city host.
    Write {
        city: String,
    },
}

/// The origin's operator endpoints: for the operator on the origin's own
/// network, never for a visitor. The edge answers 404 without calling the
/// origin, whatever the host.
const OPERATOR_PATHS: [&str; 2] = ["/metrics", "/old_posts"];

fn route_now(req: &Incoming, config: &Config) -> Step {
    if OPERATOR_PATHS.contains(&req.path.as_str()) {
        return Step::Answer(Err(EdgeError::NotFound));
    }
    if req.path == BULK_PATH {
        return Step::Later(Later::Bulk);
    }
    #[cfg(feature = "test-mode")]
    if config.test_mode && req.path.starts_with(testmode::PREFIX) {
        return Step::Later(Later::Test);
    }
    let city = match parse_host(&req.host, &config.apex) {
        Ok(SiteHost::Apex) => return Step::Answer(apex::handle(req, config)),
        Ok(SiteHost::City(slug)) => slug,
        Err(_) => return Step::Answer(Err(EdgeError::NotOurHost)),
    };
    if config.city(&city).is_none() {
        return Step::Answer(Err(EdgeError::CityNotServed(city)));
    }
    let post_id = match req.path.strip_prefix("/post/") {
        // The new-post form is the origin's page, not a post id.
        Some(post::NEW_POST_SEGMENT) => None,
        // Only `/post/{id}` itself; `/post/{id}/renew` and the like are the origin's.
        Some(segment) if !segment.contains('/') => match post::parse_id(segment) {
            Some(id) => Some(id),
            None => return Step::Answer(Err(EdgeError::NotFound)),
        },
        _ => None,
    };
    if !req.is_read() {
        return Step::Later(Later::Write { city });
    }
    match post_id.filter(|_| incoming::wants_html(&req.headers)) {
        Some(id) => match post::kept_page(req, config, &city, id) {
            Some(result) => Step::Answer(result),
            None => Step::Later(Later::Post { city, id }),
        },
        None => Step::Later(Later::Read { city }),
    }
}

async fn route_later(
    later: Later,
    req: &Incoming,
    config: &Config,
    env: &Env,
    ctx: &Context,
) -> Result<Response, EdgeError> {
    match later {
        Later::Bulk => bulk::handle(req, config, env).await,
        #[cfg(feature = "test-mode")]
        Later::Test => testmode::handle(req, config).await,
        Later::Post { city, id } => post::page(req, config, env, &city, id).await,
        Later::Read { city } => cache::get(req, config, env, ctx, &city).await,
        Later::Write { city } if body::streamed(&req.method, &req.path) => {
            origin::forward(req, config, env, &city, origin::Outgoing::Streamed).await
        }
        Later::Write { city } => {
            let body = body::read(req, body::FORWARD_LIMIT).await?;
            origin::forward(req, config, env, &city, origin::Outgoing::Bytes(&body)).await
        }
    }
}
