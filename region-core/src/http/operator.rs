//! Operator endpoints: reached directly on the origin (not through the
//! edge, so no edge signature), authorized by the operator's bearer token.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::Archive;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};

/// Posts archived per object (and deleted per transaction).
const ARCHIVE_BATCH: i64 = 1000;

/// What operator endpoints need besides the shared state.
#[derive(Debug)]
pub struct Operator {
    token: Vec<u8>,
    /// None: `DELETE /old_posts` answers 503 (no archive configured).
    pub archive: Option<Archive>,
}

impl Operator {
    pub fn new(token: Vec<u8>, archive: Option<Archive>) -> Operator {
        Operator { token, archive }
    }

    /// `Authorization: Bearer <operator token>`, compared in constant time
    /// so the answer's timing does not tell how much of a guess was right.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let same = given.len() == self.token.len()
            && given
                .iter()
                .zip(&self.token)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same && !self.token.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Query of `DELETE /old_posts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OldPostsParams {
    /// Archive expired posts whose lifetime ended longer ago than this
    /// (humantime: `30days`, `12h`); default 30 days. Keep it longer than
    /// the commands topic's retention.
    #[param(
        example = "30days",
        pattern = "^[1-9][0-9]{0,5}(s|m|h|d|days|w|weeks)$"
    )]
    pub older_than: Option<String>,
    /// Only this city (slug); default every city of the region.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub city: Option<String>,
}

/// What `DELETE /old_posts` archived.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OldPostsArchived {
    /// Posts whose lifetime ended before this were archived.
    pub cutoff: DateTime<Utc>,
    /// Posts written to the archive and removed from their shard.
    pub archived: u64,
    /// Objects written, relative to the archive location
    /// (`old-posts/<region>/<city>/<first id>-<last id>.jsonl`).
    pub objects: Vec<String>,
    /// Cities skipped because a move holds their fence; a rerun archives
    /// them once the move is over.
    pub skipped_cities: Vec<String>,
}

/// DELETE /old_posts
#[utoipa::path(delete, path = "/old_posts", tag = "operations",
    params(OldPostsParams),
    security(("operator" = [])),
    responses(
        (status = 200, description = "Old expired posts archived (JSON lines, one object per \
                                      batch of a city) and removed from their shards; a rerun \
                                      archives nothing more", body = OldPostsArchived),
        (status = 400, description = "Malformed query (unknown parameter, bad duration or \
                                      city)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong operator token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No archive configured, or a shard is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_old_posts(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<OldPostsArchived>, ApiError> {
    st.operator.authorize(&headers)?;
    let params: OldPostsParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))?;
    let older_than = match params.older_than.as_deref() {
        None => chrono::Duration::days(30),
        Some(text) => Some(text)
            .filter(|t| is_documented_duration(t))
            .and_then(|t| humantime::parse_duration(t).ok())
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "older_than: {text:?} is not a duration such as 30days or 12h"
                ))
            })?,
    };
    if let Some(c) = &params.city
        && (c.is_empty()
            || c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(ApiError::BadRequest(format!(
            "city: {c:?} is not a city slug"
        )));
    }
    let archive = st.operator.archive.as_ref().ok_or(ApiError::NotConfigured(
        "no archive is configured (--archive-url)",
    ))?;
    let cutoff = st
        .clock
        .now()
        .checked_sub_signed(older_than)
        .ok_or_else(|| ApiError::BadRequest("older_than: too long".to_string()))?;
    let done = archive
        .old_posts(&st.router, cutoff, params.city.as_deref(), ARCHIVE_BATCH)
        .await
        .map_err(|e| {
            if e.chain().any(|c| {
                c.downcast_ref::<sqlx::Error>()
                    .is_some_and(crate::db::read::is_connection_error)
            }) {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "archiving old posts: a shard is down"
                );
                ApiError::ShardUnavailable("a shard of this region".to_string())
            } else {
                ApiError::Internal(e)
            }
        })?;
    tracing::info!(%cutoff, archived = done.posts, objects = done.objects.len(), "old posts archived");
    Ok(Json(OldPostsArchived {
        cutoff,
        archived: done.posts,
        objects: done.objects,
        skipped_cities: done.skipped_cities,
    }))
}

/// Whether `text` has the documented shape
/// `^[1-9][0-9]{0,5}(s|m|h|d|days|w|weeks)$`: humantime alone would also
/// take `0`, `1h 30m` or `2 years`, which the OpenAPI document refuses.
fn is_documented_duration(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    (1..=6).contains(&number.len())
        && !number.starts_with('0')
        && matches!(unit, "s" | "m" | "h" | "d" | "days" | "w" | "weeks")
}

#[cfg(test)]
mod tests {
    use super::is_documented_duration;

    #[test]
    fn only_the_documented_durations_are_taken() {
        for ok in ["30days", "12h", "1s", "999999w", "7d"] {
            assert!(is_documented_duration(ok), "{ok}");
        }
        for bad in ["0", "0d", "1h 30m", "2 years", "1000000d", "d", "", "12"] {
            assert!(!is_documented_duration(bad), "{bad}");
        }
    }
}
