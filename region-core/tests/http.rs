mod common;

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::Request;
use common::api::Api;
use common::*;
use region_core::apply::{ApplyConfig, CityBatch, apply};
use region_core::model::{Command, CommandKind, Id, Photo, PostFields};

/// A new city on the first shard with `posts` (title, category, price,
/// images), the first newest; returns the city, the post ids in the same
/// order, and the read-your-writes cookie of the write.
async fn city_with(prefix: &str, posts: &[(&str, &str, i64, i16)]) -> (String, Vec<Id>, String) {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, prefix).await;
    let ids = ids(region).await;
    let now = chrono::Utc::now();
    let mut commands = Vec::new();
    let mut post_ids = Vec::new();
    for (i, (title, category, price, images)) in posts.iter().enumerate() {
        let post_id = ids.next().await.unwrap();
        post_ids.push(post_id);
        commands.push(Command {
            id: ids.next().await.unwrap(),
            city: city.clone(),
            created_at: now - chrono::Duration::minutes(i as i64),
            epoch: 1,
            request_id: None,
            kind: CommandKind::Create {
                post_id,
                user_id: Id(7),
                post: PostFields {
                    category: category.to_string(),
                    title: title.to_string(),
                    description: format!("{title} — <b>bold</b> & \"quoted\""),
                    price: Some(*price),
                    location: Some("<script>alert(1)</script>".into()),
                    image_count: 0,
                },
            },
        });
        // The count is the photos' (`post_images`), never the client's.
        if *images > 0 {
            let mut photos = Vec::new();
            for _ in 0..*images {
                photos.push(Photo {
                    id: ids.next().await.unwrap(),
                    width: 1200,
                    height: 900,
                });
            }
            commands.push(Command {
                id: ids.next().await.unwrap(),
                city: city.clone(),
                created_at: now - chrono::Duration::minutes(i as i64),
                epoch: 1,
                request_id: None,
                kind: CommandKind::AddPhotos {
                    post_id,
                    user_id: Id(7),
                    photos,
                },
            });
        }
    }
    let last = commands.last().map(|c| c.id).unwrap();
    let applied = apply(
        &target(shard, pool(&shard.primary_url).await),
        &[CityBatch {
            city: city.clone(),
            epoch: 1,
            commands,
        }],
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    assert!(applied.refused.is_empty());
    let token = applied.token(last).unwrap();
    // Sealed as the test apis seal it (their forwarding key), now.
    let keys = region_core::token::RywKeys::new(&common::api::secrets().edge_forward, None);
    let ryw = cityboard_protocol::ryw::ReadYourWrites::from(&token);
    let cookie = keys.seal(&ryw, chrono::Utc::now().timestamp());
    (city, post_ids, format!("cb_ryw={cookie}"))
}

fn titles(page: &serde_json::Value) -> Vec<String> {
    page["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_post_is_a_page_for_browsers_and_json_for_scripts_with_user_text_escaped() {
    let (city, ids, _) = city_with("page", &[("<i>Couch</i> & chair", "for-sale", 80, 0)]).await;
    let api = Api::start(false).await;
    let path = format!("/post/{}", ids[0]);

    let html = api.get(&city, &path, "text/html").await;
    assert_eq!(html.status, 200, "{}", html.body);
    assert!(
        html.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // askama escapes with numeric references.
    assert!(
        html.body
            .contains("&#60;i&#62;Couch&#60;/i&#62; &#38; chair")
    );
    assert!(
        html.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
    );
    assert!(!html.body.contains("<script>") && !html.body.contains("<b>"));

    let json = api.get(&city, &path, "application/json").await;
    assert_eq!(json.status, 200);
    let post = json.json();
    assert_eq!(post["id"], ids[0].to_string(), "ids travel as strings");
    assert_eq!(post["title"], "<i>Couch</i> & chair", "stored as typed");
    assert_eq!(post["city"], city);
}

#[tokio::test]
async fn missing_posts_unknown_cities_and_bad_ids_have_their_own_answers() {
    let (city, _, _) = city_with("errors", &[("Lamp", "for-sale", 5, 0)]).await;
    let api = Api::start(false).await;
    let t = api
        .get(&city, "/post/12345", "application/json")
        .await
        .problem(404);
    assert!(t.ends_with("/not-found"));
    // A browser gets the same status as a page with the message.
    for bad in [
        "/post/not-a-number",
        "/post/-1",
        "/post/99999999999999999999999",
    ] {
        let page = api.get(&city, bad, "text/html").await;
        assert_eq!(page.status, 404, "{bad}: {}", page.body);
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
        api.get(&city, bad, "application/json").await.problem(404);
    }
    let t = api
        .get("atlantis-nowhere", "/post/12345", "application/json")
        .await
        .problem(421);
    assert!(t.ends_with("/city-not-served"), "{t}");
    let bare = api
        .send(
            Request::get("/post?limit=5")
                .header("host", "127.0.0.1:8080")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    bare.problem(421);
    api.get(&city, "/no/such/route", "*/*").await.problem(404);
    let wrong_method = api
        .send(Request::delete("/healthz").body(Body::empty()).unwrap())
        .await;
    wrong_method.problem(405);
    assert!(wrong_method.headers.contains_key("allow"));
}

#[tokio::test]
async fn listing_pages_through_every_post_newest_first_with_a_signed_cursor() {
    let posts: Vec<(String, &str, i64, i16)> = (0..25)
        .map(|i| (format!("Item number {i:02}"), "for-sale", i, 0))
        .collect();
    let refs: Vec<(&str, &str, i64, i16)> = posts
        .iter()
        .map(|(t, c, p, n)| (t.as_str(), *c, *p, *n))
        .collect();
    let (city, _, _) = city_with("paging", &refs).await;
    let api = Api::start(false).await;

    let mut seen = Vec::new();
    let mut path = "/post?limit=10".to_string();
    let mut last_cursor = String::new();
    loop {
        let page = api.get(&city, &path, "application/json").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(c) => {
                last_cursor = c.to_string();
                path = format!("/post?limit=10&cursor={c}");
            }
            None => break,
        }
    }
    let expected: Vec<String> = posts.iter().map(|p| p.0.clone()).collect();
    assert_eq!(seen, expected, "every post once, newest first");

    // A cursor is bound to its filters, and tampering shows.
    api.get(
        &city,
        &format!("/post?limit=10&category=jobs&cursor={last_cursor}"),
        "application/json",
    )
    .await
    .problem(400);
    let mut tampered = last_cursor.into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    api.get(
        &city,
        &format!("/post?limit=10&cursor={tampered}"),
        "application/json",
    )
    .await
    .problem(400);

    // The HTML listing links to the next page.
    let html = api.get(&city, "/post?limit=10", "text/html").await;
    assert_eq!(html.status, 200);
    assert!(html.body.contains("rel=\"next\""));
}

#[tokio::test]
async fn search_and_filters_narrow_the_listing() {
    let (city, _, _) = city_with(
        "search",
        &[
            ("Vintage typewriter, works", "for-sale", 120, 2),
            ("Typewriter ribbons", "for-sale", 8, 0),
            ("Line cook wanted", "jobs", 25, 0),
            ("Mountain bike", "for-sale", 450, 1),
            ("Bike repair service", "services", 40, 0),
        ],
    )
    .await;
    let api = Api::start(false).await;
    let q = |query: &'static str| {
        let api = &api;
        let city = city.clone();
        async move {
            let r = api
                .get(&city, &format!("/post?{query}"), "application/json")
                .await;
            assert_eq!(r.status, 200, "{query}: {}", r.body);
            titles(&r.json())
        }
    };
    assert_eq!(
        q("search=typewriter").await,
        ["Vintage typewriter, works", "Typewriter ribbons"]
    );
    assert_eq!(
        q("search=typewriter%20-ribbons").await,
        ["Vintage typewriter, works"]
    );
    assert_eq!(q("search=%22line%20cook%22").await, ["Line cook wanted"]);
    assert_eq!(
        q("search=bike&category=services").await,
        ["Bike repair service"]
    );
    assert_eq!(
        q("min_price=100&max_price=500").await,
        ["Vintage typewriter, works", "Mountain bike"]
    );
    assert_eq!(
        q("has_image=true").await,
        ["Vintage typewriter, works", "Mountain bike"]
    );
    // Operators and quotes in a search are text, never SQL.
    assert!(
        q("search=%27%3B%20DROP%20TABLE%20posts%3B%20--")
            .await
            .is_empty()
    );
    assert!(q("search=%3A*%20%26%20%21%28").await.is_empty());

    let bad = api
        .get(
            &city,
            "/post?limit=0&category=weapons&min_price=-5",
            "application/json",
        )
        .await;
    bad.problem(422);
    assert_eq!(bad.json()["errors"].as_array().unwrap().len(), 3);
    api.get(&city, "/post?limit=ten", "application/json")
        .await
        .problem(400);
}

#[tokio::test]
async fn a_read_your_writes_cookie_is_honoured_and_bypasses_the_page_cache() {
    let (city, ids, ryw) = city_with("rywhttp", &[("Desk lamp", "for-sale", 15, 0)]).await;
    let api = Api::start(true).await;
    let hits = || api.state.cache.counts().hits.load(Ordering::Relaxed);

    let with_cookie = api
        .send(
            Request::get(format!("/post/{}", ids[0]))
                .header("host", api.host(&city))
                .header("accept", "application/json")
                .header("cookie", ryw.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(with_cookie.status, 200, "{}", with_cookie.body);

    // Twice the same listing: the second comes from Redis.
    let first = api.get(&city, "/post?limit=5", "application/json").await;
    let before = hits();
    let second = api.get(&city, "/post?limit=5", "application/json").await;
    assert_eq!(first.body, second.body);
    assert_eq!(hits(), before + 1, "served from the page cache");

    // The same listing with a token is read from a shard, never the cache.
    let before = hits();
    let fresh = api
        .send(
            Request::get("/post?limit=5")
                .header("host", api.host(&city))
                .header("accept", "application/json")
                .header("cookie", ryw)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(fresh.status, 200);
    assert_eq!(hits(), before);
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document() {
    prepared().await;
    let api = Api::start(false).await;
    let health = api
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");

    // Metrics are the operator listener's; the public one has none.
    let public = api
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    public.problem(404);
    let metrics = api
        .send_operator(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("cityboard_http_requests_total{route=\"/healthz\"")
    );

    let doc = api
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(doc.status, 200);
    let served = doc.json();
    let checked_in: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, checked_in);
}
