//! One grep follows a post from its POST to its page (issue 28, tracing):
//! the edge makes a request id, signs it in (it is the signature's nonce),
//! the origin names it in `x-request-id`, the command and the event carry
//! it, the publisher writes it into the page's KV metadata, and the edge,
//! the api, the writer, the relay and the publisher each log a line with
//! it (`region_core::trail`).
//!
//! Against the shared stack, through its edge under workerd.

use std::time::Duration;

use cityboard_test_support::eventually;
use cityboard_tests::EdgeRequests;
use cityboard_tests::browser::seed::ApiUser;
use cityboard_tests::stack_edge::StackEdge;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);
const CITY: &str = "newyork";
const VISITOR: &str = "203.0.113.44";

/// The lines of `component`'s log that name `id`.
fn lines_naming(edge: &StackEdge, component: &str, id: &str) -> Vec<String> {
    let file = edge.home.log_file(component);
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_posts_request_id_is_in_every_roles_log_and_in_its_kv_entry() {
    let edge = StackEdge::shared();
    let region = edge.region_of(CITY);
    let email = format!(
        "trail-{}-{:08x}@example.com",
        std::process::id(),
        rand::random::<u32>()
    );
    let user = ApiUser::sign_up(&edge, CITY, &email, VISITOR).await;
    let auth = format!("Bearer {}", user.token());
    let title = format!("Trail {:08x}", rand::random::<u32>());
    let body = json!({"category": "for-sale", "title": title,
                      "description": "Followed by its request id.", "price": 5});
    let r = edge
        .request(
            "POST",
            &edge.host(Some(CITY)),
            "/post",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("cf-connecting-ip", VISITOR),
            ],
            body.to_string().as_bytes(),
        )
        .await;
    assert!(matches!(r.status, 201 | 202), "post: {}", r.text());
    let id = r
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {:?}", r.headers))
        .to_string();
    assert!(id.len() >= 16, "{id}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let post: u64 = v["post"].as_str().unwrap().parse().unwrap();

    // The page in KV names the request that wrote it.
    let meta = eventually("the post's page in KV", LIMIT, || async {
        edge.kv_meta(post).await.filter(|m| !m.gone)
    })
    .await;
    assert_eq!(meta.request.as_deref(), Some(id.as_str()), "{meta:?}");

    // Each hop logged it; the publisher's line comes last, so once it is
    // there every other line is too (logs are written line by line).
    let publisher = format!("{region}/publisher");
    eventually("the publisher's trail line", LIMIT, || async {
        (!lines_naming(&edge, &publisher, &id).is_empty()).then_some(())
    })
    .await;
    for (component, what) in [
        ("edge".to_string(), "forward POST /post"),
        (format!("{region}/api"), "command produced"),
        (format!("{region}/writer"), "command applied"),
        (format!("{region}/relay"), "event relayed"),
        (publisher.clone(), "page written to KV"),
    ] {
        let lines = lines_naming(&edge, &component, &id);
        assert!(
            lines.iter().any(|l| l.contains(what)),
            "{component}'s log has no {what:?} line naming {id}: {lines:?}"
        );
    }
}
