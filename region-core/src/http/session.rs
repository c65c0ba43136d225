//! POST /logout, POST /session/renew, GET /me, DELETE /user: what a
//! logged-in user does with the session and the account itself.

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{is_form, parse_body};
use crate::http::forms::{Body, PasswordForm, SessionForm, check_csrf};
use crate::http::session_cookie::{self, Session};
use crate::http::{AppState, AuthUser};
use crate::model::{AccountCommand, AccountKind, Id};

/// Revokes the token in every region until it would have expired: first
/// the account command to every region's commands topic (a failure there is
/// a 503 with the token still valid, so the client can simply retry), then
/// this region's own row, so that the token stops working here at once
/// rather than when this region's writer gets to the command.
async fn revoke(st: &AppState, user: &AuthUser) -> Result<(), ApiError> {
    let expires = chrono::DateTime::from_timestamp(user.claims.exp, 0).unwrap_or_default();
    let command = AccountCommand {
        id: next_id(st).await?,
        created_at: st.clock.now(),
        kind: AccountKind::RevokeSession {
            user_id: user.id,
            jti: user.claims.jti.clone(),
            expires_at: expires,
        },
    };
    st.commands.broadcast(&command).await?;
    crate::catalog::accounts::apply(&st.catalog, &command)
        .await
        .context("revoking a session")?;
    Ok(())
}

async fn next_id(st: &AppState) -> Result<Id, ApiError> {
    Ok(st.ids.next().await.context("assigning an id")?)
}

/// The answer to `DELETE /user`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountDeletion {
    /// The account deletion command (also the id of each city's
    /// `delete_user` command it becomes).
    pub command: Id,
    /// The regions it was sent to; each erases the user's posts in all its
    /// cities, edge pages included, on its own time.
    pub regions: Vec<String>,
}

/// Deletes the account of the logged-in user, at their home region: from
/// now on no token of it works anywhere and it cannot log in, and every
/// region erases its posts (each city in order with its other writes; the
/// edge gets tombstones). Answered 202, since the erasure runs in every
/// region's writer. The body carries the account's password again; a
/// cookie session also needs its CSRF token.
#[utoipa::path(delete, path = "/user", tag = "accounts",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content((PasswordForm = "application/json"),
        (PasswordForm = "application/x-www-form-urlencoded")),
        description = "The account's password; a form also carries its CSRF token"),
    responses(
        (status = 202, description = "Account deleted; its posts are being erased in every region", body = AccountDeletion),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without a valid CSRF token, or a wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "Not the user's home region", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No password given", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker is down: nothing was deleted, retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_user(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body.as_ref().ok().cloned().unwrap_or_default();
    check_csrf(&st, &user, &headers, body)?;
    if user.id.region() != st.region_number {
        return Err(ApiError::NotHomeRegion(user.id.region()));
    }
    let PasswordForm { password, .. } = parse_body(is_form(&headers)?, &bytes)?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL")
            .bind(user.id)
            .fetch_optional(&st.catalog)
            .await
            .context("reading the account's password hash")?;
    if !st.passwords.verify(password, stored).await? {
        return Err(ApiError::Forbidden(
            "the password is not this account's: nothing was deleted".into(),
        ));
    }
    let now = st.clock.now();
    let command = AccountCommand {
        id: next_id(&st).await?,
        created_at: now,
        kind: AccountKind::DeleteAccount {
            user_id: user.id,
            sessions_expire_by: now + st.session_ttl,
        },
    };
    // Sent before anything changes here: a 503 leaves the account whole.
    st.commands.broadcast(&command).await?;
    crate::catalog::accounts::apply(&st.catalog, &command)
        .await
        .context("deleting an account")?;
    let mut res = (
        StatusCode::ACCEPTED,
        Json(AccountDeletion {
            command: command.id,
            regions: st.commands.regions(),
        }),
    )
        .into_response();
    session_cookie::clear(&mut res);
    Ok(res)
}

/// Ends the session: its token is revoked in this region (every later
/// request with it is a 401) and the cookie cleared. A session from the
/// cookie must prove the request is its own with the CSRF token (header
/// `X-CSRF-Token` or form field `csrf`).
#[utoipa::path(post, path = "/logout", tag = "accounts",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content((SessionForm = "application/x-www-form-urlencoded")),
        description = "Optional; a form carries its CSRF token here"),
    responses(
        (status = 204, description = "Logged out"),
        (status = 303, description = "Logged out (form): to the log-in page"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = check_csrf(&st, &user, &headers, body)?;
    revoke(&st, &user).await?;
    let mut res = if form {
        Redirect::to("/login").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    session_cookie::clear(&mut res);
    Ok(res)
}

/// The current session (and its CSRF token, for scripts that use the
/// cookie).
#[utoipa::path(get, path = "/me", tag = "accounts",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(st): State<AppState>, user: AuthUser) -> Json<Session> {
    Json(Session {
        user_id: user.id,
        access_token: None,
        expires_at: chrono::DateTime::from_timestamp(user.claims.exp, 0).unwrap_or_default(),
        csrf_token: st.csrf.for_session(&user.claims.jti),
    })
}

/// Renews a session at the user's home region: a new token with a new
/// lifetime, the old one revoked. Another region answers 421 (the client
/// renews at home); an account deleted meanwhile gets a 401.
#[utoipa::path(post, path = "/session/renew", tag = "accounts",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content((SessionForm = "application/x-www-form-urlencoded")),
        description = "Optional; a form carries its CSRF token here"),
    responses(
        (status = 200, description = "The new session; the cookie is set too", body = Session),
        (status = 303, description = "Renewed (form): to the listing"),
        (status = 401, description = "No valid session, or the account is gone", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "Not the user's home region", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn renew(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = check_csrf(&st, &user, &headers, body)?;
    if user.id.region() != st.region_number {
        return Err(ApiError::NotHomeRegion(user.id.region()));
    }
    let active: Option<bool> =
        sqlx::query_scalar("SELECT deleted_at IS NULL FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_optional(&st.catalog)
            .await
            .context("looking up a user")?;
    if active != Some(true) {
        return Err(ApiError::Unauthorized);
    }
    revoke(&st, &user).await?;
    Ok(session_cookie::issue(&st, user.id, form.then_some("/post")))
}
