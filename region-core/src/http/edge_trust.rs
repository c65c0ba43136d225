//! The origin's half of edge ↔ origin trust (design §4): every request but
//! `/healthz` and `/openapi.json` carries the edge's
//! `x-cityboard-signature`, verified here before any handler runs. (The
//! operator's `/metrics` and `/old_posts` are not on this listener at all:
//! `http::operator_app`.)
//!
//! The signature covers what the origin cannot see for itself behind the
//! Worker, which cannot set `Host`: the public host (`x-forwarded-host`),
//! the city (`x-cityboard-city`) and the visitor's address
//! (`x-cityboard-client-ip`), besides method, path, body and (scheme
//! version 2) `Content-Type`. Both versions are accepted unless the api was
//! started with `--signing-min-version 2`, which retires version 1 once
//! every edge signs version 2. Those headers
//! are believed only through a verified signature, which the middleware
//! leaves on the request as `Forwarded`; the extractors read that, never
//! the raw headers. Nonces are claimed in the non-evicting Redis for the
//! validity window, so a captured request cannot be replayed; a store that
//! is down makes the check impossible, which is a 503, not a pass.
//!
//! A photo upload is the one exception to the body hash: the Worker
//! streams it and signs it in the unsigned-payload mode (`v2u`), which
//! covers everything but the body. It is accepted only on the upload route
//! and only with an upload token that opens for the signed city and names
//! the path's post (`uploads::carries_upload_token`); its body is then not
//! read here but streamed to the multipart handler, which holds each part
//! to 10 MB and the request to the photo count. Any other request in that
//! mode is a 401, and every other body is buffered (64 KiB at most) and
//! hashed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cityboard_protocol::sign::{self, Key, Keyring, Payload, Version};
use cityboard_protocol::trace::REQUEST_ID_HEADER;
use tracing::Instrument;

use crate::auth::upload::UploadKey;
use crate::http::error::ApiError;
use crate::http::uploads::carries_upload_token;
use crate::http::{AppState, BODY_LIMIT};
use crate::model::RequestId;
use crate::stack::Secrets;
use crate::store::Store;

/// Reached directly (the supervisor's probe, API tooling), never through
/// the edge; neither says anything private.
pub const UNSIGNED_PATHS: [&str; 2] = ["/healthz", "/openapi.json"];

/// What the api checks signatures with; part of `AppState`.
#[derive(Clone)]
pub struct EdgeTrust {
    keys: Arc<Keyring>,
    nonces: Store,
    /// False only with the development flag `--allow-unsigned`: a request
    /// without a signature header then passes unverified (one with a bad
    /// signature never does).
    require: bool,
}

impl EdgeTrust {
    /// The current forwarding key of `secrets` and, during a rotation, the
    /// previous one until its expiry; signatures of a scheme version older
    /// than `min_version` refused; nonces in `nonces` (the region's
    /// non-evicting Redis). A key shorter than 32 bytes is an error, here
    /// as at the edge: a weak key must stop the api from starting.
    pub fn new(
        secrets: &Secrets,
        nonces: Store,
        require: bool,
        min_version: Version,
    ) -> anyhow::Result<EdgeTrust> {
        let strong = |what: &str, secret: &[u8]| {
            Key::strong(what, secret.to_vec())
                .map_err(anyhow::Error::msg)
                .context("the forwarding keys")
        };
        let mut keys = Keyring::new(strong("edge-forward.key", &secrets.edge_forward)?)
            .with_min_version(min_version);
        if let Some(previous) = &secrets.edge_forward_previous {
            keys = keys.with_previous(
                strong("edge-forward.previous.key", &previous.key)?,
                Some(previous.expires.timestamp()),
            );
        }
        Ok(EdgeTrust {
            keys: Arc::new(keys),
            nonces,
            require,
        })
    }

    /// Whether unsigned requests are refused (the default).
    pub fn required(&self) -> bool {
        self.require
    }
}

/// What a verified signature vouches for, as the edge saw the request.
/// Present on a request only when its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The public host the visitor asked for.
    pub host: String,
    /// The city of that host (empty when the edge named none).
    pub city: String,
    /// The visitor's address (none when the edge sent none, or not an IP).
    pub client_ip: Option<IpAddr>,
    /// The key that signed it (the previous one during a rotation).
    pub key_id: String,
}

/// Middleware: verifies the signature of every request but the operator
/// paths, or refuses it (401; 503 when the nonce store is down).
///
/// A state-changing request runs only after its nonce is claimed. A safe
/// one (GET, HEAD, OPTIONS) runs beside the claim, and its answer is thrown
/// away if the claim fails: a read has no effect to undo, and most traffic
/// that reaches an origin is reads, which then do not wait a Redis round
/// trip before their database query. A replay is refused either way.
///
/// A signed request runs in a `request` span naming its id (`trail`), so
/// that every line the api logs for it carries the id, and its answer
/// names the id in `x-request-id`.
pub async fn verify(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let now = st.clock.now().timestamp();
    let (req, nonce) = match check(&st.edge, &st.uploads, now, req).await {
        Ok(checked) => checked,
        Err(e) => return e.into_response(),
    };
    let Some(nonce) = nonce else {
        return next.run(req).await;
    };
    let req_is_safe = req.method().is_safe();
    let request_id = req.extensions().get::<RequestId>().cloned();
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_ref().map_or("-", RequestId::as_str)
    );
    let run = next.run(req).instrument(span);
    let mut res = if req_is_safe {
        let (claimed, res) = tokio::join!(st.edge.claim(&nonce), run);
        match claimed {
            Ok(()) => res,
            Err(e) => e.into_response(),
        }
    } else {
        match st.edge.claim(&nonce).await {
            Ok(()) => run.await,
            Err(e) => e.into_response(),
        }
    };
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    res
}

impl EdgeTrust {
    /// Claims a verified signature's nonce key for the validity window; a
    /// nonce seen before is a replay.
    async fn claim(&self, nonce_key: &str) -> Result<(), ApiError> {
        let first = self
            .nonces
            .claim(nonce_key, Duration::from_secs(sign::NONCE_TTL_SECS))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot check a signature nonce");
                ApiError::StoreUnavailable
            })?;
        if first {
            Ok(())
        } else {
            Err(refused("replayed signature: its nonce was used before"))
        }
    }
}

fn refused(reason: impl Into<String>) -> ApiError {
    ApiError::BadSignature(reason.into())
}

/// The checks of `verify` but the nonce, at time `now` (unix seconds).
/// Returns the request to pass on, with its body buffered (it was hashed;
/// an upload in the unsigned-payload mode keeps its stream) and
/// `Forwarded` attached when it was signed, and the nonce key to claim
/// (none for an unsigned request or an unsigned path).
async fn check(
    trust: &EdgeTrust,
    uploads: &UploadKey,
    now: i64,
    req: Request,
) -> Result<(Request, Option<String>), ApiError> {
    if UNSIGNED_PATHS.contains(&req.uri().path()) {
        return Ok((req, None));
    }
    let mut headers = req.headers().get_all(sign::SIGNATURE_HEADER).iter();
    let header = match (headers.next(), headers.next()) {
        (None, _) if trust.require => {
            return Err(refused(format!(
                "missing {} header: requests reach this origin through the edge",
                sign::SIGNATURE_HEADER
            )));
        }
        (None, _) => return Ok((req, None)),
        (Some(_), Some(_)) => return Err(refused("more than one signature header")),
        (Some(h), None) => h
            .to_str()
            .map_err(|_| refused("malformed signature header"))?
            .to_string(),
    };

    // Shape, key and time first: a request that fails them is refused
    // before its body is read.
    let admitted = trust
        .keys
        .admit(&header, now)
        .map_err(|e| refused(e.to_string()))?;
    let payload = admitted.payload();
    if payload == Payload::Unsigned && !carries_upload_token(uploads, now, &req) {
        return Err(refused(
            "an unsigned-payload signature is accepted only on a photo upload \
             with a valid upload token",
        ));
    }
    let (mut parts, body) = req.into_parts();
    let (body, body_sha256) = match payload {
        // Not read: the handler streams it under its own caps.
        Payload::Unsigned => (body, [0; 32]),
        Payload::Hashed => {
            let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
                if too_large(&e) {
                    ApiError::PayloadTooLarge(BODY_LIMIT)
                } else {
                    ApiError::BadRequest(format!("cannot read the request body: {e}"))
                }
            })?;
            let hash = sign::body_sha256(&bytes);
            (Body::from(bytes), hash)
        }
    };
    let signed_header = |name: &str| -> Result<String, ApiError> {
        let mut values = parts.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(String::new()),
            (Some(v), None) => v
                .to_str()
                .map(str::to_string)
                .map_err(|_| refused(format!("{name} is not text"))),
            (Some(_), Some(_)) => Err(refused(format!("more than one {name} header"))),
        }
    };
    let host = signed_header(sign::FORWARDED_HOST_HEADER)?;
    let city = signed_header(sign::CITY_HEADER)?;
    let client_ip = signed_header(sign::CLIENT_IP_HEADER)?;
    // What the handlers will read the body as (version 2 covers it; one
    // value only, so that no two readers can pick different ones).
    let content_type = signed_header(axum::http::header::CONTENT_TYPE.as_str())?;
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let request = sign::Request {
        method: parts.method.as_str(),
        host: &host,
        path_and_query,
        client_ip: &client_ip,
        city: &city,
        body_sha256,
        content_type: &content_type,
    };
    let sig = match payload {
        Payload::Hashed => admitted.check(&request),
        Payload::Unsigned => admitted.check_unsigned_payload(&request),
    }
    .map_err(|e| refused(e.to_string()))?;

    // Only a request whose MAC verified gets this far, so nobody without a
    // key can fill the store.
    let nonce_key = format!("cb:nonce:v1:{}:{}", sig.key_id, sig.nonce);

    if let Some(id) = RequestId::of_nonce(&sig.nonce) {
        parts.extensions.insert(id);
    }
    parts.extensions.insert(Forwarded {
        host: host.to_ascii_lowercase(),
        city,
        client_ip: client_ip.parse().ok(),
        key_id: sig.key_id,
    });
    Ok((Request::from_parts(parts, body), Some(nonce_key)))
}

/// Whether buffering failed because the body passed the limit.
fn too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::PreviousKey;

    fn secrets(current: &[u8], previous: Option<&[u8]>) -> Secrets {
        Secrets {
            session: vec![1; 32],
            kv_route: vec![2; 32],
            edge_forward: current.to_vec(),
            edge_forward_previous: previous.map(|key| PreviousKey {
                key: key.to_vec(),
                expires: chrono::Utc::now(),
            }),
            operator_token: vec![3; 32],
        }
    }

    #[test]
    fn a_forwarding_key_shorter_than_32_bytes_stops_the_start() {
        let store = || Store::new("redis://127.0.0.1:1/");
        let strong = [7u8; 32];
        let weak = [7u8; 31];
        for (secrets, named) in [
            (secrets(&weak, None), "edge-forward.key"),
            (secrets(&strong, Some(&weak)), "edge-forward.previous.key"),
        ] {
            let Err(e) = EdgeTrust::new(&secrets, store(), true, Version::V1) else {
                panic!("{named}: a 31-byte key was accepted");
            };
            let e = format!("{e:#}");
            assert!(e.contains(named) && e.contains("too short"), "{e}");
        }
        for secrets in [secrets(&strong, None), secrets(&strong, Some(&strong))] {
            assert!(EdgeTrust::new(&secrets, store(), true, Version::V2).is_ok());
        }
    }
}
