//! Extractors: the city of a request, its client's address, its read
//! freshness, its body, its user. Every rejection is an `ApiError`, so it
//! answers a problem body.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::auth::{Claims, TokenError};
use crate::http::edge_trust::Forwarded;
use crate::http::error::ApiError;
use crate::http::{AppState, BODY_LIMIT};
use crate::model::post::FieldError;
use crate::model::{Id, RequestId};
use crate::token::Consistency;

/// The cookie a client that just wrote carries (design §4); its format is
/// the protocol's, shared with the edge.
pub use crate::token::RYW_COOKIE;
/// The session cookie (`HttpOnly; Secure; SameSite=Lax`).
pub const SESSION_COOKIE: &str = "cb_session";

/// The value of cookie `name`, if the request has it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The city of the request. Behind the edge (a verified signature) it is
/// the signed `x-cityboard-city`, or else the city of the signed
/// `x-forwarded-host`; on an unsigned request (development only) the city of
/// the `Host` header, `<city>.<apex>`. Any other host, or a city this region
/// does not serve, is a 421.
#[derive(Debug, Clone)]
pub struct City(pub String);

impl FromRequestParts<AppState> for City {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let forwarded = parts.extensions.get::<Forwarded>();
        if let Some(f) = forwarded.filter(|f| !f.city.is_empty()) {
            state.router.route(&f.city)?;
            return Ok(City(f.city.clone()));
        }
        let host = match forwarded {
            Some(f) => f.host.as_str(),
            None => parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.host())
                .unwrap_or(""),
        };
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let city = host
            .strip_suffix(&state.apex)
            .and_then(|s| s.strip_suffix('.'))
            .filter(|c| !c.is_empty() && !c.contains('.'))
            .ok_or_else(|| ApiError::NotServed(host.clone()))?;
        state.router.route(city)?;
        Ok(City(city.to_string()))
    }
}

/// The visitor's address: the edge's signed `x-cityboard-client-ip` on a
/// verified request, otherwise the peer of the connection (an
/// `x-cityboard-client-ip` without a valid signature is anyone's claim and
/// is ignored). `None` only where neither exists (in-process tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let signed = parts
            .extensions
            .get::<Forwarded>()
            .and_then(|f| f.client_ip);
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        Ok(ClientIp(signed.or_else(peer)))
    }
}

/// Who sent a write: the visitor's address (as [`ClientIp`], for the
/// per-address limits) and the request's id (`trail`), which its command
/// carries to the page (none on a request that was not signed: tests with
/// signing off).
pub struct Sender {
    /// The visitor's address.
    pub ip: Option<IpAddr>,
    /// The request's id.
    pub request_id: Option<RequestId>,
}

impl<S: Send + Sync> FromRequestParts<S> for Sender {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, st).await?;
        Ok(Sender {
            ip,
            request_id: parts.extensions.get::<RequestId>().cloned(),
        })
    }
}

/// Read freshness from the read-your-writes cookie
/// (`cityboard_protocol::ryw`): an applied write's token, or a pending
/// command. A malformed cookie is ignored (the read is then merely
/// eventually consistent), never an error.
pub struct Freshness(pub Consistency);

impl FromRequestParts<AppState> for Freshness {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Freshness(Consistency::from_cookie(
            cookie(&parts.headers, RYW_COOKIE),
            &st.ryw_keys,
            st.clock.now().timestamp(),
        )))
    }
}

/// A body sent as JSON (scripts) or as an HTML form (browsers without
/// JavaScript); `form` tells the handler which, so it can answer a form with
/// a redirect. Any other content type is a 415, a syntax error a 400, and a
/// missing or mistyped field a 422.
pub struct Input<T> {
    /// The parsed body.
    pub value: T,
    /// Whether it came from an HTML form.
    pub form: bool,
}

/// The media type of a request body, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether the request's body is an HTML form (else it must be JSON); any
/// other media type is a 415.
pub fn is_form(headers: &HeaderMap) -> Result<bool, ApiError> {
    match media_type(headers).as_str() {
        "application/json" => Ok(false),
        "application/x-www-form-urlencoded" => Ok(true),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parses a body already read (handlers that also hash it, for an
/// `Idempotency-Key`): a syntax error is a 400, a missing or mistyped field
/// a 422, as for `Input`.
pub fn parse_body<T: DeserializeOwned>(form: bool, bytes: &[u8]) -> Result<T, ApiError> {
    if form {
        serde_urlencoded::from_bytes(bytes).map_err(|e| {
            ApiError::Invalid(vec![FieldError {
                field: "body",
                problem: e.to_string(),
            }])
        })
    } else {
        serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Invalid(vec![FieldError {
                field: "body",
                problem: e.to_string(),
            }]),
            _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
        })
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Input<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form = is_form(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(BODY_LIMIT)
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        let value = parse_body(form, &bytes)?;
        Ok(Input { value, form })
    }
}

/// The logged-in user of a request: a session token from
/// `Authorization: Bearer` or the session cookie, signature and expiry
/// verified, neither it nor its account revoked in this region's catalog.
/// Anything else is a 401.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user.
    pub id: Id,
    /// The token's claims (its id, for CSRF and log-out).
    pub claims: Claims,
    /// Whether the token came from the cookie: such requests need a CSRF
    /// token to change state, header-borne ones do not.
    pub via_cookie: bool,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let (token, via_cookie) = match bearer {
            Some(t) => (t, false),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(t) => (t, true),
                None => return Err(ApiError::Unauthorized),
            },
        };
        let claims = st
            .sessions
            .verify(token, st.clock.now())
            .map_err(|e| refused(&e))?;
        // One round trip: this token revoked, or its whole account deleted
        // (both reach every region through the commands topics).
        let revoked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE jti = $1)
                 OR EXISTS (SELECT 1 FROM revoked_users WHERE user_id = $2)",
        )
        .bind(&claims.jti)
        .bind(claims.sub)
        .fetch_one(&st.catalog)
        .await
        .context("revocation check")?;
        if revoked {
            return Err(refused(&TokenError::Revoked));
        }
        Ok(AuthUser {
            id: claims.sub,
            claims,
            via_cookie,
        })
    }
}

fn refused(e: &TokenError) -> ApiError {
    tracing::debug!(reason = %e, "session refused");
    ApiError::Unauthorized
}
