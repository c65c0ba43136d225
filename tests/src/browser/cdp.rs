//! The two chromedriver extensions the browser tests need beyond W3C
//! WebDriver: a DevTools protocol command on the session's page
//! (`goog/cdp/execute`) and the performance log (`se/log`), where
//! chromedriver records the DevTools network events it saw, so that a test
//! can read a document's status and response headers, which WebDriver itself
//! never exposes.

use fantoccini::wd::WebDriverCompatibleCommand;
use http::Method;
use serde_json::{Value, json};
use url::{ParseError, Url};

/// `POST /session/{id}/goog/cdp/execute {cmd, params}`.
#[derive(Debug)]
pub struct Execute {
    /// The DevTools method, e.g. `Network.setExtraHTTPHeaders`.
    pub cmd: String,
    /// Its parameters.
    pub params: Value,
}

impl WebDriverCompatibleCommand for Execute {
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (Method::POST, Some(body.to_string()))
    }
}

/// `POST /session/{id}/se/log {type: "performance"}`: the entries logged
/// since the last such call (chromedriver empties the buffer on reading).
#[derive(Debug)]
pub struct PerformanceLog;

impl WebDriverCompatibleCommand for PerformanceLog {
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (
            Method::POST,
            Some(json!({"type": "performance"}).to_string()),
        )
    }
}

/// A document or resource response, from the performance log's
/// `Network.responseReceived` (and `Network.loadingFinished` for its size).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The URL asked for.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// DevTools' resource type: `Document`, `Stylesheet`, `Script`, ...
    pub kind: String,
    /// Bytes received on the wire (headers and encoded body), when the load
    /// finished within the log read.
    pub wire_bytes: Option<u64>,
}

impl Seen {
    /// A header's value (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The responses in a batch of performance log entries, in order.
pub fn responses(entries: &Value) -> Vec<Seen> {
    let mut seen: Vec<(String, Seen)> = Vec::new();
    let mut sizes: Vec<(String, u64)> = Vec::new();
    for entry in entries.as_array().into_iter().flatten() {
        let Some(message) = entry["message"]
            .as_str()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
        else {
            continue;
        };
        let message = &message["message"];
        let params = &message["params"];
        let request = params["requestId"].as_str().unwrap_or_default().to_string();
        match message["method"].as_str() {
            Some("Network.responseReceived") => {
                let r = &params["response"];
                let headers = r["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                seen.push((
                    request,
                    Seen {
                        url: r["url"].as_str().unwrap_or_default().to_string(),
                        status: r["status"].as_u64().unwrap_or(0) as u16,
                        headers,
                        kind: params["type"].as_str().unwrap_or_default().to_string(),
                        wire_bytes: None,
                    },
                ));
            }
            Some("Network.loadingFinished") => {
                if let Some(n) = params["encodedDataLength"].as_f64() {
                    sizes.push((request, n as u64));
                }
            }
            _ => {}
        }
    }
    seen.into_iter()
        .map(|(id, mut s)| {
            s.wire_bytes = sizes.iter().find(|(r, _)| *r == id).map(|(_, n)| *n);
            s
        })
        .collect()
}
