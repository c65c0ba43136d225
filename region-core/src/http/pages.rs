//! The site's own pages (city home, new/edit post, my posts, report,
//! log-out, sitemap, static files) and what every page handler shares:
//! the request's public host, its city and its layout.

pub mod errors;
pub mod queries;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::db::queries::ListPosts;
use crate::error::{ApiError, Problem};
use crate::http::edge_trust::Forwarded;
use crate::http::posts::read_post;
use crate::http::{AppState, AuthUser, City, Freshness};
use crate::model::{Id, PostStatus};
use crate::render::{self, Chrome, PostValues, Viewer, assets};
use crate::token::Consistency;

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

/// How many newest posts the city home shows.
const HOME_NEWEST: i64 = 10;

/// The city home: a search box, the categories with their counts of live
/// posts, and the newest posts.
#[utoipa::path(get, path = "/", tag = "pages",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The city home", body = String, content_type = "text/html"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn home(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: Result<AuthUser, ApiError>,
) -> Result<Response, ApiError> {
    let now = st.clock.now();
    let counts = queries::CategoryCounts {
        city: ctx.city.clone(),
        now,
    };
    let newest = ListPosts {
        city: ctx.city.clone(),
        now,
        limit: HOME_NEWEST,
        ..ListPosts::default()
    };
    let (counts, newest) = tokio::try_join!(
        st.router.read(&ctx.city, &Consistency::Any, &counts),
        st.router.read(&ctx.city, &Consistency::Any, &newest),
    )?;
    st.metrics.read_by(&counts.node);
    st.metrics.read_by(&newest.node);
    let chrome = ctx.chrome("/", viewer_of(&user));
    let html = render::home_page(chrome, &counts.value, &newest.value);
    // A visitor's home says "Log out": not one for a shared cache.
    Ok(if user.is_ok() {
        personal(html)
    } else {
        Html(html).into_response()
    })
}

/// The new-post form (logged in only), posting `POST /post`.
#[utoipa::path(get, path = "/post/new", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The form, with the session's CSRF token", body = String, content_type = "text/html"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn new_post(State(st): State<AppState>, ctx: PageCtx, user: AuthUser) -> Response {
    let csrf = st.csrf.for_session(&user.claims.jti);
    let values = PostValues::default();
    personal(render::post_form(
        ctx.chrome("/post/new", Viewer::LoggedIn),
        None,
        &csrf,
        &values,
        &[],
    ))
}

/// One of the user's live posts, for a page that changes it: a deleted
/// or expired post is a 404, another user's a 403.
async fn own_live_post(
    st: &AppState,
    city: &str,
    fresh: &Consistency,
    user: &AuthUser,
    id: &str,
) -> Result<crate::model::Post, ApiError> {
    let id: Id = id.parse().map_err(|_| ApiError::NotFound)?;
    let post = read_post(st, city, fresh, id).await?;
    if post.status != PostStatus::Live || post.expires_at <= st.clock.now() {
        return Err(ApiError::NotFound);
    }
    if post.user_id != user.id {
        return Err(ApiError::Forbidden(
            "this post belongs to another user".into(),
        ));
    }
    Ok(post)
}

/// The edit form of one of the user's posts, filled with its fields.
#[utoipa::path(get, path = "/post/{id}/edit", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "The form filled with the post, with the session's CSRF token", body = String, content_type = "text/html"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn edit_post(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: AuthUser,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let post = own_live_post(&st, &ctx.city, &fresh, &user, &id).await?;
    let csrf = st.csrf.for_session(&user.claims.jti);
    let id = post.id.to_string();
    Ok(personal(render::post_form(
        ctx.chrome(&format!("/post/{id}/edit"), Viewer::LoggedIn),
        Some(&id),
        &csrf,
        &PostValues::of(&post),
        &[],
    )))
}

/// The user's posts in this city, read from the primary: what they just
/// did is there, whatever the replicas' lag.
#[utoipa::path(get, path = "/my", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user's posts with renew, edit and delete controls", body = String, content_type = "text/html"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn my_posts(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: AuthUser,
) -> Result<Response, ApiError> {
    let (_, pools) = st.router.route(&ctx.city)?;
    let posts = queries::own_posts(&pools.primary, &ctx.city, user.id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, city = %ctx.city, "reading a user's posts");
            ApiError::ShardUnavailable(ctx.city.clone())
        })?;
    let csrf = st.csrf.for_session(&user.claims.jti);
    Ok(personal(render::my_page(
        ctx.chrome("/my", Viewer::LoggedIn),
        &csrf,
        &posts,
        st.clock.now(),
    )))
}

/// The report form of a post, per visitor (the shared post page cannot
/// carry a CSRF token). Without a session: a page that asks to log in.
#[utoipa::path(get, path = "/post/{id}/report", tag = "pages",
    security((), ("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "The report form (or, without a session, a log-in prompt)", body = String, content_type = "text/html"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report_form(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: Result<AuthUser, ApiError>,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: Id = id.parse().map_err(|_| ApiError::NotFound)?;
    let post = read_post(&st, &ctx.city, &fresh, id).await?;
    if post.status != PostStatus::Live || post.expires_at <= st.clock.now() {
        return Err(ApiError::NotFound);
    }
    let path = format!("/post/{id}/report");
    let Ok(user) = user else {
        return Ok(Html(render::login_to_continue(
            ctx.chrome(&path, Viewer::Anonymous),
            "report a post",
        ))
        .into_response());
    };
    let csrf = st.csrf.for_session(&user.claims.jti);
    Ok(personal(render::report_form(
        ctx.chrome(&path, Viewer::LoggedIn),
        &post,
        &csrf,
    )))
}

/// The log-out page: one button that posts `POST /logout` with the
/// session's CSRF token (a link may not log anyone out: anything can
/// follow a link).
#[utoipa::path(get, path = "/logout", tag = "pages",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The log-out button (or, without a session, a log-in link)", body = String, content_type = "text/html"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout_page(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: Result<AuthUser, ApiError>,
) -> Response {
    let csrf = user
        .as_ref()
        .ok()
        .map(|u| st.csrf.for_session(&u.claims.jti));
    personal(render::logout_page(
        ctx.chrome("/logout", viewer_of(&user)),
        csrf.as_deref(),
    ))
}

/// The city's live posts for search engines, with absolute URLs.
#[utoipa::path(get, path = "/sitemap.xml", tag = "pages",
    responses(
        (status = 200, description = "The sitemap of the city's live posts", body = String, content_type = "application/xml"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sitemap(State(st): State<AppState>, ctx: PageCtx) -> Result<Response, ApiError> {
    let query = queries::LivePostUrls {
        city: ctx.city.clone(),
        now: st.clock.now(),
    };
    let served = st.router.read(&ctx.city, &Consistency::Any, &query).await?;
    st.metrics.read_by(&served.node);
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        render::sitemap(&ctx.origin, &served.value),
    )
        .into_response())
}

/// The apex's city picker, for the shared pages, which cannot know the
/// apex's host and link `/cities` on the city's own.
#[utoipa::path(get, path = "/cities", tag = "pages",
    responses(
        (status = 303, description = "To the apex's city picker"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cities(ctx: PageCtx) -> Redirect {
    Redirect::to(&format!("{}/cities", ctx.apex))
}

/// A stylesheet or script by its fingerprinted name, cached for a year.
#[utoipa::path(get, path = "/static/{name}", tag = "pages",
    params(("name" = String, Path, description = "A fingerprinted asset name (the document lists this build's)")),
    responses(
        (status = 200, description = "The asset, `Cache-Control: public, max-age=31536000, immutable`", content(
            (String = "text/css"),
            (String = "text/javascript"))),
        (status = 404, description = "No such asset (a stale or made-up name)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn static_file(Path(name): Path<String>) -> Result<Response, ApiError> {
    let asset = assets::get(&name).ok_or(ApiError::NotFound)?;
    let mut res = (StatusCode::OK, asset.bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(res)
}

/// `POST /post/{id}/edit`: the edit form's submission, the same write as
/// `PUT /post/{id}` (a form cannot send PUT).
#[utoipa::path(post, path = "/post/{id}/edit", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    request_body(content((crate::http::writes::PostForm = "application/x-www-form-urlencoded"))),
    responses(
        (status = 303, description = "Edited (or accepted): to the post"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named (a browser gets the form again, values kept)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_edit(
    st: State<AppState>,
    user: AuthUser,
    ctx: PageCtx,
    id: Path<String>,
    headers: HeaderMap,
    body: crate::http::session::Body,
) -> Result<Response, ApiError> {
    crate::http::writes::update_post(st, user, ctx, id, headers, body).await
}

/// `POST /post/{id}/delete`: the delete button's submission, the same
/// write as `DELETE /post/{id}` (a form cannot send DELETE).
#[utoipa::path(post, path = "/post/{id}/delete", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    request_body(content((crate::http::session::SessionForm = "application/x-www-form-urlencoded")),
        description = "Optional; a form carries its CSRF token here"),
    responses(
        (status = 200, description = "Deleted (or already deleted); a request without a form body is answered as `DELETE /post/{id}`", body = crate::http::commands::CommandView),
        (status = 202, description = "Accepted, not applied yet (no form body): `Content-Location` is the status URL", body = crate::http::commands::CommandView),
        (status = 303, description = "Deleted (or accepted): to the user's posts"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_delete(
    st: State<AppState>,
    user: AuthUser,
    city: City,
    id: Path<String>,
    headers: HeaderMap,
    body: crate::http::session::Body,
) -> Result<Response, ApiError> {
    crate::http::writes::delete_post(st, user, city, id, headers, body).await
}
