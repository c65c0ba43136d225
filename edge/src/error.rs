//! Everything a request to the Worker can fail with: its status, its problem
//! kind and what the client is told. Handlers return
//! `Result<Response, EdgeError>`; nothing on a request path unwraps, because
//! a panic resets the wasm instance and kills every request in flight on it.
//! This module only describes errors; `respond::error` renders them (an
//! RFC 9457 problem document, or an HTML page when the client accepts HTML),
//! so that describing an error needs neither the pages nor the configuration.

use std::fmt;

use wasm_bindgen::JsValue;

/// Seconds a client should wait before retrying when the origin is down.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A failed request.
#[derive(Debug)]
pub enum EdgeError {
    /// The `Host` is neither the apex nor one city label under it.
    NotOurHost,
    /// A well-formed city host whose city no region serves.
    CityNotServed(String),
    /// Nothing here (e.g. a post id that is not a number): answered at the
    /// edge, without an origin call.
    NotFound,
    /// The request itself is malformed (over-long path or headers).
    BadRequest(&'static str),
    /// A body over the edge's limit.
    PayloadTooLarge { limit: usize },
    /// A missing, forged, stale or replayed signature on an internal route.
    Unauthorized(String),
    /// A method the route does not take.
    MethodNotAllowed,
    /// The region's origin did not answer (down, refused, or over the timeout).
    OriginUnavailable { city: String, reason: String },
    /// The Worker's configuration (bindings) is missing or malformed.
    Config(String),
    /// A runtime call failed (a JS exception): 500, details only in the log.
    Internal(String),
}

impl EdgeError {
    /// Wraps a thrown JS value.
    pub fn js(value: JsValue) -> Self {
        EdgeError::Internal(describe(&value))
    }

    /// HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            EdgeError::NotOurHost | EdgeError::CityNotServed(_) | EdgeError::NotFound => 404,
            EdgeError::BadRequest(_) => 400,
            EdgeError::PayloadTooLarge { .. } => 413,
            EdgeError::Unauthorized(_) => 401,
            EdgeError::MethodNotAllowed => 405,
            EdgeError::OriginUnavailable { .. } => 503,
            EdgeError::Config(_) | EdgeError::Internal(_) => 500,
        }
    }

    /// Stable problem kind, the last segment of the problem `type` URI.
    pub fn kind(&self) -> &'static str {
        match self {
            EdgeError::NotOurHost => "unknown-host",
            EdgeError::CityNotServed(_) => "city-not-served",
            EdgeError::NotFound => "not-found",
            EdgeError::BadRequest(_) => "bad-request",
            EdgeError::PayloadTooLarge { .. } => "payload-too-large",
            EdgeError::Unauthorized(_) => "unauthorized",
            EdgeError::MethodNotAllowed => "method-not-allowed",
            EdgeError::OriginUnavailable { .. } => "origin-unavailable",
            EdgeError::Config(_) | EdgeError::Internal(_) => "internal",
        }
    }

    /// What the client is told. Internal details stay in the log.
    /// What the client is told: never a runtime's own error text (a
    /// fetch failure names hosts and ports of the origin's network; a JS
    /// exception, the Worker's internals), which goes to the log instead.
    pub fn detail(&self) -> String {
        match self {
            EdgeError::Config(_) | EdgeError::Internal(_) => {
                "something went wrong at the edge".into()
            }
            EdgeError::OriginUnavailable { city, .. } => {
                format!("the servers of {city} are not answering; try again in a few seconds")
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::NotOurHost => write!(f, "this host is not a cityboard site"),
            EdgeError::CityNotServed(city) => write!(f, "city {city:?} is not served"),
            EdgeError::NotFound => write!(f, "not found"),
            EdgeError::BadRequest(why) => write!(f, "bad request: {why}"),
            EdgeError::PayloadTooLarge { limit } => {
                write!(f, "request body over the limit of {limit} bytes")
            }
            EdgeError::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            EdgeError::MethodNotAllowed => write!(f, "method not allowed here"),
            EdgeError::OriginUnavailable { city, reason } => write!(
                f,
                "the servers of {city} are not answering ({reason}); try again in a few seconds"
            ),
            EdgeError::Config(why) => write!(f, "worker configuration: {why}"),
            EdgeError::Internal(why) => write!(f, "internal: {why}"),
        }
    }
}

impl From<worker::Error> for EdgeError {
    fn from(e: worker::Error) -> Self {
        EdgeError::Internal(e.to_string())
    }
}

impl From<worker::KvError> for EdgeError {
    fn from(e: worker::KvError) -> Self {
        EdgeError::Internal(format!("kv: {e}"))
    }
}

/// Describes a thrown JS value for logs and error details.
pub fn describe(value: &JsValue) -> String {
    if let Some(s) = value.as_string() {
        return s;
    }
    js_sys::Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}
