//! The session a log-in or a renewal issues, and its cookie: one place
//! that issues a session (token, CSRF token, cookie) and clears it.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::extract::SESSION_COOKIE;
use crate::model::Id;

/// A session, as `POST /login` and `GET /me` describe it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    /// The logged-in user.
    pub user_id: Id,
    /// Send as `Authorization: Bearer <access_token>` (also set as the
    /// `cb_session` cookie). Absent from `GET /me`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When the token expires; log in again (at the home region) after.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Token for `X-CSRF-Token` or a form's `csrf` field, needed when the
    /// session comes from the cookie.
    pub csrf_token: String,
}

/// Appends a `Set-Cookie` header.
pub fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Issues a new session of `user` and sets its cookie; the answer is the
/// session as JSON, or for a form a redirect to `form_redirect`.
pub fn issue(st: &AppState, user: Id, form_redirect: Option<&str>) -> Response {
    let (token, claims) = st.sessions.issue(user, st.clock.now(), st.session_ttl);
    let session = Session {
        user_id: user,
        access_token: Some(token.clone()),
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        csrf_token: st.csrf.for_session(&claims.jti),
    };
    let mut res = match form_redirect {
        Some(to) => Redirect::to(to).into_response(),
        None => Json(session).into_response(),
    };
    set_cookie(
        &mut res,
        &format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
            st.session_ttl.num_seconds()
        ),
    );
    res
}

/// Clears the session cookie (log-out, account deletion).
pub fn clear(res: &mut Response) {
    set_cookie(
        res,
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"),
    );
}
