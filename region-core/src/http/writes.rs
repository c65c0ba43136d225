//! POST /post, PUT /post/{id}, DELETE /post/{id}, POST /post/{id}/renew,
//! POST /report: each validates, authenticates, produces one command and
//! answers with its outcome if the writer finishes it within the apply wait
//! (201/200, or the rejection's 4xx), else 202 with the status URL.

use std::net::IpAddr;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::bus::failpoint::{self, API_AFTER_CLAIM};
use crate::bus::notify::{CommandState, CommandStatus};
use crate::http::chrome::{PageCtx, personal};
use crate::http::commands::CommandView;
use crate::http::error::{ApiError, Problem};
use crate::http::error_pages::wants_html;
use crate::http::extract::Sender;
use crate::http::extract::{is_form, parse_body};
use crate::http::forms::{Body, check_csrf};
use crate::http::idempotency::{self, Answer, Begin, Claim, CommandIds};
use crate::http::posts::read_post;
use crate::http::{AppState, AuthUser, City, Freshness, RYW_COOKIE};
use crate::limits::{Limit, ip_subject};
use crate::model::post::FieldError;
use crate::model::{Command, CommandKind, Id, PostFields, PostStatus, RequestId};
use crate::render::{self, PostValues, Viewer};
use crate::token::{RywKeys, WriteToken, pending};
use crate::trail;
use cityboard_protocol::ryw::ReadYourWrites;

/// What a poster sends to create or edit a post.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PostInput {
    /// One of the known categories.
    #[schema(value_type = crate::http::posts::Category)]
    pub category: String,
    /// 1–200 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    pub title: String,
    /// At most 20 000 characters.
    #[serde(default)]
    #[schema(max_length = 20000, pattern = "^[^\\u0000]*$")]
    pub description: String,
    /// Whole currency units.
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: Option<i64>,
    /// Free-form neighbourhood, at most 200 characters.
    #[schema(max_length = 200, pattern = "^[^\\u0000]*$")]
    pub location: Option<String>,
    /// Ignored: a post's photo count is the number of photos uploaded to
    /// it (`POST /post/{id}/photos`). Accepted for clients that send it.
    #[serde(default, deserialize_with = "whole::small")]
    #[schema(minimum = 0, maximum = 10)]
    pub image_count: i16,
}

/// `PostInput` as an HTML form sends it: a form has no null, so its
/// optional fields are absent or hold a value, and every value is text.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PostForm {
    /// One of the known categories.
    #[schema(value_type = crate::http::posts::Category)]
    category: String,
    /// 1–200 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    title: String,
    /// At most 20 000 characters.
    #[schema(max_length = 20000, pattern = "^[^\\u0000]*$")]
    description: Option<String>,
    /// Whole currency units.
    #[schema(minimum = 0, maximum = 1_000_000_000, nullable = false)]
    price: Option<i64>,
    /// Free-form neighbourhood, at most 200 characters.
    #[schema(max_length = 200, pattern = "^[^\\u0000]*$", nullable = false)]
    location: Option<String>,
    /// Ignored: the photo count is the photos' (see `PostInput`).
    #[schema(minimum = 0, maximum = 10, nullable = false)]
    image_count: Option<i16>,
    /// The session's CSRF token (a cookie session needs it).
    #[schema(nullable = false)]
    #[allow(dead_code)] // read from the raw body by `check_csrf`
    csrf: Option<String>,
    /// The form's `Idempotency-Key` (a form cannot send the header): the
    /// same form sent twice writes once. Empty: none.
    #[schema(nullable = false, pattern = "^[!-~]{0,255}$")]
    #[allow(dead_code)] // read from the raw body by `idempotency::requested_key`
    idempotency_key: Option<String>,
}

impl From<PostForm> for PostInput {
    fn from(f: PostForm) -> Self {
        PostInput {
            category: f.category,
            title: f.title,
            description: f.description.unwrap_or_default(),
            price: f.price,
            location: f.location,
            image_count: f.image_count.unwrap_or(0),
        }
    }
}

/// Whole numbers as JSON may write them: `120` or `120.0` (the same number
/// to JSON Schema, and to JavaScript); a fraction is refused.
mod whole {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }

    fn integral<E: Error>(n: Number) -> Result<i64, E> {
        match n {
            Number::Int(i) => Ok(i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            Number::Float(_) => Err(E::custom("not a whole number")),
        }
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<Number>::deserialize(d)?.map(integral).transpose()
    }

    pub fn small<'de, D: Deserializer<'de>>(d: D) -> Result<i16, D::Error> {
        let n = integral(Number::deserialize(d)?)?;
        i16::try_from(n).map_err(|_| D::Error::custom("out of range"))
    }
}

impl PostInput {
    /// The fields, validated by the same rules `apply` checks again. The
    /// title is stored trimmed: the space around it is never the poster's
    /// meaning, and a title of spaces alone is no title.
    fn validated(self) -> Result<PostFields, ApiError> {
        let fields = PostFields {
            category: self.category,
            title: self.title.trim().to_string(),
            description: self.description,
            price: self.price,
            location: self.location,
            image_count: self.image_count,
        };
        fields.validate().map_err(ApiError::Invalid)?;
        Ok(fields)
    }
}

/// What a reader sends to report a post.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReportInput {
    /// The post reported (of the host's city).
    pub post_id: Id,
    /// Why, in 1–500 characters.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    pub reason: String,
}

/// One write as the handlers describe it to `run`.
struct Write {
    kind: CommandKind,
    post: Id,
    /// 201 with `Location` when applied (a new post), else 200.
    creates: bool,
}

/// The request's post id; one that is not well formed names no post.
impl Write {
    /// A command on a post that exists already (all but create).
    fn existing(post: Id, kind: CommandKind) -> Write {
        Write {
            kind,
            post,
            creates: false,
        }
    }
}

fn post_id(id: &str) -> Result<Id, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// Someone else's post: 403, whichever side noticed (the fold or a page).
fn not_theirs() -> ApiError {
    ApiError::Forbidden("this post belongs to another user".into())
}

/// What a rejection's reason (from `apply`'s fold) answers: the poster's
/// mistake gets the status it would have had if the api had checked itself.
pub(crate) fn rejected(reason: &str) -> ApiError {
    match reason {
        "not the poster's post" => not_theirs(),
        "no such post" | "the post is not live" | "the post is deleted or hidden" => {
            ApiError::NotFound
        }
        "invalid post" => ApiError::Invalid(vec![FieldError {
            field: "body",
            problem: "invalid post".into(),
        }]),
        // "renewed too early: renewal is allowed from <RFC 3339>": the
        // detail is the fold's reason as is, so it says when.
        early if early.starts_with("renewed too early") => ApiError::Conflict(early.to_string()),
        other => ApiError::Conflict(format!("the write was rejected: {other}")),
    }
}

/// The `Set-Cookie` of a write's read-your-writes cookie, sealed.
fn ryw_cookie(seal: &Seal<'_>, ryw: &ReadYourWrites) -> String {
    let value = seal.keys.seal(ryw, seal.now);
    format!("{RYW_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/")
}

/// What seals the cookies of an answer: the keys, and the time it is made.
struct Seal<'a> {
    keys: &'a RywKeys,
    now: i64,
}

/// The read-your-writes cookie of a write to `post` by `command` whose
/// outcome is `status` (none: not yet), sealed at `seal.now`: the writer's
/// next reads see it. None for a rejected write, which changed nothing.
fn cookie_of(
    seal: &Seal<'_>,
    command: Id,
    post: Id,
    status: Option<&CommandStatus>,
) -> Option<String> {
    match status {
        None => Some(ryw_cookie(seal, &pending(command, post))),
        Some(s) => s.applied.as_ref().map(|at| {
            let token = WriteToken {
                epoch: at.epoch,
                shard: at.shard.clone(),
                lsn: at.lsn,
                post,
                version: at.version,
            };
            ryw_cookie(seal, &ReadYourWrites::from(&token))
        }),
    }
}

/// `cookie_of` for a write made outside `Writer` (a photo upload).
pub(crate) fn write_cookie(
    st: &AppState,
    command: Id,
    post: Id,
    status: Option<&CommandStatus>,
) -> Option<String> {
    let seal = Seal {
        keys: &st.ryw_keys,
        now: st.clock.now().timestamp(),
    };
    cookie_of(&seal, command, post, status)
}

/// The answer to a write whose outcome is `status` (none: not yet).
fn answer(
    w: &Write,
    command: Id,
    status: Option<&CommandStatus>,
    form: bool,
    seal: &Seal<'_>,
) -> Answer {
    let location = format!("/post/{}", w.post);
    let answer = match status {
        None => Answer::json(
            StatusCode::ACCEPTED,
            &CommandView::pending(command, Some(w.post)),
        )
        .header("location", location.clone())
        .header("content-location", format!("/commands/{command}"))
        .header(
            "set-cookie",
            cookie_of(seal, command, w.post, None).unwrap_or_default(),
        ),
        Some(s) if s.state == CommandState::Rejected => {
            return Answer::error(&rejected(s.reason.as_deref().unwrap_or("")));
        }
        Some(s) => {
            let code = if w.creates {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut a = Answer::json(code, &CommandView::from_status(s));
            if w.creates {
                a = a.header("location", location.clone());
            }
            if let Some(cookie) = cookie_of(seal, command, w.post, Some(s)) {
                a = a.header("set-cookie", cookie);
            }
            a
        }
    };
    if !form {
        return answer;
    }
    // A browser without JavaScript: to the post (or, once deleted, the
    // user's posts), with the same cookies.
    let gone = matches!(w.kind, CommandKind::Delete { .. });
    let to = if gone { "/my".to_string() } else { location };
    let mut redirect = Answer {
        status: StatusCode::SEE_OTHER.as_u16(),
        headers: vec![("location".into(), to)],
        body: String::new(),
    };
    redirect.headers.extend(
        answer
            .headers
            .into_iter()
            .filter(|(n, _)| n == "set-cookie"),
    );
    redirect
}

/// What every write handler passes on: the user, the host's city and the
/// request's headers.
struct Writer<'a> {
    st: &'a AppState,
    user: &'a AuthUser,
    city: String,
    headers: &'a HeaderMap,
    /// The visitor's address, counted by the per-IP limit.
    ip: Option<IpAddr>,
    /// The request's id, which the command carries to the page.
    request_id: Option<RequestId>,
    /// The limits this write counts against: (per IP, per account).
    limits: (Limit, Limit),
}

impl<'a> Writer<'a> {
    fn new(
        st: &'a AppState,
        user: &'a AuthUser,
        city: String,
        headers: &'a HeaderMap,
        sender: Sender,
    ) -> Self {
        Writer {
            st,
            user,
            city,
            headers,
            ip: sender.ip,
            request_id: sender.request_id,
            limits: (Limit::WritesPerIp, Limit::WritesPerAccount),
        }
    }

    /// A report: counted against the report limits, not the write limits.
    fn reports(mut self) -> Self {
        self.limits = (Limit::ReportsPerIp, Limit::ReportsPerAccount);
        self
    }

    /// What every write does once its body is parsed: claim the
    /// `Idempotency-Key` (bound to `method`, `path` and `body`) for a
    /// command, make it (with a new post id for `make` when `new_post`, or
    /// the first attempt's on a retry), produce it unless a retry learns its
    /// outcome, answer (a redirect for a `form`), and keep the answer for
    /// retries.
    async fn run(
        self,
        method: &str,
        path: &str,
        body: &[u8],
        form: bool,
        make: impl FnOnce(Option<Id>) -> Write,
        new_post: bool,
    ) -> Result<Response, ApiError> {
        let st = self.st;
        let fresh = fresh_ids(st, new_post).await?;
        let key = idempotency::requested_key(self.headers, form.then_some(body))?;
        let claim = match idempotency::begin(
            &st.store,
            self.user.id,
            key,
            method,
            path,
            body,
            fresh,
            st.commands.longest_submit(),
        )
        .await?
        {
            // A retry answered from the key's record costs nothing.
            Begin::Replay(answer) => return Ok(answer.into_response()),
            Begin::Unkeyed => None,
            Begin::Claimed(claim) => Some(claim),
        };
        let ids = claim.as_ref().map_or(fresh, |c| c.ids);
        let w = make(ids.post);
        match self.outcome(&w, ids, claim.as_ref()).await {
            Ok(status) => {
                let seal = Seal {
                    keys: &st.ryw_keys,
                    now: st.clock.now().timestamp(),
                };
                let a = answer(&w, ids.command, status.as_ref(), form, &seal);
                if let Some(claim) = claim
                    && let Err(e) = idempotency::finish(&st.store, claim, &a).await
                {
                    tracing::warn!(error = %e, "storing the answer of an Idempotency-Key");
                }
                Ok(a.into_response())
            }
            Err(e) => {
                // Nothing was produced, or it is unknown whether it was: the
                // key keeps its command, and a retry produces it again
                // (the dedup of command ids makes that harmless).
                if let Some(claim) = claim {
                    idempotency::abandon(claim).await;
                }
                Err(e)
            }
        }
    }

    /// The outcome of the command of `ids` (none: not known yet). A key
    /// whose lease another request holds waits for that request's outcome
    /// (409 if there is none within the apply wait); a retry holding the
    /// lease answers the first attempt's outcome if there is one, and
    /// otherwise produces the same command again, as a first request does.
    async fn outcome(
        &self,
        w: &Write,
        ids: CommandIds,
        claim: Option<&Claim>,
    ) -> Result<Option<CommandStatus>, ApiError> {
        let st = self.st;
        if let Some(claim) = claim {
            if !claim.holds_lease() {
                return st
                    .commands
                    .outcome_within(ids.command, st.commands.apply_wait())
                    .await?
                    .map(Some)
                    .ok_or_else(idempotency::in_progress);
            }
            if claim.retry
                && let Some(done) = st.commands.status(ids.command).await?
            {
                return Ok(Some(done));
            }
        }
        let (per_ip, per_account) = self.limits;
        let ip = ip_subject(self.ip);
        let account = self.user.id.to_string();
        st.limiter
            .take(&[(per_ip, &ip), (per_account, &account)])
            .await?;
        failpoint::crash_point(API_AFTER_CLAIM).map_err(anyhow::Error::from)?;
        let (route, _) = st.router.route(&self.city)?;
        let command = Command {
            id: ids.command,
            city: self.city.clone(),
            created_at: ids.created_at,
            epoch: route.epoch,
            request_id: self.request_id.clone(),
            kind: w.kind.clone(),
        };
        let answer = st.commands.submit(self.user.id, &command).await?;
        trail::produced(&command);
        Ok(answer)
    }

    /// Delete and renew: a command on one of the user's own posts that
    /// carries only the post and its owner, sent without a body of its own
    /// (a form may still carry the CSRF token).
    async fn own_post(
        self,
        body: Body,
        method: &str,
        path: &str,
        post_id: Id,
        kind: CommandKind,
    ) -> Result<Response, ApiError> {
        let (bytes, form) = no_body(self.st, self.user, self.headers, body)?;
        self.run(
            method,
            path,
            &bytes,
            form,
            |_| Write::existing(post_id, kind),
            false,
        )
        .await
    }
}

/// New ids for a write's command (a command id, and a post id when it
/// creates a post) and its `created_at`.
async fn fresh_ids(st: &AppState, new_post: bool) -> Result<CommandIds, ApiError> {
    let next = || async { st.ids.next().await.context("assigning an id") };
    Ok(CommandIds {
        command: next().await?,
        post: if new_post { Some(next().await?) } else { None },
        created_at: st.clock.now(),
    })
}

/// The body of a write that carries one: JSON or a form (whose CSRF token
/// a cookie session needs), read whole.
fn checked_body(
    st: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, bool), ApiError> {
    let bytes = body.map_err(|_| ApiError::PayloadTooLarge(crate::http::BODY_LIMIT))?;
    let form = is_form(headers)?;
    check_csrf(st, user, headers, Ok(bytes.clone()))?;
    Ok((bytes, form))
}

/// A post's fields from JSON or a form, validated; `editing` names the
/// post of an edit. A form from a browser that fails validation is
/// answered here: its page again, with what was typed and a message per
/// field (422).
fn post_fields_of(
    st: &AppState,
    user: &AuthUser,
    ctx: &PageCtx,
    headers: &HeaderMap,
    body: Body,
    editing: Option<Id>,
) -> Result<Result<(PostFields, Bytes, bool), Response>, ApiError> {
    let (bytes, form) = checked_body(st, user, headers, body)?;
    if !form {
        let fields = parse_body::<PostInput>(false, &bytes)?.validated()?;
        return Ok(Ok((fields, bytes, form)));
    }
    let (values, fields) = form_fields(&bytes)?;
    match fields {
        Ok(fields) => Ok(Ok((fields, bytes, form))),
        Err(errors) if wants_html(headers) => {
            let csrf = st.csrf.for_session(&user.claims.jti);
            let id = editing.map(|id| id.to_string());
            let path = match &id {
                Some(id) => format!("/post/{id}/edit"),
                None => "/post/new".to_string(),
            };
            let chrome = ctx.chrome(&path, Viewer::LoggedIn);
            let html = render::post_form(
                chrome,
                id.as_deref(),
                &csrf,
                &idempotency::form_key(),
                &values,
                &errors,
            );
            let mut res = personal(html);
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(Err(res))
        }
        Err(errors) => Err(ApiError::Invalid(errors)),
    }
}

/// A post form's values as typed, and the fields they make or every
/// problem with them. A form has no null and no numbers: an empty price or
/// place is none, a price that is not a whole number is the price's error
/// (not the whole body's).
fn form_fields(
    bytes: &[u8],
) -> Result<(PostValues, Result<PostFields, Vec<FieldError>>), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes).map_err(|e| {
        ApiError::Invalid(vec![FieldError {
            field: "body",
            problem: e.to_string(),
        }])
    })?;
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let values = PostValues {
        title: value("title").unwrap_or_default(),
        category: value("category").unwrap_or_default(),
        price: value("price").unwrap_or_default(),
        location: value("location").unwrap_or_default(),
        description: value("description").unwrap_or_default(),
    };
    let mut bad = Vec::new();
    let price = match values.price.trim() {
        "" => None,
        p => match p.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                bad.push(FieldError {
                    field: "price",
                    problem: "must be a whole number, like 120".into(),
                });
                None
            }
        },
    };
    let image_count = match value("image_count").as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(n) => n.parse::<i16>().unwrap_or_else(|_| {
            bad.push(FieldError {
                field: "image_count",
                problem: "must be a whole number from 0 to 10".into(),
            });
            0
        }),
    };
    let input = PostInput {
        category: values.category.clone(),
        title: values.title.clone(),
        description: values.description.clone(),
        price,
        location: Some(values.location.clone()).filter(|l| !l.trim().is_empty()),
        image_count,
    };
    let fields = match input.validated() {
        Ok(fields) if bad.is_empty() => Ok(fields),
        Ok(_) => Err(bad),
        Err(ApiError::Invalid(more)) => {
            bad.extend(more);
            Err(bad)
        }
        Err(other) => return Err(other),
    };
    Ok((values, fields))
}

/// Creates a post in the host's city.
#[utoipa::path(post, path = "/post", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key (per user, 24 h) get the first answer, or the outcome of the first attempt's command when that attempt failed or never answered: never a second write", pattern = "^[!-~]{1,255}$")),
    request_body(content(
        (PostInput = "application/json"),
        (PostForm = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, description = "Created and applied; `Location` names the post, `Set-Cookie` the read-your-writes token", body = CommandView,
            headers(("location" = String, description = "/post/{id}"), ("set-cookie" = String, description = "cb_ryw"))),
        (status = 202, description = "Accepted, not applied yet: `Content-Location` is the status URL", body = CommandView,
            headers(("location" = String, description = "/post/{id}"), ("content-location" = String, description = "/commands/{id}"))),
        (status = 303, description = "Form: to the post"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named; or an Idempotency-Key reused for another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes (or reports) from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_post(
    State(st): State<AppState>,
    user: AuthUser,
    sender: Sender,
    ctx: PageCtx,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (fields, bytes, form) = match post_fields_of(&st, &user, &ctx, &headers, body, None)? {
        Ok(parsed) => parsed,
        Err(page) => return Ok(page),
    };
    let user_id = user.id;
    Writer::new(&st, &user, ctx.city, &headers, sender)
        .run(
            "POST",
            "/post",
            &bytes,
            form,
            |post| {
                let post_id = post.unwrap_or(Id(0));
                Write {
                    kind: CommandKind::Create {
                        post_id,
                        user_id,
                        post: fields,
                    },
                    post: post_id,
                    creates: true,
                }
            },
            true,
        )
        .await
}

/// Replaces the fields of one of the user's posts.
#[utoipa::path(put, path = "/post/{id}", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key (per user, 24 h) get the first answer, or the outcome of the first attempt's command when that attempt failed or never answered: never a second write", pattern = "^[!-~]{1,255}$")),
    request_body(content(
        (PostInput = "application/json"),
        (PostForm = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Applied; `Set-Cookie` carries the read-your-writes token", body = CommandView),
        (status = 202, description = "Accepted, not applied yet: `Content-Location` is the status URL", body = CommandView),
        (status = 303, description = "Form: to the post"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named; or an Idempotency-Key reused for another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes (or reports) from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_post(
    State(st): State<AppState>,
    user: AuthUser,
    sender: Sender,
    ctx: PageCtx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let post_id = post_id(&id)?;
    let parsed = post_fields_of(&st, &user, &ctx, &headers, body, Some(post_id))?;
    let (fields, bytes, form) = match parsed {
        Ok(parsed) => parsed,
        Err(page) => return Ok(page),
    };
    let city = ctx.city;
    let user_id = user.id;
    let kind = CommandKind::Update {
        post_id,
        user_id,
        post: fields,
    };
    Writer::new(&st, &user, city, &headers, sender)
        .run(
            "PUT",
            &format!("/post/{post_id}"),
            &bytes,
            form,
            |_| Write::existing(post_id, kind),
            false,
        )
        .await
}

/// The CSRF check of a write without a body of its own (a form may still
/// carry the token).
fn no_body(
    st: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, bool), ApiError> {
    let bytes = body.map_err(|_| ApiError::PayloadTooLarge(crate::http::BODY_LIMIT))?;
    let form = check_csrf(st, user, headers, Ok(bytes.clone()))?;
    Ok((bytes, form))
}

/// Deletes one of the user's posts (a tombstone everywhere).
#[utoipa::path(delete, path = "/post/{id}", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key (per user, 24 h) get the first answer, or the outcome of the first attempt's command when that attempt failed or never answered: never a second write", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 200, description = "Deleted (or already deleted)", body = CommandView),
        (status = 202, description = "Accepted, not applied yet: `Content-Location` is the status URL", body = CommandView),
        (status = 303, description = "Form: to the user's posts (`/my`)"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes (or reports) from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_post(
    State(st): State<AppState>,
    user: AuthUser,
    sender: Sender,
    City(city): City,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let post_id = post_id(&id)?;
    let kind = CommandKind::Delete {
        post_id,
        user_id: user.id,
    };
    let path = format!("/post/{post_id}");
    Writer::new(&st, &user, city, &headers, sender)
        .own_post(body, "DELETE", &path, post_id, kind)
        .await
}

/// Renews one of the user's posts for another 7 days (an expired one too).
#[utoipa::path(post, path = "/post/{id}/renew", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key (per user, 24 h) get the first answer, or the outcome of the first attempt's command when that attempt failed or never answered: never a second write", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 200, description = "Renewed", body = CommandView),
        (status = 202, description = "Accepted, not applied yet: `Content-Location` is the status URL", body = CommandView),
        (status = 303, description = "Form: to the post"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post, or a cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post, or it is deleted or hidden", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Renewed too early (allowed 48 h after posting or the last renewal; the detail says from when), or a request with this Idempotency-Key is in progress and its write has no outcome yet", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes (or reports) from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn renew_post(
    State(st): State<AppState>,
    user: AuthUser,
    sender: Sender,
    City(city): City,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let post_id = post_id(&id)?;
    let kind = CommandKind::Renew {
        post_id,
        user_id: user.id,
    };
    let path = format!("/post/{post_id}/renew");
    Writer::new(&st, &user, city, &headers, sender)
        .own_post(body, "POST", &path, post_id, kind)
        .await
}

/// The renewal page a reminder e-mail links to: the user's post with one
/// button that posts `POST /post/{id}/renew` (with the session's CSRF
/// token). Without a valid session, a page that asks to log in first
/// rather than a bare 401, since it is opened from a mail.
#[utoipa::path(get, path = "/post/{id}/renew", tag = "writes",
    security((), ("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "The renewal form, or (no session) a log-in prompt", body = String, content_type = "text/html"),
        (status = 403, description = "Another user's post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post, or it is deleted or hidden", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn renew_form(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    ctx: PageCtx,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let post_id = post_id(&id)?;
    let path = format!("/post/{post_id}/renew");
    let Ok(user) = user else {
        let chrome = ctx.chrome(&path, Viewer::Anonymous);
        return Ok(Html(render::login_to_continue(chrome, "renew your post")).into_response());
    };
    let post = read_post(&st, &ctx.city, &fresh, post_id).await?;
    if !matches!(post.status, PostStatus::Live | PostStatus::Expired) {
        return Err(ApiError::NotFound);
    }
    if post.user_id != user.id {
        return Err(not_theirs());
    }
    let csrf = st.csrf.for_session(&user.claims.jti);
    // Personal (it carries the session's CSRF token): never stored by a
    // cache on the way.
    Ok(personal(render::renew_form(
        ctx.chrome(&path, Viewer::LoggedIn),
        &post,
        &csrf,
    )))
}

/// Reports a post of the host's city to the moderators; enough distinct
/// reporters hide it. Reporting the same post twice changes nothing.
#[utoipa::path(post, path = "/report", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key (per user, 24 h) get the first answer, or the outcome of the first attempt's command when that attempt failed or never answered: never a second write", pattern = "^[!-~]{1,255}$")),
    request_body(content(
        (ReportInput = "application/json"),
        (ReportInput = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Recorded", body = CommandView),
        (status = 202, description = "Accepted, not applied yet: `Content-Location` is the status URL", body = CommandView),
        (status = 303, description = "Form: to the post"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie session without a valid CSRF token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress and its write has no outcome yet: retry shortly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named; or an Idempotency-Key reused for another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the region store is down", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many writes (or reports) from this address or by this account: `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(
    State(st): State<AppState>,
    user: AuthUser,
    sender: Sender,
    City(city): City,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (bytes, form) = checked_body(&st, &user, &headers, body)?;
    let input: ReportInput = parse_body(form, &bytes)?;
    let reason = input.reason.trim().to_string();
    let mut bad = Vec::new();
    if !(1..=500).contains(&reason.chars().count()) {
        bad.push(FieldError {
            field: "reason",
            problem: "must be 1 to 500 characters".into(),
        });
    }
    if reason.contains('\0') {
        bad.push(FieldError {
            field: "reason",
            problem: "must not contain NUL characters".into(),
        });
    }
    if !bad.is_empty() {
        return Err(ApiError::Invalid(bad));
    }
    let reporter_id = user.id;
    let post_id = input.post_id;
    let kind = CommandKind::Report {
        post_id,
        reporter_id,
        reason,
    };
    let reported = city.clone();
    let res = Writer::new(&st, &user, city, &headers, sender)
        .reports()
        .run(
            "POST",
            "/report",
            &bytes,
            form,
            |_| Write::existing(post_id, kind),
            false,
        )
        .await;
    // Counted once produced (applied or pending): what a surge alert
    // watches is readers reporting, whatever the writer then decides.
    if res.is_ok() {
        st.metrics.reported(&reported);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::commands::CommandProgress;

    #[test]
    fn whole_numbers_may_be_written_as_floats_but_fractions_are_refused() {
        let parse = |price: &str| {
            serde_json::from_str::<PostInput>(&format!(
                r#"{{"category":"free","title":"t","price":{price},"image_count":2.0}}"#
            ))
        };
        assert_eq!(parse("120.0").unwrap().price, Some(120));
        assert_eq!(parse("null").unwrap().price, None);
        assert!(parse("120.5").is_err());
        assert!(parse(r#""120""#).is_err(), "JSON strings are not numbers");
        let form: PostForm = serde_urlencoded::from_str("category=free&title=t&price=7").unwrap();
        assert_eq!(PostInput::from(form).price, Some(7));
    }

    #[test]
    fn rejections_answer_what_the_poster_did_wrong() {
        assert_eq!(rejected("not the poster's post").status(), 403);
        assert_eq!(rejected("no such post").status(), 404);
        assert_eq!(rejected("the post is not live").status(), 404);
        assert_eq!(rejected("a post with this id exists").status(), 409);
    }

    #[test]
    fn a_pending_write_names_its_post_and_its_status_url() {
        let w = Write {
            kind: CommandKind::Delete {
                post_id: Id(5),
                user_id: Id(6),
            },
            post: Id(5),
            creates: false,
        };
        let keys = RywKeys::new(b"forward key of this test, 32 bytes", None);
        let seal = Seal {
            keys: &keys,
            now: 1_800_000_000,
        };
        let a = answer(&w, Id(9), None, false, &seal);
        assert_eq!(a.status, 202);
        let h = |n: &str| {
            a.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("location").as_deref(), Some("/post/5"));
        assert_eq!(h("content-location").as_deref(), Some("/commands/9"));
        let cookie = h("set-cookie").unwrap();
        let value = cookie
            .strip_prefix("cb_ryw=")
            .and_then(|c| c.split(';').next())
            .unwrap();
        assert!(value.starts_with("p.9.5.1800000000."), "{cookie}");
        assert_eq!(
            cityboard_protocol::ryw::open(
                value,
                &[cityboard_protocol::ryw::cookie_key(
                    b"forward key of this test, 32 bytes"
                )],
                1_800_000_000
            ),
            Some(pending(Id(9), Id(5)))
        );
        let view: CommandView = serde_json::from_str(&a.body).unwrap();
        assert_eq!(view.state, CommandProgress::Pending);
    }
}
