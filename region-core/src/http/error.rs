//! Everything a request of the api can fail with, mapped once to a status
//! code and an RFC 9457 problem body; what other layers fail with becomes
//! one of these through its `From` impl.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::bus::error::BusError;
use crate::db::{ReadError, RouteError};
use crate::model::post::FieldError;

/// Base of every problem `type` URI.
pub const PROBLEMS: &str = "https://cityboard.example/problems/";

/// Everything a request can fail with. Handlers return `Result<T, ApiError>`;
/// the mapping to status codes lives here and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    /// No session, or one that is forged, expired or revoked: all look the
    /// same to the client.
    #[error("authentication required")]
    Unauthorized,
    /// Log-in failed: the same answer for an unknown address and a wrong
    /// password.
    #[error("invalid e-mail or password")]
    BadCredentials,
    /// A state-changing form without a valid CSRF token.
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// The request is understood and authenticated but not the user's to
    /// make (another poster's post, another user's command).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// Sessions are renewed at the user's home region (region number in
    /// the user id): the client goes there.
    #[error("sessions of this user are renewed at region number {0}")]
    NotHomeRegion(u16),
    #[error("request body must be application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The city is not served by this region: the edge refreshes its route
    /// and retries; never a 404 that looks like a missing post.
    #[error("city {0} is not served by this region")]
    NotServed(String),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Malformed request (query string, JSON, cursor): the detail says what.
    #[error("{0}")]
    BadRequest(String),
    #[error("city {0} is unavailable")]
    ShardUnavailable(String),
    /// The edge signature is missing (and required), malformed, made with
    /// an unknown key, stale, does not match the request, or was replayed;
    /// the detail says which check failed.
    #[error("{0}")]
    BadSignature(String),
    /// The non-evicting store (signature nonces) does not answer: a request
    /// whose replay cannot be ruled out is not served.
    #[error("the region store is unavailable; retry shortly")]
    StoreUnavailable,
    /// The broker did not take a command: nothing was written, and a retry
    /// (with the same `Idempotency-Key`) is safe.
    #[error("writes are unavailable; retry shortly")]
    BrokerUnavailable,
    /// An operator endpoint whose backing service this process was not
    /// given (e.g. no archive for `DELETE /old_posts`).
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The request ran past the api's request timeout and was stopped. A
    /// write may still be applied: a retry with the same
    /// `Idempotency-Key` is safe.
    #[error("the request took longer than {0} s and was stopped; retry shortly")]
    Timeout(u64),
    /// Over a rate limit (`crate::limits`), or no password-hash slot free
    /// within the wait: retry after this many seconds.
    #[error("too many requests; retry after {0} s")]
    TooManyRequests(u64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An RFC 9457 problem document, the body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem; stable, for clients to switch on.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request (absent for internal errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every invalid field, for a 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unauthorized | ApiError::BadCredentials | ApiError::BadSignature(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Csrf | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotServed(_) | ApiError::NotHomeRegion(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ShardUnavailable(_)
            | ApiError::StoreUnavailable
            | ApiError::BrokerUnavailable
            | ApiError::Timeout(_)
            | ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::NotFound => "not-found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadCredentials => "bad-credentials",
            ApiError::Csrf => "csrf",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::NotServed(_) => "city-not-served",
            ApiError::NotHomeRegion(_) => "not-home-region",
            ApiError::Invalid(_) => "invalid-input",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::ShardUnavailable(_) => "shard-unavailable",
            ApiError::BadSignature(_) => "signature",
            ApiError::StoreUnavailable => "store-unavailable",
            ApiError::BrokerUnavailable => "broker-unavailable",
            ApiError::NotConfigured(_) => "not-configured",
            ApiError::Timeout(_) => "timeout",
            ApiError::TooManyRequests(_) => "rate-limited",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem body this error answers with.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("{PROBLEMS}{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            // Internal errors are logged, never described to the client.
            detail: match self {
                ApiError::Internal(_) => None,
                other => Some(other.to_string()),
            },
            errors: match self {
                ApiError::Invalid(e) => e.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let mut res = (self.status(), Json(self.problem())).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cityboard\""),
            );
        }
        if matches!(
            self,
            ApiError::ShardUnavailable(_)
                | ApiError::StoreUnavailable
                | ApiError::BrokerUnavailable
                | ApiError::Timeout(_)
        ) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::TooManyRequests(secs) = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotServed(city) => ApiError::NotServed(city),
            RouteError::Read(ReadError::Unavailable { shard, source }) => {
                tracing::warn!(%shard, error = %source, "shard unavailable");
                ApiError::ShardUnavailable(shard)
            }
            // The map names a shard this process has not loaded yet (added
            // a moment ago) or could not use: try again shortly.
            RouteError::UnknownShard { city, shard } => {
                tracing::warn!(%city, %shard, "city placed on a shard this process does not know");
                ApiError::ShardUnavailable(shard)
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::auth::password::HashError> for ApiError {
    fn from(e: crate::auth::password::HashError) -> Self {
        match e {
            // Slots free up within a hash's time (a fraction of a second).
            crate::auth::password::HashError::Busy => ApiError::TooManyRequests(1),
            crate::auth::password::HashError::Failed(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::limits::LimitError> for ApiError {
    fn from(e: crate::limits::LimitError) -> Self {
        match e {
            crate::limits::LimitError::Limited(l) => ApiError::TooManyRequests(l.retry_after_secs),
            crate::limits::LimitError::Store(e) => {
                tracing::warn!(error = %e, "rate limits unreadable");
                ApiError::StoreUnavailable
            }
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::BrokerUnavailable => ApiError::BrokerUnavailable,
            BusError::StoreUnavailable => ApiError::StoreUnavailable,
            BusError::ShardUnavailable(city) => ApiError::ShardUnavailable(city),
            BusError::Route(e) => e.into(),
            BusError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// A body the api builds that does not serialise: a bug, answered 500.
impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::Internal(e.into())
    }
}
