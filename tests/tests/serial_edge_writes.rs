//! The write path seen from a browser, end to end through the shared
//! stack's edge (issue 7, acceptance 2):
//!
//! - The author of a new post, and of an edit, reads it at once through the
//!   edge, although the shard's replicas replay 5 s late and the edge's KV
//!   still holds the page of the version before the edit: the
//!   read-your-writes cookie sends the read past both.
//! - `DELETE /user` at the home region erases the user's posts in both
//!   regions, their KV pages included (tombstones, 410 at the edge).
//!
//! Serial: it delays the replicas of a shared shard (and puts them back).

use std::time::Duration;

use cityboard_deploy::http::Response;
use cityboard_test_support::eventually;
use cityboard_tests::EdgeRequests;
use cityboard_tests::browser::seed::{ApiUser, PASSWORD};
use cityboard_tests::stack_edge::StackEdge;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);
const BROWSER: &str = "text/html,application/xhtml+xml";

async fn set_apply_delay(urls: &[String], delay: &str) {
    for url in urls {
        let pool = cityboard_tests::pg(url).await;
        sqlx::query(&format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"
        ))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// The `cb_ryw` cookie a write answered with (`name=value`).
fn ryw_cookie(r: &Response) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            let pair = v.split(';').next()?.trim();
            pair.starts_with("cb_ryw=").then(|| pair.to_string())
        })
        .unwrap_or_else(|| panic!("no read-your-writes cookie: {:?}", r.headers))
}

struct Visitor<'a> {
    edge: &'a StackEdge,
    token: String,
}

impl Visitor<'_> {
    async fn json(
        &self,
        method: &str,
        city: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Response {
        let auth = format!("Bearer {}", self.token);
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.edge
            .request(
                method,
                &self.edge.host(Some(city)),
                path,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                    ("cf-connecting-ip", "203.0.113.21"),
                ],
                text.as_bytes(),
            )
            .await
    }

    /// The post page as a browser asks for it, with `cookie` if any.
    async fn page(&self, city: &str, id: &str, cookie: Option<&str>) -> Response {
        let mut headers = vec![("accept", BROWSER), ("cf-connecting-ip", "203.0.113.21")];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        self.edge
            .request(
                "GET",
                &self.edge.host(Some(city)),
                &format!("/post/{id}"),
                &headers,
                b"",
            )
            .await
    }
}

/// A new account on `city`'s host (the tests' one sign-up); its token.
async fn sign_up(edge: &StackEdge, city: &str) -> String {
    let email = format!(
        "ryw-{}-{:08x}@example.com",
        std::process::id(),
        rand::random::<u32>()
    );
    ApiUser::sign_up(edge, city, &email, "203.0.113.21")
        .await
        .token()
        .to_string()
}

fn post(title: &str) -> serde_json::Value {
    json!({"category": "for-sale", "title": title, "description": "Solid oak.",
           "price": 250, "location": "Downtown"})
}

fn post_id(r: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["post"]
        .as_str()
        .unwrap_or_else(|| panic!("no post id: {}", r.text()))
        .to_string()
}

async fn kv_version(edge: &StackEdge, id: &str) -> Option<(i64, bool)> {
    edge.kv_meta(id.parse().unwrap())
        .await
        .map(|m| (m.version, m.gone))
}

#[tokio::test]
async fn serial_the_author_reads_their_writes_through_the_edge_and_a_deleted_account_leaves_tombstones()
 {
    let edge = StackEdge::shared();
    let home = &edge.state.regions[0];
    let shard = &home.shards[0];
    let city = shard.cities[0].clone();
    let away_city = edge.state.regions[1].shards[0].cities[0].clone();
    let replicas = shard.replica_urls.clone();
    assert!(!replicas.is_empty(), "the shard of {city} has no replica");

    let token = sign_up(&edge, &city).await;

    set_apply_delay(&replicas, "5s").await;
    let outcome = tokio::spawn({
        let city = city.clone();
        let away_city = away_city.clone();
        let edge = StackEdge::shared();
        async move {
            let me = Visitor { edge: &edge, token };
            // A new post, read at once: the replicas do not have it yet.
            let r = me.json("POST", &city, "/post", &post("oak table")).await;
            assert_eq!(r.status, 201, "create: {}", r.text());
            let id = post_id(&r);
            let cookie = ryw_cookie(&r);
            let page = me.page(&city, &id, Some(&cookie)).await;
            assert_eq!(page.status, 200, "the author's new post: {}", page.text());
            assert!(page.text().contains("oak table"), "{}", page.text());

            // The publisher puts version 1 into KV.
            eventually("version 1 in KV", LIMIT, || async {
                (kv_version(&edge, &id).await == Some((1, false))).then_some(())
            })
            .await;

            // An edit: KV holds the older page, the replicas are behind.
            let r = me
                .json(
                    "PUT",
                    &city,
                    &format!("/post/{id}"),
                    &post("oak table, extended"),
                )
                .await;
            assert_eq!(r.status, 200, "edit: {}", r.text());
            let cookie = ryw_cookie(&r);
            let page = me.page(&city, &id, Some(&cookie)).await;
            assert_eq!(page.status, 200, "{}", page.text());
            assert!(
                page.text().contains("oak table, extended"),
                "the author sees their edit past the older KV page: {}",
                page.text()
            );
            eventually("version 2 in KV", LIMIT, || async {
                (kv_version(&edge, &id).await == Some((2, false))).then_some(())
            })
            .await;
            let page = me.page(&city, &id, None).await;
            assert!(
                page.text().contains("oak table, extended"),
                "{}",
                page.text()
            );

            // A post in the other region, then the account goes.
            let r = me.json("POST", &away_city, "/post", &post("bike")).await;
            assert!(
                r.status == 201 || r.status == 202,
                "away create: {}",
                r.text()
            );
            let away_id = post_id(&r);
            eventually("the away post in KV", LIMIT, || async {
                (kv_version(&edge, &away_id)
                    .await
                    .is_some_and(|(_, gone)| !gone))
                .then_some(())
            })
            .await;
            let r = me
                .json("DELETE", &city, "/user", &json!({"password": PASSWORD}))
                .await;
            assert_eq!(r.status, 202, "delete the account: {}", r.text());
            for (c, id) in [(&city, &id), (&away_city, &away_id)] {
                eventually("a tombstone in KV", LIMIT, || async {
                    (kv_version(&edge, id).await.is_some_and(|(_, gone)| gone)).then_some(())
                })
                .await;
                let page = me.page(c, id, None).await;
                assert_eq!(
                    page.status,
                    410,
                    "{c}/{id} after the account's deletion: {}",
                    page.text()
                );
            }
            let r = me.json("GET", &city, "/me", &serde_json::Value::Null).await;
            assert_eq!(r.status, 401, "the session ended: {}", r.text());
        }
    })
    .await;
    set_apply_delay(&replicas, "0").await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
