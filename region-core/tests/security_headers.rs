//! The origin's side of the security headers (issue 24): every HTML answer
//! of the api, pages and error pages alike, carries
//! `cityboard_protocol::headers::SECURITY_HEADERS`, the same list the edge
//! sends; JSON answers do not. In process against the stack's databases.

mod common;

use cityboard_protocol::headers::SECURITY_HEADERS;
use common::api::{Api, Reply};

const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

#[track_caller]
fn assert_secured(r: &Reply, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            r.headers.get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{what}: {name}"
        );
    }
}

#[tokio::test]
async fn every_html_answer_of_the_origin_carries_the_security_headers() {
    let state = common::prepared().await;
    let api = Api::start(false).await;
    let city = state.region().shards[0].cities[0].clone();
    for path in ["/", "/post", "/login", "/signup", "/post/new"] {
        let r = api.get(&city, path, HTML).await;
        let ty = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ty.starts_with("text/html"), "{path}: {} {ty}", r.status);
        assert_secured(&r, path);
    }
    // An error page for a browser: a post nobody has.
    let missing = api.get(&city, "/post/8999999999999999", HTML).await;
    assert_eq!(missing.status, 404);
    assert_secured(&missing, "404 page");
    // The JSON api is left as it was.
    let json = api.get(&city, "/post", "application/json").await;
    assert_eq!(json.status, 200, "{}", json.body);
    assert!(json.headers.get("content-security-policy").is_none());
}
