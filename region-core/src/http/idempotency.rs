//! `Idempotency-Key` (design §4): a client that retries a write with the
//! same key gets the first answer again instead of a second command.
//!
//! Keys are scoped to the user and kept 24 h in the non-evicting store (an
//! evicted key would let a retry write twice). The key is claimed with
//! `SET NX` before anything is produced, so of two concurrent retries only
//! one produces; the other is told the first is still in progress (409).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::model::Id;
use crate::model::post::FieldError;
use crate::store::Store;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// As long as a command's status: a retry within it finds its command.
const KEEP: std::time::Duration = crate::bus::notify::STATUS_TTL;

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

/// What the store keeps under a key.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// SHA-256 of method, path and body, hex: the same key with another
    /// request is the client's mistake, not a retry.
    request: String,
    /// None while the first request is still being answered.
    answer: Option<Answer>,
}

/// A key this request holds: `finish` stores the answer, `release` gives
/// the key back when nothing was written.
#[derive(Debug)]
pub struct Claim {
    key: String,
    request: String,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Begin {
    /// Go on; `Some` when it carried a key (now claimed).
    Proceed(Option<Claim>),
    /// A retry: answer this.
    Replay(Answer),
}

fn invalid(problem: &str) -> ApiError {
    ApiError::Invalid(vec![FieldError {
        field: "Idempotency-Key",
        problem: problem.to_string(),
    }])
}

/// Claims the request's key, if it has one, or finds the first answer.
pub async fn begin(
    store: &Store,
    user: Id,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Begin, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(Begin::Proceed(None));
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| invalid("must be 1 to 255 visible ASCII characters"))?;
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let claim = Claim {
        key: format!(
            "idem:{user}:{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        ),
        request: hex::encode(hash.finalize()),
    };
    let fresh = serde_json::to_string(&Record {
        request: claim.request.clone(),
        answer: None,
    })?;
    let store_down = |_| ApiError::StoreUnavailable;
    if store
        .put_new(&claim.key, &fresh, KEEP)
        .await
        .map_err(store_down)?
    {
        return Ok(Begin::Proceed(Some(claim)));
    }
    let record: Option<Record> = store
        .get(&claim.key)
        .await
        .map_err(store_down)?
        .and_then(|t| serde_json::from_str(&t).ok());
    match record {
        Some(r) if r.request != claim.request => Err(invalid(
            "was used for another request; use a new key for a new request",
        )),
        Some(Record {
            answer: Some(answer),
            ..
        }) => Ok(Begin::Replay(answer)),
        _ => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress; retry shortly".into(),
        )),
    }
}

/// Stores the first answer under the claimed key.
pub async fn finish(store: &Store, claim: Claim, answer: &Answer) -> Result<(), ApiError> {
    let record = serde_json::to_string(&Record {
        request: claim.request,
        answer: Some(answer.clone()),
    })?;
    store
        .put(&claim.key, &record, KEEP)
        .await
        .map_err(|_| ApiError::StoreUnavailable)
}

/// Gives the key back: the request wrote nothing (the broker refused it),
/// so a retry must be free to try again.
pub async fn release(store: &Store, claim: Claim) {
    if let Err(e) = store.delete(&claim.key).await {
        tracing::warn!(error = %e, "releasing an Idempotency-Key");
    }
}
