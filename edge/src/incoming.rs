//! The visitor's request, checked once at the door: size limits, URL, host,
//! cookies, and the few header questions the routes ask.

use wasm_bindgen::JsValue;
use web_sys::Request;

use crate::error::EdgeError;

/// Longest path with query the edge passes on (longer: 400, no origin call).
pub const MAX_PATH_AND_QUERY: usize = 2048;
/// Longest single header value.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Most bytes of all header names and values together.
pub const MAX_HEADERS_TOTAL: usize = 32 * 1024;

/// A request that passed the size checks.
pub struct Incoming {
    /// The runtime's request object (body, headers, `cf`).
    pub raw: Request,
    /// Method, upper case.
    pub method: String,
    /// `https` or `http`, as the visitor used it.
    pub scheme: String,
    /// The `Host` header, lower case, with its port if any.
    pub host: String,
    /// `:port` when the URL names a non-default port, else empty.
    pub port_suffix: String,
    /// Path.
    pub path: String,
    /// Path with `?query` when there is one: what is forwarded and signed.
    pub path_and_query: String,
    /// The query string without `?`.
    pub query: String,
    cookies: String,
}

impl Incoming {
    /// Checks and takes apart a request.
    pub fn new(raw: Request) -> Result<Self, EdgeError> {
        check_header_sizes(&raw)?;
        let url =
            url::Url::parse(&raw.url()).map_err(|_| EdgeError::BadRequest("malformed URL"))?;
        let path = url.path().to_string();
        let query = url.query().unwrap_or("").to_string();
        let path_and_query = match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        if path_and_query.len() > MAX_PATH_AND_QUERY {
            return Err(EdgeError::BadRequest("path longer than 2048 bytes"));
        }
        let headers = raw.headers();
        let host = headers
            .get("host")
            .ok()
            .flatten()
            .or_else(|| {
                url.host_str().map(|h| {
                    format!(
                        "{h}{}",
                        url.port().map(|p| format!(":{p}")).unwrap_or_default()
                    )
                })
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        let port_suffix = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let cookies = headers.get("cookie").ok().flatten().unwrap_or_default();
        Ok(Incoming {
            method: raw.method().to_ascii_uppercase(),
            scheme: url.scheme().to_string(),
            host,
            port_suffix,
            path,
            path_and_query,
            query,
            cookies,
            raw,
        })
    }

    /// A request header (first value), `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.headers().get(name).ok().flatten()
    }

    /// The value of cookie `name`, if the visitor sent it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        cookie(&self.cookies, name)
    }

    /// `{scheme}://{host}{:port}` of another host on the same site: redirects
    /// keep the scheme and port the visitor used.
    pub fn base_of(&self, host: &str) -> String {
        format!("{}://{host}{}", self.scheme, self.port_suffix)
    }

    /// Whether this is a read (GET or HEAD).
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }

    /// The visitor's address: `CF-Connecting-IP` (Cloudflare sets it and
    /// strips a client's own); in test mode the first `X-Forwarded-For`
    /// entry overrides it, since locally nothing sets the former. Empty
    /// when unknown.
    pub fn client_ip(&self, test_mode: bool) -> String {
        if test_mode
            && let Some(first) = self
                .header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|s| s.trim().to_string()))
                .filter(|s| !s.is_empty())
        {
            return first;
        }
        self.header("cf-connecting-ip")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// Whether a request accepts HTML the way browsers ask for it (`text/html`
/// in Accept and no `application/json`): region-core's rule, so that the
/// edge serves KV pages to exactly the requests the origin would answer
/// with the same page.
pub fn wants_html(raw: &Request) -> bool {
    let accept = raw
        .headers()
        .get("accept")
        .ok()
        .flatten()
        .unwrap_or_default();
    accept.contains("text/html") && !accept.contains("application/json")
}

/// Cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

fn check_header_sizes(raw: &Request) -> Result<(), EdgeError> {
    let Ok(Some(iter)) = js_sys::try_iter(raw.headers().as_ref()) else {
        return Ok(());
    };
    let mut total = 0usize;
    for entry in iter.flatten() {
        let pair = js_sys::Array::from(&entry);
        let len = |v: JsValue| v.as_string().map_or(0, |s| s.len());
        let (name, value) = (len(pair.get(0)), len(pair.get(1)));
        if value > MAX_HEADER_VALUE {
            return Err(EdgeError::BadRequest("a header value is longer than 8 KiB"));
        }
        total += name + value;
        if total > MAX_HEADERS_TOTAL {
            return Err(EdgeError::BadRequest("headers larger than 32 KiB"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cookie;

    #[test]
    fn finds_cookies() {
        let h = "a=1; cb_city=paris;cb_ryw=\"x:y\"";
        assert_eq!(cookie(h, "cb_city"), Some("paris"));
        assert_eq!(cookie(h, "cb_ryw"), Some("x:y"));
        assert_eq!(cookie(h, "b"), None);
        assert_eq!(cookie("", "a"), None);
    }
}
