//! The visitor's request, taken apart once at the door: URL (path length
//! checked here), host, cookies, and the few header questions the routes
//! ask. Header sizes are checked where all headers are walked anyway, when
//! they are copied for the origin ([`check_header`]).

use web_sys::{Headers, Request};

use crate::error::EdgeError;

/// Longest path with query the edge passes on (longer: 400, no origin call).
pub const MAX_PATH_AND_QUERY: usize = 2048;
/// Longest single header value.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Most bytes of all header names and values together.
pub const MAX_HEADERS_TOTAL: usize = 32 * 1024;

/// A request that passed the size checks.
pub struct Incoming {
    /// The runtime's request object (body, `cf`).
    pub raw: Request,
    /// Its headers (one JS getter call, kept).
    pub headers: Headers,
    /// Method, upper case.
    pub method: String,
    /// `https` or `http`, as the visitor used it.
    pub scheme: String,
    /// The host the visitor asked for, lower case, with its port if any
    /// (the URL's authority: the runtime builds the URL from `Host`).
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
        let full = raw.url();
        let url = split_url(&full).ok_or(EdgeError::BadRequest("malformed URL"))?;
        let path_and_query = match url.query {
            Some(q) => format!("{}?{q}", url.path),
            None => url.path.to_string(),
        };
        if path_and_query.len() > MAX_PATH_AND_QUERY {
            return Err(EdgeError::BadRequest("path longer than 2048 bytes"));
        }
        let headers = raw.headers();
        let host = url.authority.to_ascii_lowercase();
        let cookies = headers.get("cookie").ok().flatten().unwrap_or_default();
        Ok(Incoming {
            method: raw.method().to_ascii_uppercase(),
            scheme: url.scheme.to_ascii_lowercase(),
            host,
            port_suffix: port_suffix(url.scheme, url.authority),
            path: url.path.to_string(),
            path_and_query,
            query: url.query.unwrap_or("").to_string(),
            cookies,
            headers,
            raw,
        })
    }

    /// A request header (first value), `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
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
    /// strips a client's own). Empty when unknown. (A test-mode build may
    /// override it: `Config::client_ip`, which the routes ask.)
    pub fn client_ip(&self) -> String {
        self.header("cf-connecting-ip")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// Whether a request accepts HTML the way browsers ask for it (`text/html`
/// in Accept and no `application/json`): region-core's rule, so that the
/// edge serves KV pages to exactly the requests the origin would answer
/// with the same page.
pub fn wants_html(headers: &Headers) -> bool {
    let accept = headers.get("accept").ok().flatten().unwrap_or_default();
    accept.contains("text/html") && !accept.contains("application/json")
}

/// Cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The parts of the absolute URL the runtime hands a request, which it has
/// already normalized: `scheme://authority/path?query`. Split by hand
/// rather than with the `url` crate, whose IDNA tables would add a few
/// hundred kilobytes to the Worker for nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host and optional port.
    pub authority: &'a str,
    /// Path, at least `/`.
    pub path: &'a str,
    /// Query without `?`, when there is a `?`.
    pub query: Option<&'a str>,
}

/// Splits an absolute URL; `None` when it has no `scheme://`.
pub fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    Some(UrlParts {
        scheme,
        authority,
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

/// `:port` when the authority names a port other than the scheme's default.
pub fn port_suffix(scheme: &str, authority: &str) -> String {
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) else {
        return String::new();
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => "",
    };
    if port.is_empty() || port == default || !port.bytes().all(|b| b.is_ascii_digit()) {
        String::new()
    } else {
        format!(":{port}")
    }
}

/// Checks one header against the limits, adding it to the running total.
/// Done while the headers are copied for the origin, so a KV hit or a
/// redirect (which reads four headers and calls no origin) pays nothing.
pub fn check_header(name: &str, value: &str, total: &mut usize) -> Result<(), EdgeError> {
    if value.len() > MAX_HEADER_VALUE {
        return Err(EdgeError::BadRequest("a header value is longer than 8 KiB"));
    }
    *total += name.len() + value.len();
    if *total > MAX_HEADERS_TOTAL {
        return Err(EdgeError::BadRequest("headers larger than 32 KiB"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookies() {
        let h = "a=1; cb_city=paris;cb_ryw=\"x:y\"";
        assert_eq!(cookie(h, "cb_city"), Some("paris"));
        assert_eq!(cookie(h, "cb_ryw"), Some("x:y"));
        assert_eq!(cookie(h, "b"), None);
        assert_eq!(cookie("", "a"), None);
    }

    #[test]
    fn splits_urls() {
        let u = split_url("http://paris.cityboard.localhost:8787/post?q=a?b#x").expect("url");
        assert_eq!(
            u,
            UrlParts {
                scheme: "http",
                authority: "paris.cityboard.localhost:8787",
                path: "/post",
                query: Some("q=a?b"),
            }
        );
        let u = split_url("https://a.b").expect("url");
        assert_eq!((u.path, u.query), ("/", None));
        assert_eq!(split_url("https://a.b/?").expect("url").query, Some(""));
        assert!(split_url("/relative").is_none());
        assert_eq!(port_suffix("http", "a.b:8787"), ":8787");
        assert_eq!(port_suffix("http", "a.b:80"), "");
        assert_eq!(port_suffix("https", "a.b:443"), "");
        assert_eq!(port_suffix("https", "a.b"), "");
        assert_eq!(port_suffix("http", "[::1]"), "");
        assert_eq!(port_suffix("http", "[::1]:81"), ":81");
    }
}
