//! What a form submission carries and how it proves it comes from the
//! site: the body read whole, the session form, and the CSRF checks (of a
//! cookie session, and the double-submit token of the anonymous forms).

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde::Deserialize;

use crate::auth::csrf::{CSRF_COOKIE, CSRF_HEADER};
use crate::http::error::ApiError;
use crate::http::extract::cookie;
use crate::http::{AppState, AuthUser};

/// The body of a log-out or renewal form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SessionForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

/// The body of `DELETE /user`: the account's password again, so that a
/// stolen session (or a browser left logged in) cannot delete the account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    /// The account's password.
    pub password: String,
    /// The session's CSRF token (a cookie session's form).
    pub csrf: Option<String>,
}

/// A body read whole; a rejection (too large) is answered by `check_csrf`.
pub type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// A session from the cookie must prove the request is its own with the
/// session's CSRF token (header `X-CSRF-Token` or form field `csrf`); one
/// from the `Authorization` header needs none. Returns whether the body was
/// a form (answered with a redirect).
pub fn check_csrf(
    st: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    body: Body,
) -> Result<bool, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(crate::http::BODY_LIMIT))?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if user.via_cookie {
        let from_form = if form {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v))
        } else {
            None
        };
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(from_form)
            .ok_or(ApiError::Csrf)?;
        if !st.csrf.check_session(&user.claims.jti, &token) {
            return Err(ApiError::Csrf);
        }
    }
    Ok(form)
}

/// An anonymous form (sign-up, log-in) must carry the double-submit token
/// (`field`) of the form it came from, matching its cookie.
pub fn check_anonymous(
    st: &AppState,
    headers: &HeaderMap,
    field: Option<&str>,
) -> Result<(), ApiError> {
    let cookie = cookie(headers, CSRF_COOKIE).ok_or(ApiError::Csrf)?;
    let field = field.ok_or(ApiError::Csrf)?;
    if st.csrf.check_anonymous(cookie, field) {
        Ok(())
    } else {
        Err(ApiError::Csrf)
    }
}
