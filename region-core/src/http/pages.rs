//! The site's own pages (city home, new/edit post, my posts, report,
//! log-out, sitemap, static files). What every page handler shares (the
//! request's public host, its city and its layout) is in `chrome`.

pub mod queries;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::db::queries::ListPosts;
use crate::http::chrome::{PageCtx, personal, viewer_of};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Sender;
use crate::http::idempotency;
use crate::http::posts::read_post;
use crate::http::{AppState, AuthUser, City, Freshness};
use crate::model::{Id, PostStatus};
use crate::render::{self, PostValues, Viewer, assets};
use crate::token::Consistency;

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
        &idempotency::form_key(),
        &values,
        &[],
    ))
}

/// One of the user's live posts, for a page that changes it: a deleted
/// or expired post is a 404, another user's a 403.
pub(crate) async fn own_live_post(
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
        &idempotency::form_key(),
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
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named (a browser gets the form again, values kept); or an Idempotency-Key reused for another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_edit(
    st: State<AppState>,
    user: AuthUser,
    sender: Sender,
    ctx: PageCtx,
    id: Path<String>,
    headers: HeaderMap,
    body: crate::http::forms::Body,
) -> Result<Response, ApiError> {
    crate::http::writes::update_post(st, user, sender, ctx, id, headers, body).await
}

/// `POST /post/{id}/delete`: the delete button's submission, the same
/// write as `DELETE /post/{id}` (a form cannot send DELETE).
#[utoipa::path(post, path = "/post/{id}/delete", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    request_body(content((crate::http::forms::SessionForm = "application/x-www-form-urlencoded")),
        description = "Optional; a form carries its CSRF token here"),
    responses(
        (status = 200, description = "Deleted (or already deleted); a request without a form body is answered as `DELETE /post/{id}`", body = crate::http::commands::CommandView),
        (status = 202, description = "Accepted, not applied yet (no form body): `Content-Location` is the status URL", body = crate::http::commands::CommandView),
        (status = 303, description = "Deleted (or accepted): to the user's posts"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_delete(
    st: State<AppState>,
    user: AuthUser,
    sender: Sender,
    city: City,
    id: Path<String>,
    headers: HeaderMap,
    body: crate::http::forms::Body,
) -> Result<Response, ApiError> {
    crate::http::writes::delete_post(st, user, sender, city, id, headers, body).await
}
