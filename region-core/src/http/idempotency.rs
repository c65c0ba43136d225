//! `Idempotency-Key` (design §4): a client that retries a write with the
//! same key gets the first answer again, or the outcome of the first
//! attempt's command, and never a second write.
//!
//! Keys are scoped to the user and kept 24 h in the non-evicting store (an
//! evicted key would let a retry write twice). The record is made with
//! `SET NX` before anything is produced, and it names the command the key
//! stands for (its id, its post's id, its `created_at`), never released:
//! an attempt whose outcome is unknown (the broker timed out, the status
//! read failed, the api died) leaves it there, and the retry produces the
//! very same command again, which `applied_commands` drops if the first
//! copy was applied. What the record does not say is whether a request is
//! still at work on it: that is a short lease beside it, held while a
//! request produces and waits. A retry that finds the lease taken waits
//! (up to the apply wait) for the command's outcome, and is told 409 only
//! when there is none yet; a lease left by a dead api ends with its TTL.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::model::Id;
use crate::model::post::FieldError;
use crate::store::Store;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// As long as a command's status: a retry within it finds its command.
const KEEP: Duration = crate::bus::notify::STATUS_TTL;

/// What a lease lasts beyond the longest a request holds it: the store's
/// round trips and the rate limiter. A lease that ends early only lets a
/// retry produce the same command twice, which the dedup makes harmless.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The 409 of a key whose command has no outcome yet while another request
/// holds its lease.
const IN_PROGRESS: &str = "a request with this Idempotency-Key is still in progress; retry shortly";

/// A write's answer in a form that can be stored and replayed byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers that matter to a client (location, cookies, type).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// `status` with a JSON body.
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
        Answer {
            status: status.as_u16(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_string(value).unwrap_or_default(),
        }
    }

    /// The problem answer of a final error (a rejection), to be stored
    /// like any other answer.
    pub fn error(e: &ApiError) -> Answer {
        Answer {
            status: e.status().as_u16(),
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: serde_json::to_string(&e.problem()).unwrap_or_default(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: String) -> Answer {
        self.headers.push((name.to_string(), value));
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.body));
        *res.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                res.headers_mut().append(n, v);
            }
        }
        res
    }
}

/// The ids a write's command is made of. A first request takes new ones;
/// its key's record keeps them, so that a retry makes the same command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandIds {
    /// The command's id: what `applied_commands` dedups by.
    pub command: Id,
    /// The new post's id (a create), so a retry names the same post.
    pub post: Option<Id>,
    /// The post's `created_at`, set once by the api (design §3).
    pub created_at: DateTime<Utc>,
}

/// What the store keeps under a key.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// SHA-256 of method, path and body, hex: the same key with another
    /// request is the client's mistake, not a retry.
    request: String,
    /// The command the key stands for. None only in a record written
    /// before records named their command.
    #[serde(default)]
    ids: Option<CommandIds>,
    /// None until a request answered with the command's outcome.
    answer: Option<Answer>,
}

/// A key this request acts on. `finish` stores the answer; `abandon` (or
/// dropping it, when the request is cancelled) gives the lease back and
/// keeps the record, so a retry produces the same command.
#[derive(Debug)]
pub struct Claim {
    key: String,
    request: String,
    /// The command the key stands for: this request's new ids, or those
    /// of the first attempt.
    pub ids: CommandIds,
    /// An earlier attempt may have produced the command already.
    pub retry: bool,
    /// Held: this request may produce the command. None: another request
    /// holds the lease (at work, or dead and not yet past the TTL).
    lease: Option<Lease>,
}

impl Claim {
    /// Whether this request holds the key's lease (and so may produce).
    pub fn holds_lease(&self) -> bool {
        self.lease.is_some()
    }
}

/// The in-progress mark of a key, given back when its request ends. A
/// killed api gives nothing back: the TTL ends it.
#[derive(Debug)]
struct Lease {
    store: Store,
    key: String,
    released: bool,
}

impl Lease {
    async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(error = %e, "releasing an Idempotency-Key's lease");
        }
    }
}

impl Drop for Lease {
    /// A request cancelled mid-way (its client went away, or the request
    /// timeout stopped it) gives the lease back too, so that the client's
    /// retry need not wait out the TTL.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let key = std::mem::take(&mut self.key);
            runtime.spawn(async move {
                if let Err(e) = store.delete(&key).await {
                    tracing::warn!(error = %e, "releasing an Idempotency-Key's lease");
                }
            });
        }
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Begin {
    /// No key: a new command with new ids.
    Unkeyed,
    /// A key: its command and whether this request may produce it.
    Claimed(Claim),
    /// A retry of a request already answered: answer this.
    Replay(Answer),
}

/// What a request that found the key's lease taken answers when the
/// command has no outcome yet.
pub fn in_progress() -> ApiError {
    ApiError::Conflict(IN_PROGRESS.into())
}

fn invalid(problem: &str) -> ApiError {
    ApiError::Invalid(vec![FieldError {
        field: "Idempotency-Key",
        problem: problem.to_string(),
    }])
}

/// The form field that carries a form's key: a browser's form cannot send
/// the header, so the new-post and edit forms carry one of their own.
pub const FORM_FIELD: &str = "idempotency_key";

/// A new key for a form shown to a browser: one per form shown, so a form
/// sent twice (a double click, a reload after a lost answer) writes once,
/// and the next form shown is a new write.
pub fn form_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The request's key: its `Idempotency-Key` header, else the
/// [`FORM_FIELD`] of a `form` body (an empty one is none). A key that is
/// not 1 to 255 visible ASCII characters is a 422, the form's field too
/// when a header comes first: bad input is refused wherever it is.
pub fn requested_key(headers: &HeaderMap, form: Option<&[u8]>) -> Result<Option<String>, ApiError> {
    let field = form.and_then(|body| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .ok()?
            .into_iter()
            .find(|(name, value)| name == FORM_FIELD && !value.is_empty())
            .map(|(_, value)| value)
    });
    if let Some(f) = &field
        && !well_formed(f)
    {
        return Err(bad_key());
    }
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(value.to_str().map(str::to_string).map_err(|_| bad_key())?),
        None => field,
    };
    match key {
        Some(k) if !well_formed(&k) => Err(bad_key()),
        key => Ok(key),
    }
}

/// 1 to 255 visible ASCII characters.
fn well_formed(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

fn bad_key() -> ApiError {
    invalid("must be 1 to 255 visible ASCII characters")
}

/// Claims `key` (the request's, see [`requested_key`]), if there is one,
/// for the command of `fresh` ids, or finds the command (or the answer) of
/// the first request with that key. `holding` is the longest a request
/// producing a command takes (the broker's timeout and the apply wait):
/// the lease lasts that long and a little more.
#[allow(clippy::too_many_arguments)]
pub async fn begin(
    store: &Store,
    user: Id,
    key: Option<String>,
    method: &str,
    path: &str,
    body: &[u8],
    fresh: CommandIds,
    holding: Duration,
) -> Result<Begin, ApiError> {
    let Some(key) = key else {
        return Ok(Begin::Unkeyed);
    };
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let key = format!(
        "idem:{user}:{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    );
    let request = hex::encode(hash.finalize());
    let fresh_record = serde_json::to_string(&Record {
        request: request.clone(),
        ids: Some(fresh),
        answer: None,
    })?;
    let store_down = |_| ApiError::StoreUnavailable;
    // Twice at most: a record that expired between the two calls, or one
    // that names no command, is deleted and made again.
    for _ in 0..2 {
        let (ids, retry) = if store
            .put_new(&key, &fresh_record, KEEP)
            .await
            .map_err(store_down)?
        {
            (fresh, false)
        } else {
            let record: Option<Record> = store
                .get(&key)
                .await
                .map_err(store_down)?
                .and_then(|t| serde_json::from_str(&t).ok());
            match record {
                Some(r) if r.request != request => {
                    return Err(invalid(
                        "was used for another request; use a new key for a new request",
                    ));
                }
                Some(Record {
                    answer: Some(answer),
                    ..
                }) => return Ok(Begin::Replay(answer)),
                Some(Record { ids: Some(ids), .. }) => (ids, true),
                _ => {
                    store.delete(&key).await.map_err(store_down)?;
                    continue;
                }
            }
        };
        let lease_key = format!("{key}:lease");
        let lease = store
            .claim(&lease_key, lease_ttl(holding))
            .await
            .map_err(store_down)?
            .then(|| Lease {
                store: store.clone(),
                key: lease_key,
                released: false,
            });
        return Ok(Begin::Claimed(Claim {
            key,
            request,
            ids,
            retry,
            lease,
        }));
    }
    Err(in_progress())
}

/// The lease of a request that may hold it for `holding`, in whole
/// seconds (the store's unit), rounded up.
fn lease_ttl(holding: Duration) -> Duration {
    let total = holding + LEASE_MARGIN;
    Duration::from_secs(total.as_secs() + u64::from(total.subsec_nanos() > 0))
}

/// Stores the answer under the claimed key (its command's outcome, which
/// every later retry gets) and gives the lease back.
pub async fn finish(store: &Store, claim: Claim, answer: &Answer) -> Result<(), ApiError> {
    let record = serde_json::to_string(&Record {
        request: claim.request,
        ids: Some(claim.ids),
        answer: Some(answer.clone()),
    })?;
    let stored = store
        .put(&claim.key, &record, KEEP)
        .await
        .map_err(|_| ApiError::StoreUnavailable);
    if let Some(lease) = claim.lease {
        lease.release().await;
    }
    stored
}

/// Gives the lease back and keeps the record: the request failed, and
/// whether its command was produced is unknown or it was not, so a retry
/// produces the same command again (harmless if the first was applied).
pub async fn abandon(claim: Claim) {
    if let Some(lease) = claim.lease {
        lease.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outlasts_its_holder_in_whole_seconds() {
        assert_eq!(
            lease_ttl(Duration::from_millis(6500)),
            Duration::from_secs(9)
        );
        assert_eq!(lease_ttl(Duration::from_secs(5)), Duration::from_secs(7));
    }

    #[test]
    fn a_form_carries_its_key_in_a_field_and_the_header_comes_first() {
        let none = HeaderMap::new();
        let form = b"title=t&idempotency_key=abc&csrf=x".as_slice();
        assert_eq!(
            requested_key(&none, Some(form)).unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(
            requested_key(&none, None).unwrap(),
            None,
            "JSON: the header only"
        );
        let empty = b"title=t&idempotency_key=".as_slice();
        assert_eq!(requested_key(&none, Some(empty)).unwrap(), None);
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("h"));
        assert_eq!(
            requested_key(&headers, Some(form)).unwrap().as_deref(),
            Some("h")
        );
        let spaced = b"idempotency_key=a+b".as_slice();
        assert_eq!(
            requested_key(&none, Some(spaced)).unwrap_err().status(),
            422
        );
        assert_eq!(
            requested_key(&headers, Some(spaced)).unwrap_err().status(),
            422,
            "a bad field is refused even behind a header"
        );
        assert_eq!(form_key().len(), 32);
    }

    #[test]
    fn a_record_written_before_records_named_their_command_still_reads() {
        let old = r#"{"request":"ab","answer":null}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert!(r.ids.is_none() && r.answer.is_none());
    }
}
