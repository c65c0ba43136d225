//! The security headers of every HTML answer, defined once for both sides
//! of the edge: the Worker sends them on its own pages, on KV pages (kept
//! in the isolate or not) and on the origin pages it forwards, and
//! region-core's middleware sends them on every HTML answer of the origin.
//! One list, so that a page looks the same to a browser whichever side
//! answered it.
//!
//! The policy allows no inline script or style and no plug-ins: the pages
//! link one stylesheet and one script of their own origin (`/static/…`),
//! forms post to their own origin, and no other site may frame a page
//! (clickjacking on the post, edit and delete forms).

/// `Content-Security-Policy` of every HTML page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// `Referrer-Policy`: other sites learn the origin a visitor came from,
/// never the path (a post id, a search).
pub const REFERRER_POLICY: &str = "strict-origin-when-cross-origin";

/// The headers, lower-case names, in the order they are sent.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", REFERRER_POLICY),
];

/// Whether a `Content-Type` value is an HTML page's (the answers that get
/// [`SECURITY_HEADERS`]).
pub fn is_html(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_no_inline_script_and_no_framing() {
        let csp = CONTENT_SECURITY_POLICY;
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert!(csp.contains("script-src 'self'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("  "), "one space between directives: {csp}");
        assert!(
            SECURITY_HEADERS
                .iter()
                .all(|(n, _)| *n == n.to_ascii_lowercase())
        );
    }

    #[test]
    fn html_content_types() {
        assert!(is_html("text/html"));
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("Text/HTML;charset=UTF-8"));
        assert!(!is_html("application/json"));
        assert!(!is_html("text/plain"));
        assert!(!is_html(""));
    }
}
