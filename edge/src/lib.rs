//! The cityboard edge Worker.
//!
//! For now it answers only `/healthz`; the edge issue adds the GeoIP
//! redirect, KV pages and signed forwarding.

use worker::{Context, Env, Request, Response, Result, event};

/// Entry point of every request the Worker receives.
#[event(fetch)]
pub async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    match req.path().as_str() {
        "/healthz" => Response::ok("ok"),
        _ => Response::error("not found", 404),
    }
}
