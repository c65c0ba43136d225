//! The security headers of every HTML answer of the origin
//! (`cityboard_protocol::headers`, the same list the edge Worker sends):
//! a page reached straight at the origin, or forwarded by an edge, carries
//! the same Content-Security-Policy, `nosniff` and Referrer-Policy as one
//! the edge serves from KV. JSON and other answers are left alone.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use cityboard_protocol::headers::{SECURITY_HEADERS, is_html};

/// Sets [`SECURITY_HEADERS`] on an HTML response (replacing any a handler
/// set); the outermost layer of `http::app`, so error pages get them too.
pub async fn security_headers(mut res: Response) -> Response {
    let html = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_html);
    if html {
        let headers = res.headers_mut();
        for (name, value) in SECURITY_HEADERS {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::{Html, IntoResponse, Json};

    #[tokio::test]
    async fn html_answers_get_the_headers_and_json_does_not() {
        let page = security_headers(Html("<p>x</p>").into_response()).await;
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(page.headers()[*name], *value, "{name}");
        }
        let json = security_headers(Json(serde_json::json!({"a": 1})).into_response()).await;
        assert!(json.headers().get("content-security-policy").is_none());
    }
}
