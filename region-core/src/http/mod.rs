//! The HTTP api (axum): one module per resource, extractors in `extract`,
//! the OpenAPI document in `openapi`.

pub mod accounts;
pub mod chrome;
pub mod commands;
pub mod edge_trust;
pub mod error;
pub mod error_pages;
pub mod extract;
pub mod forms;
pub mod headers;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod pages;
pub mod photos;
pub mod posts;
pub mod search_terms;
pub mod session;
pub mod session_cookie;
pub mod state;
pub mod uploads;
pub mod writes;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use extract::{AuthUser, City, ClientIp, Freshness, Input, RYW_COOKIE};
pub use state::AppState;

use crate::http::error::ApiError;

/// Requests carry no more than this (posts are text); photo uploads have
/// their own limit (`photos::UPLOAD_LIMIT`).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The api's routes with their middleware.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(pages::home))
        .route("/post/new", get(pages::new_post))
        .route(
            "/post/{id}/edit",
            get(pages::edit_post).post(pages::submit_edit),
        )
        .route("/post/{id}/delete", post(pages::submit_delete))
        .route("/post/{id}/report", get(pages::report_form))
        // The upload streams up to ten photos: its own body limit (the
        // handler holds each photo to 10 MB).
        .route(
            "/post/{id}/photos",
            get(photos::photos_page)
                .post(photos::upload)
                .layer(DefaultBodyLimit::max(uploads::UPLOAD_LIMIT)),
        )
        .route("/media/{post}/{photo}/{file}", get(photos::media))
        .route("/my", get(pages::my_posts))
        .route("/sitemap.xml", get(pages::sitemap))
        .route("/cities", get(pages::cities))
        .route("/static/{name}", get(pages::static_file))
        .route(
            "/post/{id}",
            get(posts::get_post)
                .put(writes::update_post)
                .delete(writes::delete_post),
        )
        .route("/post", get(posts::list_posts).post(writes::create_post))
        .route(
            "/post/{id}/renew",
            get(writes::renew_form).post(writes::renew_post),
        )
        .route("/report", post(writes::report))
        .route("/commands/{id}", get(commands::get_command))
        .route("/signup", get(accounts::signup_form).post(accounts::signup))
        .route("/login", get(accounts::login_form).post(accounts::login))
        .route("/logout", get(pages::logout_page).post(session::logout))
        .route("/session/renew", post(session::renew))
        .route("/me", get(session::me))
        .route("/user", delete(session::delete_user))
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        // Inside the problem and metrics layers: a refused signature is a
        // problem body and is counted.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge_trust::verify,
        ))
        .layer(axum::middleware::from_fn(problems_everywhere))
        // Outside the problem layer: whatever error a browser gets, it gets
        // it as a page.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error_pages::html_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Belt and braces: a panic anywhere becomes a 500 problem, never a
        // dropped connection (handlers are written not to panic).
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ))
        // Outermost: every HTML answer, error pages included.
        .layer(axum::middleware::map_response(headers::security_headers))
        .with_state(state)
}

/// The operator's routes, on a listener of their own (`serve
/// --operator-listen`) that the edge never forwards to and a deployment
/// keeps inside its network: `/metrics` for Prometheus, `DELETE /old_posts`
/// (its own bearer token too), `/healthz`. Unsigned, and with no request
/// timeout: an archive run takes as long as it takes.
pub fn operator_app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics::metrics))
        .route(
            "/old_posts",
            axum::routing::delete(operator::delete_old_posts),
        )
        .route("/healthz", get(health::healthz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(problems_everywhere))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Stops a request that runs past the api's request timeout with a 503
/// (counted, and a page for a browser, like any error): a client, or the
/// edge with its own shorter timeout, has long given up on it, and what it
/// holds (connections, a password-hash slot) is better given to the next.
/// (The operator's listener has none: `operator_app`.)
async fn request_timeout(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = if uploads::is_upload(&req) {
        uploads::UPLOAD_TIMEOUT.max(st.request_timeout)
    } else {
        st.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Timeout(limit.as_secs().max(1)).into_response(),
    }
}

/// Turns the few error responses axum makes itself (405 with its `Allow`
/// header, rejections of extractors we do not wrap) into problem bodies, so
/// that every error a client sees has the same shape.
async fn problems_everywhere(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    // Problems already, and pages of ours (a form shown again with its
    // errors) stay as they are.
    let shaped = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/problem+json")
                || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || shaped {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let detail = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|d| !d.is_empty() && !status.is_server_error());
    let problem = crate::http::error::Problem {
        kind: format!("{}http-{}", crate::http::error::PROBLEMS, status.as_u16()),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
