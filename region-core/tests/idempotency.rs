//! Retries with an `Idempotency-Key` write once, whatever became of the
//! first attempt: answered, failed after the broker took its command, or
//! cut short by an api that died between the key's claim and its answer.
//! The same key with another body is the client's mistake (422).
//!
//! The crash points are armed in this test's own process (`fail::cfg`), on
//! its own in-process api: nextest runs each test in a process of its own,
//! so no other test's writes meet them.

mod common;
#[path = "common/posting.rs"]
mod posting;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::api::{Api, Reply};
use common::*;
use posting::*;
use region_core::bus::failpoint::{API_AFTER_CLAIM, API_AFTER_PRODUCE};
use tokio::sync::Notify;

/// How long a test waits for something the stack does within seconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// The first request that reaches a crash point, stopped there as if its
/// api had died on the spot: it keeps what it holds (its key's record and
/// lease) and does nothing more until `resume`, which a dead api never
/// would; a test resumes it only to see what its late work changes.
struct Stopped {
    point: &'static str,
    reached: Arc<Notify>,
    resume: mpsc::Sender<()>,
}

impl Stopped {
    fn at(point: &'static str) -> Stopped {
        let reached = Arc::new(Notify::new());
        let (resume, stopped) = mpsc::channel::<()>();
        let stopped = Mutex::new(stopped);
        let first = AtomicBool::new(true);
        let signal = reached.clone();
        fail::cfg_callback(point, move || {
            if first.swap(false, Ordering::SeqCst) {
                signal.notify_one();
                // Off the runtime's worker, so the other requests go on.
                tokio::task::block_in_place(|| {
                    let _ = stopped.lock().unwrap().recv();
                });
            }
        })
        .unwrap();
        Stopped {
            point,
            reached,
            resume,
        }
    }

    /// Waits until a request stopped at the point.
    async fn reached(&self) {
        tokio::time::timeout(PATIENCE, self.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("no request reached {}", self.point));
    }

    fn resume(self) {
        fail::remove(self.point);
        self.resume.send(()).unwrap();
    }
}

/// `POST /post` of a post titled `title` as `token`, with `key`.
async fn post_keyed(api: &Api, city: &str, token: &str, title: &str, key: &str) -> Reply {
    let headers = [("idempotency-key", key)];
    write(
        api,
        city,
        token,
        "POST",
        "/post",
        &post_body(title),
        &headers,
    )
    .await
}

/// A post created with `key` as `token`, sent on a task of its own.
fn create_in_background(
    api: &Arc<Api>,
    city: &str,
    token: &str,
    title: &str,
    key: &str,
) -> tokio::task::JoinHandle<Reply> {
    let (api, city, token, title, key) = (
        api.clone(),
        city.to_string(),
        token.to_string(),
        title.to_string(),
        key.to_string(),
    );
    tokio::spawn(async move { post_keyed(&api, &city, &token, &title, &key).await })
}

/// Waits until the shard holds `n` posts titled `title`.
async fn until_posts(state: &State, city: &str, title: &str, n: i64) {
    let deadline = Instant::now() + PATIENCE;
    while posts_titled(state, city, title).await != n {
        assert!(Instant::now() < deadline, "{title}: never {n} posts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of the posts titled `title` in the shard.
async fn post_ids_titled(state: &State, city: &str, title: &str) -> Vec<String> {
    let pool = pool(&state.region().shards[0].primary_url).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM posts WHERE city = $1 AND title = $2")
        .bind(city)
        .bind(title)
        .fetch_all(&pool)
        .await
        .unwrap();
    ids.iter().map(i64::to_string).collect()
}

/// A 201 naming a post, or a 202 whose status URL says applied within
/// `PATIENCE`: the post's id.
async fn applied_post(api: &Api, city: &str, token: &str, r: &Reply) -> String {
    let post = r.json()["post"].as_str().unwrap().to_string();
    if r.status == 201 {
        return post;
    }
    assert_eq!(r.status, 202, "{}", r.body);
    let status_url = r.headers["content-location"].to_str().unwrap().to_string();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = write(
            api,
            city,
            token,
            "GET",
            &status_url,
            &serde_json::Value::Null,
            &[],
        )
        .await;
        assert_eq!(s.status, 200, "{}", s.body);
        match s.json()["state"].as_str() {
            Some("applied") => return post,
            Some("pending") => {}
            other => panic!("{status_url}: {other:?}: {}", s.body),
        }
        assert!(Instant::now() < deadline, "{status_url}: never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A write to `city` made after everything produced to it so far, applied:
/// the city's commands are applied in order, so every earlier one (a late
/// copy of a command included) has been dealt with.
async fn city_caught_up(api: &Api, city: &str, token: &str) {
    let r = write(
        api,
        city,
        token,
        "POST",
        "/post",
        &post_body(&unique_city("marker")),
        &[],
    )
    .await;
    applied_post(api, city, token, &r).await;
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_writes_once() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let token = user(&api, "retry").await;
    let title = unique_city("sofa");
    let key = unique_city("key");
    let first = post_keyed(&api, &city, &token, &title, &key).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post_keyed(&api, &city, &token, &title, &key).await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("location"), first.headers.get("location"));
    assert_eq!(posts_titled(&state, &city, &title).await, 1);

    // The same key for another body is the client's mistake.
    let other = post_keyed(&api, &city, &token, "another sofa", &key).await;
    other.problem(422);
    assert_eq!(other.json()["errors"][0]["field"], "Idempotency-Key");
    // Keys are per user: another user's same key is a new request.
    let bob = user(&api, "bob").await;
    let theirs = post_keyed(&api, &city, &bob, &title, &key).await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.json()["post"], first.json()["post"]);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_produce_one_command() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let token = user(&api, "eager").await;
    let title = unique_city("table");
    let key = unique_city("key");
    let (a, b) = tokio::join!(
        post_keyed(&api, &city, &token, &title, &key),
        post_keyed(&api, &city, &token, &title, &key),
    );
    // The second either found the first's answer, or waited for the
    // outcome of the first's command: applied (201), not yet (202), or, if
    // it had none within the apply wait, told to come back (409).
    let answered: Vec<&Reply> = [&a, &b].into_iter().filter(|r| r.status != 409).collect();
    assert!(!answered.is_empty(), "{} / {}", a.body, b.body);
    for r in &answered {
        assert!([201, 202].contains(&r.status.as_u16()), "{}", r.body);
        assert_eq!(r.json()["post"], answered[0].json()["post"]);
    }
    applied_post(&api, &city, &token, answered[0]).await;
    city_caught_up(&api, &city, &token).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_failed_status_read_yields_one_post() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let token = user(&api, "unlucky").await;
    let title = unique_city("lamp");
    let key = unique_city("key");
    // The broker takes the command, then reading its outcome fails.
    fail::cfg(API_AFTER_PRODUCE, "1*return(error)").unwrap();
    let first = post_keyed(&api, &city, &token, &title, &key).await;
    fail::remove(API_AFTER_PRODUCE);
    assert_eq!(first.status, 500, "{}", first.body);

    // The client cannot know whether it was written, so it retries.
    let retry = post_keyed(&api, &city, &token, &title, &key).await;
    let post = applied_post(&api, &city, &token, &retry).await;
    city_caught_up(&api, &city, &token).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1);
    assert_eq!(post_ids_titled(&state, &city, &title).await, [post]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_an_api_died_past_the_broker_gets_the_applied_post() {
    let state = prepared().await;
    let city = city(&state);
    let api = Arc::new(Api::start(false).await);
    let token = user(&api, "orphan").await;
    let title = unique_city("chair");
    let key = unique_city("key");
    let stopped = Stopped::at(API_AFTER_PRODUCE);
    let first = create_in_background(&api, &city, &token, &title, &key);
    stopped.reached().await;
    // The command is in the log and the writer applies it; the request
    // that claimed the key never answers, its lease still held.
    until_posts(&state, &city, &title, 1).await;

    let retry = post_keyed(&api, &city, &token, &title, &key).await;
    // The outcome, not a 409: the write was applied.
    assert_eq!(retry.status, 201, "{}", retry.body);
    let post = retry.json()["post"].as_str().unwrap().to_string();
    assert_eq!(retry.headers["location"], format!("/post/{post}").as_str());
    assert_eq!(retry.json()["state"], "applied");

    stopped.resume();
    let late = first.await.unwrap();
    assert_eq!(late.status, 201, "{}", late.body);
    assert_eq!(late.json()["post"], post.as_str());
    assert_eq!(posts_titled(&state, &city, &title).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_an_api_died_before_the_broker_produces_the_command_once() {
    let state = prepared().await;
    let city = city(&state);
    let api = Arc::new(Api::start(false).await);
    let token = user(&api, "stranded").await;
    let title = unique_city("shelf");
    let key = unique_city("key");
    let stopped = Stopped::at(API_AFTER_CLAIM);
    let first = create_in_background(&api, &city, &token, &title, &key);
    stopped.reached().await;

    // Another body under the key the dead request claimed: still a 422.
    let other = post_keyed(&api, &city, &token, "another shelf", &key).await;
    other.problem(422);

    // Nothing was produced. While the dead request's lease lasts a retry
    // is told to come back (nothing applied, so a 409 is the truth); once
    // it has lapsed, the retry produces the key's command itself.
    let deadline = Instant::now() + PATIENCE;
    let retry = loop {
        let r = post_keyed(&api, &city, &token, &title, &key).await;
        if r.status != 409 {
            break r;
        }
        assert_eq!(
            posts_titled(&state, &city, &title).await,
            0,
            "409 for an applied write"
        );
        assert!(Instant::now() < deadline, "the key's lease never lapsed");
    };
    let post = applied_post(&api, &city, &token, &retry).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1);

    // The request that was thought dead wakes and produces its copy of the
    // same command: the writer drops it, and it answers the same post.
    // Past the api's request timeout by now, it may be stopped by it (a
    // 503) before it produces anything.
    stopped.resume();
    let late = first.await.unwrap();
    match late.status.as_u16() {
        201 => assert_eq!(late.json()["post"], post.as_str()),
        503 => assert!(late.body.contains("timeout"), "{}", late.body),
        other => panic!("{other}: {}", late.body),
    }
    city_caught_up(&api, &city, &token).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1);
}

/// The value of the hidden field `name` of a form page.
fn hidden(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field: {page}"))
        .to_string()
}

#[tokio::test]
async fn a_new_post_form_sent_twice_writes_once() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let email = format!("{}@example.com", unique_city("clicker"));
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    assert_eq!(api.post_json("/signup", body.clone()).await.status, 201);
    let session = api.post_json("/login", body).await;
    let cookie = format!(
        "cb_session={}",
        session.json()["access_token"].as_str().unwrap()
    );
    let browser = |b: axum::http::request::Builder| {
        b.header("host", api.host(&city))
            .header("accept", "text/html")
            .header("cookie", cookie.as_str())
    };
    let form = api
        .send(
            browser(axum::http::Request::get("/post/new"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let title = unique_city("bike");
    let fields = serde_urlencoded::to_string([
        ("csrf", hidden(&form.body, "csrf")),
        ("idempotency_key", hidden(&form.body, "idempotency_key")),
        ("title", title.clone()),
        ("category", "for-sale".to_string()),
        ("price", "80".to_string()),
    ])
    .unwrap();
    let send = || {
        api.send(
            browser(axum::http::Request::post("/post"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(fields.clone()))
                .unwrap(),
        )
    };
    // A double click: the same form twice.
    let first = send().await;
    let second = send().await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(second.status, 303, "{}", second.body);
    assert_eq!(first.headers["location"], second.headers["location"]);
    until_posts(&state, &city, &title, 1).await;
    let token = session.json()["access_token"].as_str().unwrap().to_string();
    city_caught_up(&api, &city, &token).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1);

    // The next form shown is another write.
    let next = api
        .send(
            browser(axum::http::Request::get("/post/new"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_ne!(
        hidden(&next.body, "idempotency_key"),
        hidden(&form.body, "idempotency_key")
    );
}
