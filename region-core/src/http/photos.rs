//! Photos of a post: the owner's `/post/{id}/photos` page, the upload its
//! form posts, and `/media/…`, where the stored sizes are served.
//!
//! The upload's only credential is the HMAC token in the form's action
//! (`auth::upload`): it names the city, the post, the user and the free
//! slots, for 15 minutes. The upload is streamed part by part, each photo
//! processed (`media`) and stored before the next is read, so a request
//! holds one photo's bytes at a time. Its command (`AddPhotos`) adds them
//! all or none; whatever fails, the objects this request stored are
//! removed before it answers, so nothing is kept half-way.

use anyhow::Context;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::upload::Upload;
use crate::bus::notify::CommandState;
use crate::http::chrome::{PageCtx, personal};
use crate::http::commands::CommandView;
use crate::http::error::{ApiError, Problem};
use crate::http::error_pages::wants_html;
use crate::http::extract::Sender;
use crate::http::pages::own_live_post;
use crate::http::posts::PhotoView;
use crate::http::uploads::{PHOTO_LIMIT, UPLOAD_LIMIT, UploadQuery};
use crate::http::writes::{rejected, write_cookie};
use crate::http::{AppState, AuthUser, Freshness};
use crate::limits::{Limit, ip_subject};
use crate::media::{MediaError, Photos, Size};
use crate::model::photo::MAX_PHOTOS;
use crate::model::post::FieldError;
use crate::model::{Command, CommandKind, Id, Photo};
use crate::render::{self, Viewer};
use crate::token::Consistency;

/// `Cache-Control` of every stored size: its URL names a photo id that is
/// new for each upload, so its bytes never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The photos a successful upload added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// The command that added them (its status URL: `/commands/{id}`).
    #[serde(flatten)]
    pub command: CommandView,
    /// The photos, in the order sent.
    pub photos: Vec<PhotoView>,
}

fn store(st: &AppState) -> Result<&Photos, ApiError> {
    st.photos
        .as_ref()
        .ok_or(ApiError::NotConfigured("no photo store is configured"))
}

/// The upload form's action for `post`: a fresh token for the user and
/// the slots still free.
fn action(st: &AppState, city: &str, post: &crate::model::Post, user: Id) -> String {
    let free = MAX_PHOTOS.saturating_sub(post.photos.len());
    let token = st.uploads.issue(
        city,
        post.id,
        user,
        u8::try_from(free).unwrap_or(0),
        st.clock.now().timestamp(),
    );
    format!("/post/{}/photos?token={token}", post.id)
}

/// The owner's photos page: the post's photos and a form to add more.
#[utoipa::path(get, path = "/post/{id}/photos", tag = "pages",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "The photos and, while the post has room, a multipart upload form whose action carries a 15-minute upload token", body = String, content_type = "text/html"),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn photos_page(
    State(st): State<AppState>,
    ctx: PageCtx,
    user: AuthUser,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let post = own_live_post(&st, &ctx.city, &fresh, &user, &id).await?;
    let action = action(&st, &ctx.city, &post, user.id);
    let chrome = ctx.chrome(&format!("/post/{}/photos", post.id), Viewer::LoggedIn);
    Ok(personal(render::photos_page(chrome, &post, &action, None)))
}

/// Adds photos to a post: a `multipart/form-data` body whose `photo`
/// parts are JPEG, PNG or WebP files (the type is read from the bytes),
/// each at most 10 MB; the post's photos, these included, at most 10.
#[utoipa::path(post, path = "/post/{id}/photos", tag = "writes",
    security(()),
    params(
        ("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        UploadQuery,
    ),
    request_body(content = String, content_type = "multipart/form-data",
        description = "One or more `photo` parts, each a JPEG, PNG or WebP file of at most 10 MB"),
    responses(
        (status = 201, description = "Every photo stored and added to the post", body = Uploaded),
        (status = 202, description = "Stored; the command is not applied yet (its status URL is in Content-Location)", body = Uploaded),
        (status = 303, description = "A browser's form: back to the photos page"),
        (status = 400, description = "Not a multipart body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The upload token is missing, forged, expired or for another post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live post", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A photo over 10 MB", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a JPEG, PNG or WebP photo, a damaged one, one with more pixels than the decoding limits, none at all, or more than the post has room for", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a rate limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Writes, the photo store or the city's shard are unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
// Each argument is an extractor; bundling them would hide what the
// handler reads from the request.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    State(st): State<AppState>,
    ctx: PageCtx,
    headers: HeaderMap,
    sender: Sender,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let post: Id = id.parse().map_err(|_| ApiError::NotFound)?;
    // The token first: without a valid one nothing else is looked at, not
    // even the body.
    let grant = query
        .ok()
        .and_then(|Query(q)| {
            st.uploads
                .open(&ctx.city, &q.token, st.clock.now().timestamp())
        })
        .filter(|g| g.post == post)
        .ok_or_else(|| {
            ApiError::Forbidden(
                "the upload link is invalid or has expired: open the photos page again".into(),
            )
        })?;
    let photos = store(&st)?;
    let received = receive(&st, photos, &ctx.city, &grant, &sender, body).await;
    let added = match received {
        Ok(added) => added,
        Err(e) if wants_html(&headers) => return again(&st, &ctx, &fresh, &grant, &e).await,
        Err(e) => return Err(e),
    };
    let mut res = if wants_html(&headers) {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(to) = HeaderValue::from_str(&format!("/post/{post}/photos")) {
            r.headers_mut().insert(header::LOCATION, to);
        }
        r
    } else {
        let code = if added.status.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        let view = match &added.status {
            Some(s) => CommandView::from_status(s),
            None => CommandView::pending(added.command, Some(post)),
        };
        let body = Uploaded {
            command: view,
            photos: added
                .photos
                .iter()
                .map(|p| PhotoView::of(post, p))
                .collect(),
        };
        let mut r = (code, axum::Json(body)).into_response();
        if added.status.is_none()
            && let Ok(status_url) = HeaderValue::from_str(&format!("/commands/{}", added.command))
        {
            r.headers_mut().insert(header::CONTENT_LOCATION, status_url);
        }
        r
    };
    if let Some(cookie) = write_cookie(&st, added.command, post, added.status.as_ref())
        && let Ok(v) = HeaderValue::from_str(&cookie)
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// What an upload did: its command, the photos, and the command's outcome
/// (none: not applied yet).
struct Added {
    command: Id,
    photos: Vec<Photo>,
    status: Option<crate::bus::notify::CommandStatus>,
}

/// Reads, processes and stores every photo of the body, then adds them
/// with one command; on any failure removes what it stored.
async fn receive(
    st: &AppState,
    photos: &Photos,
    city: &str,
    grant: &Upload,
    sender: &Sender,
    body: Result<Multipart, MultipartRejection>,
) -> Result<Added, ApiError> {
    let mut body = body.map_err(|e| ApiError::BadRequest(format!("not a multipart form: {e}")))?;
    let account = grant.user.to_string();
    st.limiter
        .take(&[
            (Limit::WritesPerIp, &ip_subject(sender.ip)),
            (Limit::WritesPerAccount, &account),
        ])
        .await?;
    let mut stored: Vec<Photo> = Vec::new();
    let outcome = async {
        while let Some(field) = body.next_field().await.map_err(|e| multipart_error(&e))? {
            if field.name() != Some("photo") {
                continue;
            }
            let Some(bytes) = read_photo(field).await? else {
                continue;
            };
            if stored.len() >= usize::from(grant.free_slots) {
                return Err(too_many(grant.free_slots));
            }
            let sizes = st.media.process(bytes).await.map_err(refused)?;
            let id = st.ids.next().await.context("assigning an id")?;
            let (width, height) = sizes.large();
            photos
                .put(city, grant.post, id, &sizes)
                .await
                .map_err(refused)?;
            stored.push(Photo { id, width, height });
        }
        if stored.is_empty() {
            return Err(ApiError::Invalid(vec![FieldError {
                field: "photo",
                problem: "choose at least one photo".into(),
            }]));
        }
        add(st, city, grant, sender, stored.clone()).await
    }
    .await;
    // `add` answers a rejected command as an error: what is Ok is applied,
    // or pending and then applied by the writer (or, if it is rejected
    // there after all, swept as an orphan by the janitor).
    if outcome.is_err() {
        for p in &stored {
            if let Err(e) = photos.remove_photo(city, grant.post, p.id).await {
                tracing::warn!(error = %e, photo = %p.id, "removing a refused upload's photo");
            }
        }
    }
    outcome
}

/// The photo in `field`, read to at most `PHOTO_LIMIT` bytes; none for an
/// empty part (a browser sends one when no file was chosen).
async fn read_photo(mut field: Field<'_>) -> Result<Option<Vec<u8>>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
        if bytes.len() + chunk.len() > PHOTO_LIMIT {
            return Err(ApiError::PayloadTooLarge(PHOTO_LIMIT));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((!bytes.is_empty()).then_some(bytes))
}

/// Produces the `AddPhotos` command and waits for its outcome within the
/// apply wait; a rejection is the uploader's error.
async fn add(
    st: &AppState,
    city: &str,
    grant: &Upload,
    sender: &Sender,
    photos: Vec<Photo>,
) -> Result<Added, ApiError> {
    let (route, _) = st.router.route(city)?;
    let command = Command {
        id: st.ids.next().await.context("assigning an id")?,
        city: city.to_string(),
        created_at: st.clock.now(),
        epoch: route.epoch,
        request_id: sender.request_id.clone(),
        kind: CommandKind::AddPhotos {
            post_id: grant.post,
            user_id: grant.user,
            photos: photos.clone(),
        },
    };
    let status = st.commands.submit(grant.user, &command).await?;
    crate::trail::produced(&command);
    if let Some(s) = &status
        && s.state == CommandState::Rejected
    {
        return Err(match s.reason.as_deref().unwrap_or("") {
            "too many photos" => too_many(0),
            other => rejected(other),
        });
    }
    Ok(Added {
        command: command.id,
        photos,
        status,
    })
}

fn too_many(free: u8) -> ApiError {
    ApiError::Invalid(vec![FieldError {
        field: "photo",
        problem: format!(
            "a post has at most {MAX_PHOTOS} photos: this one had room for {free} more"
        ),
    }])
}

/// The uploader's side of a media error.
fn refused(e: MediaError) -> ApiError {
    match e {
        MediaError::UnsupportedType(_) | MediaError::Corrupt(_) | MediaError::TooLarge(_) => {
            ApiError::Invalid(vec![FieldError {
                field: "photo",
                problem: e.to_string(),
            }])
        }
        MediaError::Busy => ApiError::NotConfigured("photo processing is shutting down"),
        MediaError::Internal(e) => ApiError::Internal(e),
    }
}

/// A body that broke off, or passed the request's limit.
fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(UPLOAD_LIMIT)
    } else {
        ApiError::BadRequest(format!("cannot read the upload: {}", e.body_text()))
    }
}

/// A browser's refused upload: the photos page again, with why, and the
/// error's status.
async fn again(
    st: &AppState,
    ctx: &PageCtx,
    fresh: &Consistency,
    grant: &Upload,
    e: &ApiError,
) -> Result<Response, ApiError> {
    let post = crate::http::posts::read_post(st, &ctx.city, fresh, grant.post).await?;
    let message = match e {
        ApiError::Invalid(errors) => errors
            .iter()
            .map(|f| f.problem.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let action = action(st, &ctx.city, &post, grant.user);
    let chrome = ctx.chrome(&format!("/post/{}/photos", post.id), Viewer::LoggedIn);
    let mut res = personal(render::photos_page(chrome, &post, &action, Some(&message)));
    *res.status_mut() = e.status();
    Ok(res)
}

/// One stored size of a photo of the host's city.
#[utoipa::path(get, path = "/media/{post}/{photo}/{file}", tag = "posts",
    security(()),
    params(
        ("post" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        ("photo" = String, Path, description = "Photo id (decimal)", pattern = "^[1-9][0-9]{0,18}$"),
        ("file" = String, Path, description = "The size: `300.jpg` (300×300, cropped), `600.jpg` (within 600×450) or `1200.jpg` (within 1200×900)", pattern = "^(300|600|1200)\\.jpg$"),
    ),
    responses(
        (status = 200, description = "The JPEG, cacheable for a year (`immutable`)", body = Vec<u8>, content_type = "image/jpeg"),
        (status = 404, description = "No such photo or size", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The photo store is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn media(
    State(st): State<AppState>,
    crate::http::City(city): crate::http::City,
    Path((post, photo, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let post: Id = post.parse().map_err(|_| ApiError::NotFound)?;
    let photo: Id = photo.parse().map_err(|_| ApiError::NotFound)?;
    let size = file
        .strip_suffix(".jpg")
        .and_then(Size::from_name)
        .ok_or(ApiError::NotFound)?;
    let bytes = store(&st)?
        .get(&city, post, photo, size)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading a photo");
            ApiError::NotConfigured("the photo store is unavailable")
        })?
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}
