//! Account commands reach every region through its commands topic (design
//! §4 "Accounts"): a log-out at one region ends the token in the others,
//! and `DELETE /user` at the home region ends every session and erases the
//! user's posts in both regions. Run against the stack's writers, which
//! consume the regions' own commands topics.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use cityboard_test_support::eventually;
use common::api::{Api, Reply, Setup};
use common::*;

const LIMIT: Duration = Duration::from_secs(60);

async fn region_api(region: usize) -> Api {
    Api::start_with(Setup {
        region,
        ..Setup::default()
    })
    .await
}

fn credentials(prefix: &str) -> serde_json::Value {
    serde_json::json!({
        "email": format!("{}@example.com", unique_city(prefix)),
        "password": "correct horse battery",
    })
}

/// Signs up at `api` (the home region) and logs in: the bearer token.
async fn user(api: &Api, body: &serde_json::Value) -> String {
    let r = api.post_json("/signup", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.post_json("/login", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn send(
    api: &Api,
    city: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Reply {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", api.host(city))
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {token}"));
    let req = match body {
        Some(json) => b
            .header("content-type", "application/json")
            .body(Body::from(json.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    api.send(req).await
}

/// Creates a post in `city` through `api`; waits for the writer (201).
async fn created(api: &Api, city: &str, token: &str, title: &str) -> String {
    let body = serde_json::json!({
        "category": "for-sale", "title": title, "description": "Barely used.",
        "price": 120, "location": "Downtown",
    });
    let r = send(api, city, token, "POST", "/post", Some(body)).await;
    assert!(
        r.status == 201 || r.status == 202,
        "{}: {}",
        r.status,
        r.body
    );
    r.json()["post"].as_str().unwrap().to_string()
}

/// The status of a post on its shard's primary.
async fn status_of(shard: &Shard, city: &str, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM posts WHERE city = $1 AND id = $2")
        .bind(city)
        .bind(id.parse::<i64>().unwrap())
        .fetch_optional(&pool(&shard.primary_url).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_log_out_at_home_ends_the_session_in_the_other_region_too() {
    let state = State::load();
    assert!(state.regions.len() >= 2, "the stack has one region");
    let (home, away) = (region_api(0).await, region_api(1).await);
    let away_city = state.regions[1].shards[0].cities[0].clone();
    let token = user(&home, &credentials("logout")).await;
    let r = send(&away, &away_city, &token, "GET", "/me", None).await;
    assert_eq!(r.status, 200, "the token works away from home: {}", r.body);

    let home_city = state.regions[0].shards[0].cities[0].clone();
    let r = send(&home, &home_city, &token, "POST", "/logout", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // At once at home; the other region once its writer has the command.
    let r = send(&home, &home_city, &token, "GET", "/me", None).await;
    assert_eq!(r.status, 401);
    eventually("the token refused in the other region", LIMIT, || async {
        let r = send(&away, &away_city, &token, "GET", "/me", None).await;
        (r.status == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_an_account_ends_its_sessions_and_erases_its_posts_in_every_region() {
    let state = State::load();
    assert!(state.regions.len() >= 2, "the stack has one region");
    let (home, away) = (region_api(0).await, region_api(1).await);
    let home_shard = state.regions[0].shards[0].clone();
    let away_shard = state.regions[1].shards[0].clone();
    let (home_city, away_city) = (home_shard.cities[0].clone(), away_shard.cities[0].clone());
    let login = credentials("deleted");
    let token = user(&home, &login).await;
    let bystander = user(&home, &credentials("bystander")).await;

    let mine_home = created(&home, &home_city, &token, "mine at home").await;
    let mine_away = created(&away, &away_city, &token, "mine away").await;
    let theirs = created(&home, &home_city, &bystander, "someone else's").await;
    for (shard, city, id) in [
        (&home_shard, &home_city, &mine_home),
        (&away_shard, &away_city, &mine_away),
        (&home_shard, &home_city, &theirs),
    ] {
        eventually("the posts written", LIMIT, || async {
            (status_of(shard, city, id).await.as_deref() == Some("live")).then_some(())
        })
        .await;
    }

    // Only the home region deletes accounts, and only with the password.
    let password = serde_json::json!({"password": login["password"]});
    let r = send(
        &away,
        &away_city,
        &token,
        "DELETE",
        "/user",
        Some(password.clone()),
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.body);
    let r = send(&home, &home_city, &token, "DELETE", "/user", None).await;
    assert_eq!(r.status, 415, "no body: {}", r.body);
    let none = serde_json::json!({});
    let r = send(&home, &home_city, &token, "DELETE", "/user", Some(none)).await;
    assert_eq!(r.status, 422, "no password: {}", r.body);
    let wrong = serde_json::json!({"password": "not the password"});
    let r = send(&home, &home_city, &token, "DELETE", "/user", Some(wrong)).await;
    assert_eq!(r.status, 403, "a wrong password: {}", r.body);
    let r = send(&home, &home_city, &token, "GET", "/me", None).await;
    assert_eq!(r.status, 200, "a refused deletion changed nothing");
    let r = send(&home, &home_city, &token, "DELETE", "/user", Some(password)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let answer = r.json();
    assert_eq!(
        answer["regions"].as_array().unwrap().len(),
        state.regions.len()
    );

    // At home at once: no session, no log-in.
    let r = send(&home, &home_city, &token, "GET", "/me", None).await;
    assert_eq!(r.status, 401);
    let r = home.post_json("/login", login.clone()).await;
    assert_eq!(r.status, 401, "{}", r.body);

    eventually("the token refused in the other region", LIMIT, || async {
        let r = send(&away, &away_city, &token, "GET", "/me", None).await;
        (r.status == 401).then_some(())
    })
    .await;
    for (api, shard, city, id) in [
        (&home, &home_shard, &home_city, &mine_home),
        (&away, &away_shard, &away_city, &mine_away),
    ] {
        eventually("the user's posts erased", LIMIT, || async {
            (status_of(shard, city, id).await.as_deref() == Some("deleted")).then_some(())
        })
        .await;
        let r = send(api, city, &bystander, "GET", &format!("/post/{id}"), None).await;
        assert_eq!(r.status, 404, "an erased post is not served: {}", r.body);
    }
    assert_eq!(
        status_of(&home_shard, &home_city, &theirs).await.as_deref(),
        Some("live"),
        "another user's post stays"
    );
    let r = send(&home, &home_city, &bystander, "GET", "/me", None).await;
    assert_eq!(r.status, 200, "another user's session stays");
}
