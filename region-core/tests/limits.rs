//! Rate limits (issue 27) against the shared stack's store: sign-ups per
//! address, failed log-ins per address and per account (with the owner's
//! browser exempt from the account's count), writes and reports per
//! address and per account, all counted in the region store so that two
//! api instances share them, with an exact `Retry-After`.
//!
//! Every test picks visitor addresses and accounts of its own, so they run
//! side by side on the one store.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use common::api::{Api, Reply, Setup};
use common::*;
use region_core::clock::ManualClock;
use region_core::limits::{Limits, Rate};

const PASSWORD: &str = "correct horse battery";

fn minutes(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(60 * n)
}

/// The defaults with `change` made.
fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    change(&mut l);
    l
}

/// An address no other test uses.
fn address() -> String {
    let n = rand::random::<u32>();
    format!(
        "10.{}.{}.{}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        (n & 0xfe) + 1
    )
}

fn email(prefix: &str) -> String {
    format!("{}@example.com", unique_city(prefix))
}

async fn api_at(clock: Arc<ManualClock>, limits: Limits) -> Api {
    Api::start_with(Setup {
        clock,
        limits,
        ..Setup::default()
    })
    .await
}

async fn post_from(
    api: &Api,
    ip: &str,
    path: &str,
    body: serde_json::Value,
    cookie: Option<&str>,
) -> Reply {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    api.send_from(ip, b.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn signup(api: &Api, ip: &str, email: &str) -> Reply {
    post_from(
        api,
        ip,
        "/signup",
        serde_json::json!({"email": email, "password": PASSWORD}),
        None,
    )
    .await
}

async fn login(api: &Api, ip: &str, email: &str, password: &str, cookie: Option<&str>) -> Reply {
    post_from(
        api,
        ip,
        "/login",
        serde_json::json!({"email": email, "password": password}),
        cookie,
    )
    .await
}

/// Asserts a 429 problem and returns its `Retry-After` in seconds.
fn limited(r: &Reply) -> u64 {
    assert!(r.problem(429).ends_with("/rate-limited"), "{}", r.body);
    r.headers
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited_and_other_addresses_are_not() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let api = api_at(
        clock.clone(),
        limits(|l| l.signup_per_ip = Rate::new(2, minutes(60))),
    )
    .await;
    let ip = address();
    for _ in 0..2 {
        assert_eq!(signup(&api, &ip, &email("sign")).await.status, 201);
    }
    let refused = email("sign-refused");
    let r = signup(&api, &ip, &refused).await;
    // Two per hour: the next one is due half an hour after the first.
    assert_eq!(limited(&r), 30 * 60);
    // Nothing was created for it.
    let state = State::load();
    let catalog = pool(&state.region().catalog_url).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = lower($1)")
        .bind(&refused)
        .fetch_one(&catalog)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Another address is not affected; this one is again, once its time came.
    assert_eq!(signup(&api, &address(), &refused).await.status, 201);
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(signup(&api, &ip, &email("sign")).await.status, 201);
}

#[tokio::test]
async fn failed_log_ins_lock_strangers_out_of_an_account_but_not_its_owners_browser() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let api = api_at(
        clock.clone(),
        limits(|l| l.login_failures_per_account = Rate::new(3, minutes(15))),
    )
    .await;
    let owner_ip = address();
    let victim = email("victim");
    assert_eq!(signup(&api, &owner_ip, &victim).await.status, 201);
    // The owner's browser logs in once: it gets a device cookie.
    let first = login(&api, &owner_ip, &victim, PASSWORD, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let device = format!(
        "cb_device={}",
        first.cookie("cb_device").expect("a device cookie")
    );

    // Three wrong guesses from three addresses, then the account is closed
    // to strangers: refused before any password is checked.
    for _ in 0..3 {
        let r = login(&api, &address(), &victim, "wrong guess 123", None).await;
        assert_eq!(
            r.problem(401),
            "https://cityboard.example/problems/bad-credentials"
        );
    }
    let r = login(&api, &address(), &victim, "wrong guess 123", None).await;
    assert_eq!(limited(&r), 5 * 60);
    // A fresh browser is limited like the attacker, right password or not.
    let r = login(&api, &owner_ip, &victim, PASSWORD, None).await;
    assert_eq!(limited(&r), 5 * 60);
    // The owner's browser is not; its own typo does not count either.
    let r = login(&api, &owner_ip, &victim, "my own typo!", Some(&device)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = login(&api, &owner_ip, &victim, PASSWORD, Some(&device)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A device cookie earned on another account exempts nothing here, and
    // a forged one neither.
    let other = email("other");
    assert_eq!(signup(&api, &owner_ip, &other).await.status, 201);
    let theirs = login(&api, &owner_ip, &other, PASSWORD, None).await;
    let theirs = format!("cb_device={}", theirs.cookie("cb_device").unwrap());
    let r = login(&api, &owner_ip, &victim, PASSWORD, Some(&theirs)).await;
    limited(&r);
    let forged = device.replace("cb_device=", "cb_device=1");
    let r = login(&api, &owner_ip, &victim, PASSWORD, Some(&forged)).await;
    limited(&r);
    // The account's budget comes back with time: one attempt per 5 minutes.
    clock.advance(chrono::Duration::minutes(5));
    let r = login(&api, &address(), &victim, PASSWORD, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn failed_log_ins_from_one_address_are_limited_whatever_the_account() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let api = api_at(
        clock.clone(),
        limits(|l| l.login_failures_per_ip = Rate::new(2, minutes(10))),
    )
    .await;
    let ip = address();
    let known = email("known");
    assert_eq!(signup(&api, &address(), &known).await.status, 201);
    for _ in 0..2 {
        // Unknown accounts count too (the answer does not tell them apart).
        let r = login(&api, &ip, &email("nobody"), "wrong guess 123", None).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = login(&api, &ip, &known, PASSWORD, None).await;
    assert_eq!(limited(&r), 5 * 60);
    // Successes do not count: another address logs in as often as it likes.
    let elsewhere = address();
    for _ in 0..3 {
        assert_eq!(
            login(&api, &elsewhere, &known, PASSWORD, None).await.status,
            200
        );
    }
}

/// Creates a post as `token` from `ip`; the answer.
async fn create_from(api: &Api, ip: &str, city: &str, token: &str, title: &str) -> Reply {
    let body = serde_json::json!({
        "category": "for-sale", "title": title, "description": "Limits.", "price": 5,
    });
    api.send_from(
        ip,
        Request::post("/post")
            .header("host", api.host(city))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn two_api_instances_share_the_write_limits_and_say_exactly_when_to_retry() {
    let state = State::load();
    let city = state.region().shards[0].cities[0].clone();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let l = limits(|l| l.writes_per_account = Rate::new(3, minutes(1)));
    let (a, b) = (
        api_at(clock.clone(), l.clone()).await,
        api_at(clock.clone(), l).await,
    );
    let ip = address();
    let who = email("writer");
    assert_eq!(signup(&a, &ip, &who).await.status, 201);
    let token = login(&a, &ip, &who, PASSWORD, None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for api in [&a, &b, &a] {
        let r = create_from(api, &ip, &city, &token, &unique_city("allowed")).await;
        assert!([201, 202].contains(&r.status.as_u16()), "{}", r.body);
    }
    // Three a minute: the fourth is due 20 s after the first, whichever
    // instance is asked, and from any address (it is the account's limit).
    let refused = unique_city("refused");
    for (api, from) in [(&b, ip.clone()), (&a, address())] {
        let r = create_from(api, &from, &city, &token, &refused).await;
        assert_eq!(limited(&r), 20);
    }
    clock.advance(chrono::Duration::seconds(11));
    let r = create_from(&b, &ip, &city, &token, &refused).await;
    assert_eq!(limited(&r), 9);
    // Nothing of the refused writes reached the shard.
    let primary = pool(&state.region().shards[0].primary_url).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE title = $1")
        .bind(&refused)
        .fetch_one(&primary)
        .await
        .unwrap();
    assert_eq!(n, 0);
    clock.advance(chrono::Duration::seconds(9));
    let r = create_from(&a, &ip, &city, &token, &unique_city("again")).await;
    assert!([201, 202].contains(&r.status.as_u16()), "{}", r.body);
}

#[tokio::test]
async fn reports_have_limits_of_their_own() {
    let state = State::load();
    let city = state.region().shards[0].cities[0].clone();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let api = api_at(
        clock.clone(),
        limits(|l| l.reports_per_account = Rate::new(2, minutes(60))),
    )
    .await;
    let ip = address();
    let who = email("reporter");
    assert_eq!(signup(&api, &ip, &who).await.status, 201);
    let token = login(&api, &ip, &who, PASSWORD, None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create_from(&api, &ip, &city, &token, &unique_city("reported")).await;
    let post = r.json()["post"].as_str().unwrap().to_string();
    let report = || {
        api.send_from(
            &ip,
            Request::post("/report")
                .header("host", api.host(&city))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"post_id": post, "reason": "spam"}).to_string(),
                ))
                .unwrap(),
        )
    };
    for _ in 0..2 {
        let r = report().await;
        assert!([200, 202].contains(&r.status.as_u16()), "{}", r.body);
    }
    assert_eq!(limited(&report().await), 30 * 60);
    // Writes are counted apart: this account may still post.
    let r = create_from(&api, &ip, &city, &token, &unique_city("still")).await;
    assert!([201, 202].contains(&r.status.as_u16()), "{}", r.body);
}

#[tokio::test]
async fn limits_fail_closed_when_the_store_is_down() {
    let api = Api::start_with(Setup {
        // Nothing listens there.
        store_url: Some("redis://127.0.0.1:9/".into()),
        limits: Limits::default(),
        require_signatures: false,
        ..Setup::default()
    })
    .await;
    let r = api
        .send_raw(
            Request::post("/signup")
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"email": email("down"), "password": PASSWORD}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert!(r.problem(503).ends_with("/store-unavailable"), "{}", r.body);
}
