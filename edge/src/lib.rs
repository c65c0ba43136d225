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
//! `Result<Response, EdgeError>` and the one mapping to a response is in
//! [`error`]; nothing on a request path panics, since a panic resets the
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
pub mod testmode;

use cityboard_protocol::kv::BULK_PATH;
use geo_router::{SiteHost, parse_host};
use web_sys::{Request, Response};
use worker::{Context, Env, event};

use crate::config::Config;
use crate::error::EdgeError;
use crate::incoming::Incoming;

/// Entry point of every request the Worker receives.
#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    // `Accept` is read only when an answer depends on it (errors, post
    // pages), not on every redirect.
    // `Clone::clone` copies the reference; `Request::clone` would copy the
    // request and tee its body.
    let incoming = match Incoming::new(Clone::clone(&req)) {
        Ok(incoming) => incoming,
        Err(e) => {
            let wants_html = incoming::wants_html(&req.headers());
            return e.into_response(wants_html, None).map_err(last_resort);
        }
    };
    if incoming.path == "/healthz" {
        return respond::plain(200, "ok").map_err(last_resort);
    }
    let config = match config::get(&env) {
        Ok(config) => config,
        Err(e) => {
            let wants_html = incoming::wants_html(&incoming.headers);
            return e.into_response(wants_html, None).map_err(last_resort);
        }
    };
    match route(&incoming, &config, &env, &ctx).await {
        Ok(res) => Ok(res),
        Err(e) => {
            let base = incoming.base_of(&config.apex);
            let wants_html = incoming::wants_html(&incoming.headers);
            e.into_response(wants_html, Some((&config, &base)))
                .map_err(last_resort)
        }
    }
}

/// Only when even an error page cannot be built: workers-rs answers a bare 500.
fn last_resort(e: EdgeError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

async fn route(
    req: &Incoming,
    config: &Config,
    env: &Env,
    ctx: &Context,
) -> Result<Response, EdgeError> {
    if req.path == BULK_PATH {
        return bulk::handle(req, config, env).await;
    }
    if config.test_mode && req.path.starts_with(testmode::PREFIX) {
        return testmode::handle(req, config).await;
    }
    let city = match parse_host(&req.host, &config.apex) {
        Ok(SiteHost::Apex) => return apex::handle(req, config, env),
        Ok(SiteHost::City(slug)) => slug,
        Err(_) => return Err(EdgeError::NotOurHost),
    };
    if config.city(&city).is_none() {
        return Err(EdgeError::CityNotServed(city));
    }
    let post_id = match req.path.strip_prefix("/post/") {
        // Only `/post/{id}` itself; `/post/{id}/renew` and the like are the origin's.
        Some(segment) if !segment.contains('/') => {
            Some(post::parse_id(segment).ok_or(EdgeError::NotFound)?)
        }
        _ => None,
    };
    if req.is_read() {
        if let Some(id) = post_id.filter(|_| incoming::wants_html(&req.headers)) {
            return post::page(req, config, env, &city, id).await;
        }
        return cache::get(req, config, env, ctx, &city).await;
    }
    let body = body::read(req, body::FORWARD_LIMIT).await?;
    origin::forward(req, config, env, &city, Some(&body)).await
}
