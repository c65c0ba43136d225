//! GET /post/{id} and GET /post (listing and search).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::bus::notify::CommandState;
use crate::cache::pages::PageCache;
use crate::cursor::Cursor;
use crate::db::queries::{GetPost, ListPosts, Sort};
use crate::http::error::{ApiError, Problem};
use crate::http::{AppState, City, Freshness};
use crate::media::Size;
use crate::model::post::FieldError;
use crate::model::{Id, Photo, Post, PostStatus};
use crate::render;
use crate::token::{Consistency, WriteToken};

/// A post as the api shows it: no status (only live posts are shown), ids
/// as strings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostView {
    /// The post's id.
    pub id: Id,
    /// City slug.
    pub city: String,
    /// One of the known categories.
    pub category: String,
    /// 1–200 characters, as typed.
    pub title: String,
    /// At most 20 000 characters, as typed.
    pub description: String,
    /// Whole currency units.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: Option<i64>,
    /// Free-form neighbourhood.
    pub location: Option<String>,
    /// Number of photos.
    #[schema(minimum = 0, maximum = 10)]
    pub image_count: i16,
    /// Its photos, in order.
    #[serde(default)]
    pub photos: Vec<PhotoView>,
    /// Bumped by every change.
    #[schema(minimum = 1)]
    pub version: i64,
    /// When it was posted.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was posted or last renewed: listings are ordered by it.
    pub listed_at: chrono::DateTime<chrono::Utc>,
    /// When it expires unless renewed.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// One photo of a post, with the URLs of its sizes.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhotoView {
    #[schema(value_type = String)]
    pub id: Id,
    /// Width of the large size, in pixels.
    pub width: u32,
    /// Height of the large size, in pixels.
    pub height: u32,
    /// 300×300, cropped.
    pub thumb: String,
    /// Within 600×450.
    pub medium: String,
    /// Within 1200×900.
    pub large: String,
}

impl PhotoView {
    /// `p` of `post`.
    pub fn of(post: Id, p: &Photo) -> PhotoView {
        PhotoView {
            id: p.id,
            width: p.width,
            height: p.height,
            thumb: p.url(post, Size::Thumb),
            medium: p.url(post, Size::Medium),
            large: p.url(post, Size::Large),
        }
    }
}

impl From<Post> for PostView {
    fn from(p: Post) -> Self {
        PostView {
            id: p.id,
            city: p.city,
            category: p.fields.category,
            title: p.fields.title,
            description: p.fields.description,
            price: p.fields.price,
            location: p.fields.location,
            image_count: p.fields.image_count,
            photos: p
                .photos
                .iter()
                .map(|photo| PhotoView::of(p.id, photo))
                .collect(),
            version: p.version,
            created_at: p.created_at,
            listed_at: p.listed_at,
            expires_at: p.expires_at,
        }
    }
}

/// One post of `city` (any status) from a node that `fresh` allows,
/// counted under the node that answered; none is a 404.
pub(crate) async fn read_post(
    st: &AppState,
    city: &str,
    fresh: &Consistency,
    id: Id,
) -> Result<Post, ApiError> {
    let settled;
    let fresh = match fresh {
        Consistency::Pending { command, post } if *post == id => {
            settled = settle(st, *command, *post).await;
            &settled
        }
        other => other,
    };
    let served = st
        .router
        .read(
            city,
            fresh,
            &GetPost {
                city: city.to_string(),
                id,
            },
        )
        .await?;
    st.metrics.read_by(&served.node);
    served.value.ok_or(ApiError::NotFound)
}

/// How long a read of a post whose write was accepted but not applied (a
/// 202, whose sealed cookie the client carries) waits for the writer before
/// it reads the primary as it stands. Under the edge's 5 s timeout with the
/// request's own work; the wait ends at once when the writer reports.
const PENDING_READ_WAIT: Duration = Duration::from_secs(2);

/// What a read of the post of pending `command` needs once the writer has
/// had up to `PENDING_READ_WAIT` more: applied, a node with its LSN (so a
/// replica that has it will do); rejected, any node (the write changed
/// nothing); still unknown, or the status unreadable, the primary.
async fn settle(st: &AppState, command: Id, post: Id) -> Consistency {
    let pending = Consistency::Pending { command, post };
    match st.commands.outcome_within(command, PENDING_READ_WAIT).await {
        Ok(Some(s)) => match (s.state, s.applied) {
            (CommandState::Applied, Some(at)) => Consistency::AtLeast(WriteToken {
                epoch: at.epoch,
                shard: at.shard,
                lsn: at.lsn,
                post,
                version: at.version,
            }),
            (CommandState::Rejected, _) => Consistency::Any,
            // Applied, but by a replay that could not tell where.
            (CommandState::Applied, None) => pending,
        },
        Ok(None) => pending,
        Err(e) => {
            tracing::warn!(error = %e, %command, "pending write's status unreadable; reading the primary");
            pending
        }
    }
}

/// HTML for browsers (they list `text/html` in Accept, never
/// `application/json`); JSON for everyone else, including clients that send
/// no Accept or `*/*`.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !accept.contains("text/html") || accept.contains("application/json")
}

/// One post: an HTML page for browsers (the page the publisher pre-renders
/// for the edge) to browsers, JSON to `Accept: application/json` (and to
/// clients that state no preference).
#[utoipa::path(get, path = "/post/{id}", tag = "posts",
    params(("id" = String, Path, description = "Post id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "The post", content(
            (PostView = "application/json"),
            (String = "text/html"))),
        (status = 404, description = "No such post, or it is deleted, hidden or expired", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_post(
    State(st): State<AppState>,
    City(city): City,
    Freshness(fresh): Freshness,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Not a well-formed id: no such post.
    let id: Id = id.parse().map_err(|_| ApiError::NotFound)?;
    // The in-process cache only for reads that need no particular freshness
    // (a token's read must reach a node that has the write).
    let cacheable = matches!(fresh, Consistency::Any) && st.views.enabled();
    let cached = if cacheable {
        st.views.get(&(city.clone(), id))
    } else {
        None
    };
    let post = match cached {
        Some(post) => post,
        None => {
            let post = Arc::new(read_post(&st, &city, &fresh, id).await?);
            if cacheable {
                st.views.put((city, id), post.clone());
            }
            post
        }
    };
    // Checked on every answer, cached or not: a cached post expires on time.
    if post.status != PostStatus::Live || post.expires_at <= st.clock.now() {
        return Err(ApiError::NotFound);
    }
    if wants_json(&headers) {
        Ok(Json(PostView::from(Post::clone(&post))).into_response())
    } else {
        Ok(Html(render::post_page(&post)).into_response())
    }
}

/// Query of `GET /post`. A parameter sent empty (`cursor=`, `min_price=`:
/// what a form submits for a field left blank) is the same as one not sent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Full-text search, web-search syntax (`"exact phrase"`, `-word`, `or`).
    #[param(max_length = 200)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub search: Option<String>,
    /// Match the search against titles only.
    #[serde(default, deserialize_with = "form_bool")]
    #[param(value_type = Option<bool>)]
    pub titles_only: bool,
    /// One of the known categories.
    #[param(inline, value_type = Option<Category>)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub category: Option<String>,
    /// Lowest price, inclusive.
    #[param(minimum = 0, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub min_price: Option<i64>,
    /// Highest price, inclusive.
    #[param(minimum = 0, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub max_price: Option<i64>,
    /// Only posts with (true) or without (false) photos.
    #[serde(default, deserialize_with = "blank_is_none")]
    pub has_image: Option<bool>,
    /// Only posts listed (posted or renewed) since midnight in the city's
    /// time zone.
    #[serde(default, deserialize_with = "form_bool")]
    #[param(value_type = Option<bool>)]
    pub today: bool,
    /// Order: newest first (default; by posting or last renewal), or by
    /// price, ascending or descending (posts without a price last in both).
    #[param(inline, value_type = Option<SortOrder>)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub sort: Option<String>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    #[serde(default, deserialize_with = "blank_is_none")]
    pub cursor: Option<String>,
    /// Posts per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "blank_is_none")]
    pub limit: Option<i64>,
}

/// A query value, with an empty one as absent: a form submits every field,
/// the empty ones as `name=`. Exactly empty, not blank: the OpenAPI
/// document says so (`http::openapi`), and a value it calls invalid must
/// be refused.
fn blank_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The values a checkbox parameter takes (the OpenAPI document lists them).
pub const FORM_BOOLS: [&str; 6] = ["", "false", "0", "true", "on", "1"];

/// A checkbox: `true` (the forms' value), `on` (a browser's default for a
/// checkbox without value) or `1` is set; empty, `false` or `0` is not.
fn form_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref() {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "on" | "1") => Ok(true),
        Some(other) => Err(serde::de::Error::custom(format!(
            "{other:?} is not a boolean"
        ))),
    }
}

/// The listing orders (for the OpenAPI document).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SortOrder {
    Newest,
    PriceAsc,
    PriceDesc,
}

/// The known categories (for the OpenAPI document).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Category {
    ForSale,
    Housing,
    Jobs,
    Services,
    Community,
    Gigs,
    Vehicles,
    Free,
}

/// One page of a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostPage {
    /// Newest first.
    pub posts: Vec<PostView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn field(field: &'static str, problem: &str) -> FieldError {
    FieldError {
        field,
        problem: problem.to_string(),
    }
}

/// Every invalid parameter, named (a 422 lists them all at once); the page
/// size and the order.
fn validate(p: &ListParams) -> Result<(i64, Sort), ApiError> {
    let mut bad = Vec::new();
    let sort = match p.sort.as_deref() {
        None => Sort::Newest,
        Some(s) => Sort::parse(s).unwrap_or_else(|| {
            bad.push(field("sort", "must be newest, price_asc or price_desc"));
            Sort::Newest
        }),
    };
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        bad.push(field("limit", "must be 1 to 100"));
    }
    for (name, v) in [("min_price", p.min_price), ("max_price", p.max_price)] {
        if v.is_some_and(|v| !(0..=1_000_000_000).contains(&v)) {
            bad.push(field(name, "must be between 0 and 1000000000"));
        }
    }
    if p.category
        .as_deref()
        .is_some_and(|c| !crate::model::post::CATEGORIES.contains(&c))
    {
        bad.push(field("category", "unknown category"));
    }
    if p.search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        bad.push(field("search", "must be at most 200 characters"));
    }
    if bad.is_empty() {
        Ok((limit, sort))
    } else {
        Err(ApiError::Invalid(bad))
    }
}

/// Posts of the host's city listed (posted or renewed) in the last 7 days,
/// newest first or by price: all of them, or those matching a full-text
/// search and filters. An HTML page for
/// browsers, JSON for `Accept: application/json`.
#[utoipa::path(get, path = "/post", tag = "posts",
    params(ListParams),
    responses(
        (status = 200, description = "One page of posts", content(
            (PostPage = "application/json"),
            (String = "text/html"))),
        (status = 400, description = "Malformed query string or a cursor that was tampered with or issued for other filters or another sort", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "This region does not serve the host's city", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The city's shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_posts(
    State(st): State<AppState>,
    City(city): City,
    Freshness(fresh): Freshness,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (limit, sort) = validate(&p)?;
    // Postgres text cannot hold NUL: in a search it separates words like
    // any other non-letter.
    let search = p
        .search
        .map(|s| s.replace('\0', " "))
        .filter(|s| !s.trim().is_empty());
    // A search counts once, at its first page (the pages a cursor follows
    // are the same search); cached answers count too. What the edge serves
    // from its own cache never reaches here.
    if let Some(s) = &search
        && p.cursor.is_none()
    {
        st.metrics.searched(&city, s);
    }
    // The cursor is bound to the city and filters it was issued for.
    let scope = format!(
        "{city}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}",
        search,
        p.category,
        p.min_price,
        p.max_price,
        p.has_image,
        p.titles_only,
        p.today,
        sort.as_str()
    );
    let now = st.clock.now();
    // "Posted today" is the city's day, not the server's. Not part of the
    // cursor's scope (a feed scrolled past midnight goes on), but of the
    // cache key, so a cached page of yesterday is not served today.
    let since = p
        .today
        .then(|| crate::locale::city_locale(&city).start_of_today(now));
    let json = wants_json(&headers);
    // Cached pages only for reads that need no particular freshness.
    let cache_key = (matches!(fresh, Consistency::Any)
        && (st.cache.enabled() || st.pages.enabled()))
    .then(|| {
        PageCache::key(
            &city,
            &format!("{scope}|{since:?}|{:?}|{limit}|{json}", p.cursor),
        )
    });
    if let Some(key) = &cache_key {
        if let Some(page) = st.pages.get(key) {
            return Ok(page_response(page, json));
        }
        if let Some(page) = st.cache.get(key).await {
            let page = Bytes::from(page);
            st.pages.put(key.clone(), page.clone());
            return Ok(page_response(page, json));
        }
    }
    let after = match &p.cursor {
        Some(c) => Some(
            Cursor::decode(c, &st.cursor_key, &scope)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    let query = ListPosts {
        city: city.clone(),
        now,
        search: search.clone(),
        titles_only: p.titles_only,
        category: p.category.clone(),
        min_price: p.min_price,
        max_price: p.max_price,
        has_image: p.has_image,
        since,
        sort,
        after,
        limit,
    };
    let served = st.router.read(&city, &fresh, &query).await?;
    st.metrics.read_by(&served.node);
    let posts = served.value;
    let next_cursor = if posts.len() as i64 == limit {
        posts.last().map(|last| {
            Cursor {
                key: sort.key_of(last),
                id: last.id,
            }
            .encode(&st.cursor_key, &scope)
        })
    } else {
        None
    };
    let page = if json {
        serde_json::to_vec(&PostPage {
            posts: posts.into_iter().map(PostView::from).collect(),
            next_cursor,
        })?
    } else {
        let next = next_cursor.map(|c| {
            let mut q = form_urlencoded_pairs(&[
                ("search", search.as_deref()),
                ("category", p.category.as_deref()),
                ("min_price", p.min_price.map(|v| v.to_string()).as_deref()),
                ("max_price", p.max_price.map(|v| v.to_string()).as_deref()),
                ("has_image", p.has_image.map(|v| v.to_string()).as_deref()),
                ("titles_only", p.titles_only.then_some("true")),
                ("today", p.today.then_some("true")),
                ("sort", (sort != Sort::Newest).then_some(sort.as_str())),
                ("limit", Some(limit.to_string().as_str())),
            ]);
            q.push_str("&cursor=");
            q.push_str(&c);
            format!("/post?{q}")
        });
        let filters = render::ListFilters {
            search: search.clone().unwrap_or_default(),
            category: p.category.clone().unwrap_or_default(),
            min_price: p.min_price.map(|v| v.to_string()).unwrap_or_default(),
            max_price: p.max_price.map(|v| v.to_string()).unwrap_or_default(),
            titles_only: p.titles_only,
            today: p.today,
            sort: sort.as_str().to_string(),
        };
        render::list_page(&city, &filters, &posts, next.as_deref()).into_bytes()
    };
    if let Some(key) = cache_key {
        st.cache.put(&key, &page).await;
        let page = Bytes::from(page);
        st.pages.put(key, page.clone());
        return Ok(page_response(page, json));
    }
    Ok(page_response(Bytes::from(page), json))
}

fn form_urlencoded_pairs(pairs: &[(&str, Option<&str>)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    serde_urlencoded::to_string(present).unwrap_or_default()
}

fn page_response(page: Bytes, json: bool) -> Response {
    let mut res = page.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        }),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ListParams {
        ListParams::default()
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let p = ListParams {
            search: Some("a".repeat(201)),
            category: Some("weapons".into()),
            min_price: Some(10),
            max_price: Some(-1),
            limit: Some(0),
            sort: Some("cheapest".into()),
            ..params()
        };
        let Err(ApiError::Invalid(bad)) = validate(&p) else {
            panic!("expected 422")
        };
        let names: Vec<_> = bad.iter().map(|e| e.field).collect();
        assert_eq!(names, ["sort", "limit", "max_price", "category", "search"]);
        assert_eq!(validate(&params()).ok(), Some((20, Sort::Newest)));
    }

    #[test]
    fn empty_form_fields_are_absent() {
        let p: ListParams = serde_urlencoded::from_str(
            "search=&category=&min_price=&max_price=&has_image=&sort=&cursor=&limit=\
             &titles_only=&today=",
        )
        .unwrap();
        assert!(p.search.is_none() && p.category.is_none() && p.cursor.is_none());
        assert!(p.min_price.is_none() && p.max_price.is_none() && p.limit.is_none());
        assert!(p.sort.is_none() && p.has_image.is_none());
        assert!(!p.titles_only && !p.today);
        assert_eq!(validate(&p).ok(), Some((20, Sort::Newest)));

        let p: ListParams = serde_urlencoded::from_str(
            "min_price=5&sort=price_desc&titles_only=true&today=on&search=bike",
        )
        .unwrap();
        assert_eq!((p.min_price, p.titles_only, p.today), (Some(5), true, true));
        assert_eq!(validate(&p).ok(), Some((20, Sort::PriceDesc)));
        assert!(serde_urlencoded::from_str::<ListParams>("min_price=five").is_err());
        assert!(serde_urlencoded::from_str::<ListParams>("today=maybe").is_err());
    }

    #[test]
    fn browsers_get_html() {
        let mut h = HeaderMap::new();
        assert!(wants_json(&h), "no preference: JSON");
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(wants_json(&h));
    }
}
