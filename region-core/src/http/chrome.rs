//! What every page handler shares: the request's public host and city
//! (`PageCtx`), and the page's layout (`Chrome`) for a visitor with or
//! without a session.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};

use crate::http::edge_trust::Forwarded;
use crate::http::error::ApiError;
use crate::http::{AppState, AuthUser, City};
use crate::render::{Chrome, Viewer};

/// What a page handler knows of its request: the city and the public
/// origins of its host and of the apex (for canonical URLs and the city
/// picker).
#[derive(Debug, Clone)]
pub struct PageCtx {
    /// The host's city.
    pub city: String,
    /// `scheme://host[:port]` the visitor asked for.
    pub origin: String,
    /// `scheme://apex[:port]`: where the city picker is.
    pub apex: String,
}

/// The host the visitor asked for: the edge's signed `x-forwarded-host`
/// when the request came through it, else `Host` (development).
pub fn public_host(headers: &HeaderMap, forwarded: Option<&Forwarded>) -> String {
    match forwarded {
        Some(f) if !f.host.is_empty() => f.host.clone(),
        _ => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
    .to_ascii_lowercase()
}

/// The visitor's scheme. The edge does not (yet) sign it, and the hop to
/// the origin says nothing about it, so it is decided from the host: the
/// local stack serves `*.localhost` over plain HTTP, every public host is
/// HTTPS only.
pub fn scheme_of(host: &str) -> &'static str {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let local = name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || name.starts_with('[');
    if local { "http" } else { "https" }
}

impl PageCtx {
    /// The context of a request of `city` to public `host` (may be empty:
    /// unknown).
    pub fn of(st: &AppState, city: &str, host: &str) -> PageCtx {
        let host = host.to_ascii_lowercase();
        let scheme = scheme_of(&host);
        let apex = match host.strip_prefix(city).and_then(|h| h.strip_prefix('.')) {
            Some(apex) if !apex.is_empty() => apex.to_string(),
            _ => st.apex.clone(),
        };
        let origin = if host.is_empty() {
            format!("{scheme}://{city}.{}", st.apex)
        } else {
            format!("{scheme}://{host}")
        };
        PageCtx {
            city: city.to_string(),
            origin,
            apex: format!("{scheme}://{apex}"),
        }
    }

    /// The layout of the page at `path` for `viewer`.
    pub fn chrome(&self, path: &str, viewer: Viewer) -> Chrome {
        Chrome::new(
            &self.city,
            format!("{}{path}", self.origin),
            format!("{}/cities", self.apex),
            viewer,
        )
    }
}

impl FromRequestParts<AppState> for PageCtx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let City(city) = City::from_request_parts(parts, st).await?;
        let host = public_host(&parts.headers, parts.extensions.get::<Forwarded>());
        Ok(PageCtx::of(st, &city, &host))
    }
}

/// The layout of a page whose host names no city of this region (the
/// account forms answer on any host): no city name, the picker at the
/// configured apex.
pub fn neutral_chrome(st: &AppState, path: &str, viewer: Viewer) -> Chrome {
    Chrome::new(
        "cityboard",
        path.to_string(),
        format!("//{}/cities", st.apex),
        viewer,
    )
}

/// The layout of `path` for a request whose city may be unknown.
pub fn chrome_of(
    st: &AppState,
    ctx: &Result<PageCtx, ApiError>,
    path: &str,
    viewer: Viewer,
) -> Chrome {
    match ctx {
        Ok(ctx) => ctx.chrome(path, viewer),
        Err(_) => neutral_chrome(st, path, viewer),
    }
}

/// The header's account links for a request with or without a session.
pub fn viewer_of(user: &Result<AuthUser, ApiError>) -> Viewer {
    if user.is_ok() {
        Viewer::LoggedIn
    } else {
        Viewer::Anonymous
    }
}

/// A page with personal content (a CSRF token, the user's posts): never
/// stored by a cache on the way.
pub fn personal(html: String) -> Response {
    ([(header::CACHE_CONTROL, "private, no-store")], Html(html)).into_response()
}
