//! POST /signup and /login, and their HTML forms.
//!
//! A form post gets a redirect, a JSON post a JSON answer; both go through
//! the same checks. The session token travels in the `cb_session` cookie
//! (`HttpOnly; Secure; SameSite=Lax`) and, for scripts, in the JSON answer,
//! to be sent back as `Authorization: Bearer`.

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::auth::csrf::CSRF_COOKIE;
use crate::auth::device::{self, DEVICE_COOKIE};
use crate::http::chrome::{PageCtx, chrome_of};
use crate::http::error::{ApiError, Problem};
use crate::http::error_pages::wants_html;
use crate::http::extract::cookie;
use crate::http::forms::check_anonymous;
use crate::http::session_cookie::{self, Session, set_cookie};
use crate::http::{AppState, ClientIp, Input};
use crate::limits::{Limit, email_subject, ip_subject};
use crate::model::Id;
use crate::model::post::FieldError;
use crate::render::{self, AccountForm, Viewer};

/// Sign-up and log-in body (JSON, or a form that adds `csrf`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// E-mail address; case does not matter.
    #[schema(
        min_length = 3,
        max_length = 254,
        example = "alice@example.com",
        pattern = "^[^@\\s\\x00-\\x1f\\x7f-\\x9f]+@[^@\\s\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub email: String,
    /// 8–128 characters.
    #[schema(
        min_length = 8,
        max_length = 128,
        example = "correct horse battery",
        pattern = "^[^\\x00]*$"
    )]
    pub password: String,
    /// The form's CSRF token (forms only; JSON requests need none).
    #[serde(default)]
    pub csrf: Option<String>,
}

/// A new account.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    /// The user's id; its region bits name the home region.
    pub id: Id,
    /// As typed at sign-up.
    pub email: String,
}

fn field(field: &'static str, problem: &str) -> FieldError {
    FieldError {
        field,
        problem: problem.to_string(),
    }
}

fn validate(c: &Credentials) -> Result<(), ApiError> {
    let mut bad = Vec::new();
    let email = c.email.trim();
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control());
    if !(3..=254).contains(&email.chars().count()) || !well_formed {
        bad.push(field("email", "must be an e-mail address"));
    }
    if !(8..=128).contains(&c.password.chars().count()) {
        bad.push(field("password", "must be 8 to 128 characters"));
    }
    if c.password.contains('\0') {
        bad.push(field("password", "must not contain NUL characters"));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(bad))
    }
}

/// The sign-up or log-in form with a new CSRF token (and its cookie);
/// `email` and `errors` from a try that failed validation (422).
fn form_page(
    st: &AppState,
    ctx: &Result<PageCtx, ApiError>,
    which: AccountForm,
    email: &str,
    errors: &[FieldError],
) -> Response {
    let token = st.csrf.new_anonymous();
    let path = match which {
        AccountForm::SignUp => "/signup",
        AccountForm::LogIn => "/login",
    };
    let chrome = chrome_of(st, ctx, path, Viewer::Anonymous);
    let html = render::account_form(chrome, which, &token, email, errors);
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut res = (
        status,
        [(header::CACHE_CONTROL, "private, no-store")],
        Html(html),
    )
        .into_response();
    set_cookie(
        &mut res,
        &format!("{CSRF_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=3600"),
    );
    res
}

/// Validation of the credentials: `Some` page when a browser's form
/// failed it (a 422 that re-renders the form with what was typed, never
/// the password, and a message per field).
fn validated(
    st: &AppState,
    ctx: &Result<PageCtx, ApiError>,
    headers: &HeaderMap,
    form: bool,
    which: AccountForm,
    c: &Credentials,
) -> Result<Option<Response>, ApiError> {
    match validate(c) {
        Ok(()) => Ok(None),
        Err(ApiError::Invalid(errors)) if form && wants_html(headers) => {
            Ok(Some(form_page(st, ctx, which, c.email.trim(), &errors)))
        }
        Err(e) => Err(e),
    }
}

/// The sign-up form (sets its CSRF cookie).
#[utoipa::path(get, path = "/signup", tag = "accounts",
    responses((status = 200, description = "HTML form", body = String, content_type = "text/html")))]
pub async fn signup_form(State(st): State<AppState>, ctx: Result<PageCtx, ApiError>) -> Response {
    form_page(&st, &ctx, AccountForm::SignUp, "", &[])
}

/// The log-in form (sets its CSRF cookie).
#[utoipa::path(get, path = "/login", tag = "accounts",
    responses((status = 200, description = "HTML form", body = String, content_type = "text/html")))]
pub async fn login_form(State(st): State<AppState>, ctx: Result<PageCtx, ApiError>) -> Response {
    form_page(&st, &ctx, AccountForm::LogIn, "", &[])
}

/// Creates an account in this (its home) region.
#[utoipa::path(post, path = "/signup", tag = "accounts",
    request_body(content(
        (Credentials = "application/json"),
        (Credentials = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, description = "Created (JSON request)", body = Account),
        (status = 303, description = "Created (form): to the log-in page"),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Form without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An account with this e-mail exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address, or every password-hash slot busy: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn signup(
    State(st): State<AppState>,
    ctx: Result<PageCtx, ApiError>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    input: Input<Credentials>,
) -> Result<Response, ApiError> {
    let c = input.value;
    if input.form {
        check_anonymous(&st, &headers, c.csrf.as_deref())?;
    }
    if let Some(page) = validated(&st, &ctx, &headers, input.form, AccountForm::SignUp, &c)? {
        return Ok(page);
    }
    let email = c.email.trim().to_string();
    // Counted before the hash (the expensive part) and whatever the
    // outcome: a sign-up flood is refused before it costs anything.
    st.limiter
        .take(&[(Limit::SignupPerIp, &ip_subject(client))])
        .await?;
    let hash = st.passwords.hash(c.password).await?;
    let id = st.ids.next().await.context("assigning an id")?;
    let created: Option<Id> = sqlx::query_scalar(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT ((lower(email))) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&email)
    .bind(&hash)
    .bind(st.clock.now())
    .fetch_optional(&st.catalog)
    .await
    .context("inserting a user")?;
    let Some(id) = created else {
        return Err(ApiError::Conflict(
            "an account with this e-mail address exists".into(),
        ));
    };
    if input.form {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok((StatusCode::CREATED, Json(Account { id, email })).into_response())
}

/// Logs in: a session token in the cookie and, for scripts, in the body.
/// An unknown e-mail and a wrong password get the same answer in about the
/// same time.
#[utoipa::path(post, path = "/login", tag = "accounts",
    request_body(content(
        (Credentials = "application/json"),
        (Credentials = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Logged in (JSON request); the cookie is set too", body = Session),
        (status = 303, description = "Logged in (form): to the city home"),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown e-mail or wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Form without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed log-ins from this address or on this account, or every password-hash slot busy: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(st): State<AppState>,
    ctx: Result<PageCtx, ApiError>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    input: Input<Credentials>,
) -> Result<Response, ApiError> {
    let c = input.value;
    if input.form {
        check_anonymous(&st, &headers, c.csrf.as_deref())?;
    }
    if let Some(page) = validated(&st, &ctx, &headers, input.form, AccountForm::LogIn, &c)? {
        return Ok(page);
    }
    // Failed attempts are counted per address and per account (by the
    // e-mail typed, so unknown addresses count too); a browser that logged
    // in to this account before is exempt from the account's count. Every
    // attempt takes before its password is hashed (so a burst of
    // concurrent guesses cannot all pass before any is counted), and a
    // right password gives it back.
    let ip = ip_subject(client);
    let account = email_subject(&c.email);
    let now = st.clock.now().timestamp();
    let known_device = cookie(&headers, DEVICE_COOKIE).and_then(|v| st.device_key.open(v, now));
    let mut buckets = vec![(Limit::LoginFailuresPerIp, ip.as_str())];
    let row: Option<(Id, String)> = sqlx::query_as(
        "SELECT id, password_hash FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL",
    )
    .bind(c.email.trim())
    .fetch_optional(&st.catalog)
    .await
    .context("looking up a user")?;
    let (user, stored) = match row {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    if known_device.is_none() || known_device != user {
        buckets.push((Limit::LoginFailuresPerAccount, account.as_str()));
    }
    st.limiter.take(&buckets).await?;
    // Verified even for an unknown user (against a dummy hash): same time.
    let ok = match st.passwords.verify(c.password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            // Not an attempt that was judged: it does not count.
            refund(&st, &buckets).await;
            return Err(e.into());
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        // Who keeps guessing (the edge's view of the visitor's address).
        tracing::info!(client_ip = ?client, "log-in refused");
        return Err(ApiError::BadCredentials);
    };
    refund(&st, &buckets).await;
    let mut res = session_cookie::issue(&st, user, input.form.then_some("/"));
    set_cookie(
        &mut res,
        &format!(
            "{DEVICE_COOKIE}={}; Path=/login; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
            st.device_key.issue(user, now),
            device::MAX_AGE_SECS
        ),
    );
    Ok(res)
}

/// Gives back a log-in attempt's take (best effort: at worst a success is
/// counted as a failure until its interval passes).
async fn refund(st: &AppState, buckets: &[(Limit, &str)]) {
    if let Err(e) = st.limiter.refund(buckets).await {
        tracing::warn!(error = %e, "giving back a log-in attempt's count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(email: &str, password: &str) -> Credentials {
        Credentials {
            email: email.into(),
            password: password.into(),
            csrf: None,
        }
    }

    #[test]
    fn credentials_are_checked_field_by_field() {
        assert!(validate(&creds("a@b.c", "12345678")).is_ok());
        for (email, password, fields) in [
            ("nope", "12345678", vec!["email"]),
            ("a@b@c", "short", vec!["email", "password"]),
            ("a b@c", "12345678", vec!["email"]),
        ] {
            let Err(ApiError::Invalid(bad)) = validate(&creds(email, password)) else {
                panic!("{email} accepted");
            };
            assert_eq!(bad.iter().map(|e| e.field).collect::<Vec<_>>(), fields);
        }
    }
}
