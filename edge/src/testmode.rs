//! Routes that exist only in a build with the `test-mode` feature (the
//! runtime tests'), and there only with `TEST_MODE=1`.
//!
//! - `GET /__cityboard/test/vectors`: runs the protocol crate's known-answer
//!   vectors, both scheme versions, inside this wasm build (200 with the
//!   count, 500 naming the failures), so the tests prove the Worker signs
//!   exactly what the independent implementation and region-core compute.
//! - `POST /__cityboard/test/sign`: signs the posted fields with the
//!   forward key (the current scheme version unless `version` names
//!   another), so a test can compare with the host-side signer.
//! - `POST /__cityboard/test/panic`: panics, which traps the wasm instance,
//!   so a test can see that the instance is reset (the wasm-bindgen glue's
//!   call guard, or `edge/entry.js` for a trap that escapes it) and the
//!   next request is answered.

use cityboard_protocol::sign;
use serde::Deserialize;
use web_sys::Response;

use crate::body;
use crate::config::Config;
use crate::error::EdgeError;
use crate::incoming::Incoming;
use crate::respond;

/// Path prefix of the test routes.
pub const PREFIX: &str = "/__cityboard/test/";

/// Fields of `POST /__cityboard/test/sign`.
#[derive(Deserialize)]
struct SignInput {
    method: String,
    host: String,
    path_and_query: String,
    client_ip: String,
    city: String,
    body: String,
    timestamp: i64,
    nonce: String,
    /// Covered from version 2 on; none when absent.
    #[serde(default)]
    content_type: String,
    /// The scheme version (1 or 2); the current one when absent.
    #[serde(default)]
    version: Option<u8>,
}

/// Handles a test route.
pub async fn handle(req: &Incoming, config: &Config) -> Result<Response, EdgeError> {
    match (req.method.as_str(), &req.path[PREFIX.len()..]) {
        ("GET", "vectors") => match cityboard_protocol::vectors::check() {
            Ok(n) => respond::json(200, "application/json", &format!("{{\"passed\":{n}}}")),
            Err(failures) => respond::json(
                500,
                "application/json",
                &serde_json::json!({ "failed": failures }).to_string(),
            ),
        },
        ("POST", "sign") => {
            let bytes = body::read(req, body::FORWARD_LIMIT).await?;
            let input: SignInput = serde_json::from_slice(&bytes)
                .map_err(|_| EdgeError::BadRequest("expected the fields to sign"))?;
            let fields = sign::Request {
                method: &input.method,
                host: &input.host,
                path_and_query: &input.path_and_query,
                client_ip: &input.client_ip,
                city: &input.city,
                body_sha256: sign::body_sha256(input.body.as_bytes()),
                content_type: &input.content_type,
            };
            let version = match input.version {
                None => sign::Version::CURRENT,
                Some(n) => sign::Version::from_number(n)
                    .ok_or(EdgeError::BadRequest("no such signature scheme version"))?,
            };
            let header = sign::sign_with(
                version,
                &config.forward_key,
                &fields,
                input.timestamp,
                &input.nonce,
            );
            respond::json(
                200,
                "application/json",
                &serde_json::json!({ "key_id": config.forward_key.id, "header": header })
                    .to_string(),
            )
        }
        // The one deliberate panic, behind TEST_MODE: no request path
        // panics, but a bug could, and the instance must survive it.
        ("POST", "panic") => panic!("test-mode panic, as a test asked"),
        _ => Err(EdgeError::NotFound),
    }
}
