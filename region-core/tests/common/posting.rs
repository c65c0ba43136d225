//! Writing through the in-process api as a poster would: a user, a post's
//! body, a signed write, and what the shard holds afterwards. Shared by the
//! write tests and the idempotency tests.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::Request;

use crate::common::api::{Api, Reply};
use crate::common::{State, pool, unique_city};

/// A served city of the stack's first region (the stack's writer applies
/// its commands).
pub fn city(state: &State) -> String {
    state.region().shards[0].cities[0].clone()
}

/// A new user's bearer token.
pub async fn user(api: &Api, prefix: &str) -> String {
    user_and_email(api, prefix).await.0
}

/// A new user's bearer token and e-mail address.
pub async fn user_and_email(api: &Api, prefix: &str) -> (String, String) {
    let email = format!("{}@example.com", unique_city(prefix));
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    let r = api.post_json("/signup", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (login(api, &email).await, email)
}

/// A bearer token of `email`'s user, issued by `api` (by its clock).
pub async fn login(api: &Api, email: &str) -> String {
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    let r = api.post_json("/login", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

pub fn post_body(title: &str) -> serde_json::Value {
    serde_json::json!({
        "category": "for-sale",
        "title": title,
        "description": "Barely used.",
        "price": 120,
        "location": "Back Bay",
    })
}

/// Sends `method path` for `city` as `token`, with a JSON body unless
/// `body` is null, and extra headers.
pub async fn write(
    api: &Api,
    city: &str,
    token: &str,
    method: &str,
    path: &str,
    body: &serde_json::Value,
    extra: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", api.host(city))
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let req = if body.is_null() {
        b.body(Body::empty()).unwrap()
    } else {
        b.header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    api.send(req).await
}

pub async fn posts_titled(state: &State, city: &str, title: &str) -> i64 {
    let shard = &state.region().shards[0];
    let pool = pool(&shard.primary_url).await;
    sqlx::query_scalar("SELECT count(*) FROM posts WHERE city = $1 AND title = $2")
        .bind(city)
        .bind(title)
        .fetch_one(&pool)
        .await
        .unwrap()
}
