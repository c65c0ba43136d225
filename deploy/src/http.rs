//! The one-shot HTTP client of the orchestrator and the tests: the
//! orchestrator writes routes into the edge's KV and probes health, and the
//! scenario tests drive the edge and the apis with it. A connection per
//! request (no pool), bodies read whole, redirects returned as they are;
//! enough for tests and setup, not for load (the benchmarks measure with
//! their own client, `bench::conn`, and wrk).

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{HeaderName, HeaderValue};

/// Longest a request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Longest a health check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One client for the process. No idle connection is kept, so a request
/// never lands on a connection a restarted server has closed, and a test
/// sees each request on its own connection as a browser's first visit.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    // With region-core in the same build, reqwest is compiled with TLS and
    // no default crypto provider, and building a client without one
    // panics, plain HTTP or not. Installing ring (region-core's choice)
    // fails harmlessly when a provider is already there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("an HTTP client without TLS or proxies always builds")
});

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD path` to 127.0.0.1:`port` with `headers` and `body`. A `Host`
/// header among `headers` replaces the default `127.0.0.1:port`.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    let exchange = async {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("{method:?} is not an HTTP method"))?;
        let mut request = CLIENT
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .timeout(TIMEOUT)
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_bytes(value.as_bytes())?,
            );
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let headers = answer
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = answer.bytes().await?.to_vec();
        anyhow::Ok(Response {
            status,
            headers,
            body,
        })
    };
    exchange
        .await
        .with_context(|| format!("{method} {path} on port {port}"))
}

/// [`request`] with `Host: host` (a city host, the apex: what a visitor
/// of the edge sends), then `headers`.
pub async fn request_to_host(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    request(port, method, path, &all, body).await
}

/// The status code of a GET on 127.0.0.1:`port`, answered within 2 s: a
/// health check.
pub async fn http_get_status(port: u16, path: &str) -> Result<u16> {
    let answer = CLIENT
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {path} on port {port}"))?;
    Ok(answer.status().as_u16())
}
