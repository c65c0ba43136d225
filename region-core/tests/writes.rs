//! The api's write endpoints against the stack's writer: a post is created,
//! read back at once by its author, edited, deleted; other users are
//! refused (retries with an `Idempotency-Key`: `idempotency.rs`); a write the
//! writer has not finished yet answers 202 and its status URL catches up.

mod common;
#[path = "common/posting.rs"]
mod posting;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::api::{Api, Reply, Setup};
use common::*;
use posting::*;

/// A post of `email`'s user created three days ago, so that it may be
/// renewed (renewal is allowed 48 h after posting): created through an api
/// whose clock says so, the way a command of that time would have been.
async fn created_days_ago(city: &str, email: &str, title: &str) -> (String, String) {
    let past = Api::start_with(Setup {
        clock: std::sync::Arc::new(region_core::clock::ManualClock::new(
            chrono::Utc::now() - chrono::Duration::days(3),
        )),
        ..Setup::default()
    })
    .await;
    let token = login(&past, email).await;
    created(&past, city, &token, title).await
}

async fn get_as(api: &Api, city: &str, path: &str, headers: &[(&str, String)]) -> Reply {
    let mut b = Request::get(path)
        .header("host", api.host(city))
        .header("accept", "application/json");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    api.send(b.body(Body::empty()).unwrap()).await
}

/// Creates a post and expects it applied: its id and the RYW cookie.
async fn created(api: &Api, city: &str, token: &str, title: &str) -> (String, String) {
    let r = write(api, city, token, "POST", "/post", &post_body(title), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["post"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers.get("location").unwrap().to_str().unwrap(),
        format!("/post/{id}")
    );
    let cookie = r.cookie("cb_ryw").expect("read-your-writes cookie");
    (id, cookie)
}

#[tokio::test]
async fn an_author_creates_reads_edits_and_deletes_a_post() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let (token, email) = user_and_email(&api, "author").await;
    let title = unique_city("bike");
    // Three days old, so that the renewal below is allowed.
    let (id, cookie) = created_days_ago(&city, &email, &title).await;

    // Read-your-writes: with the cookie the new post is there at once.
    let read = get_as(
        &api,
        &city,
        &format!("/post/{id}"),
        &[("cookie", format!("cb_ryw={cookie}"))],
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["title"], title);

    let edited = format!("{title} (reduced)");
    let r = write(
        &api,
        &city,
        &token,
        "PUT",
        &format!("/post/{id}"),
        &post_body(&edited),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 2);
    let cookie = r.cookie("cb_ryw").unwrap();
    let read = get_as(
        &api,
        &city,
        &format!("/post/{id}"),
        &[("cookie", format!("cb_ryw={cookie}"))],
    )
    .await;
    assert_eq!(read.json()["title"], edited);

    let r = write(
        &api,
        &city,
        &token,
        "POST",
        &format!("/post/{id}/renew"),
        &serde_json::Value::Null,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = write(
        &api,
        &city,
        &token,
        "DELETE",
        &format!("/post/{id}"),
        &serde_json::Value::Null,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.cookie("cb_ryw").unwrap();
    get_as(
        &api,
        &city,
        &format!("/post/{id}"),
        &[("cookie", format!("cb_ryw={cookie}"))],
    )
    .await
    .problem(404);
}

#[tokio::test]
async fn someone_elses_post_cannot_be_edited_deleted_or_renewed() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let alice = user(&api, "alice").await;
    let mallory = user(&api, "mallory").await;
    let (id, _) = created(&api, &city, &alice, &unique_city("lamp")).await;
    let path = format!("/post/{id}");
    write(
        &api,
        &city,
        &mallory,
        "PUT",
        &path,
        &post_body("mine now"),
        &[],
    )
    .await
    .problem(403);
    write(
        &api,
        &city,
        &mallory,
        "DELETE",
        &path,
        &serde_json::Value::Null,
        &[],
    )
    .await
    .problem(403);
    write(
        &api,
        &city,
        &mallory,
        "POST",
        &format!("{path}/renew"),
        &serde_json::Value::Null,
        &[],
    )
    .await
    .problem(403);
    // Nor does a post that does not exist become anyone's.
    write(
        &api,
        &city,
        &mallory,
        "DELETE",
        "/post/12345",
        &serde_json::Value::Null,
        &[],
    )
    .await
    .problem(404);
    // Reporting is anyone's right, though.
    let r = write(
        &api,
        &city,
        &mallory,
        "POST",
        "/report",
        &serde_json::json!({"post_id": id, "reason": "spam"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The post is still alice's, unchanged.
    let read = get_as(&api, &city, &path, &[]).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["version"], 1);
}

#[tokio::test]
async fn invalid_fields_are_each_named() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let token = user(&api, "invalid").await;
    let body = serde_json::json!({"category": "weapons", "title": " ", "price": -1});
    let r = write(&api, &city, &token, "POST", "/post", &body, &[]).await;
    r.problem(422);
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["title", "price", "category"]);
    // A title of 64 KiB of white space, the most a body may carry: no
    // title (413 for the whole body if the JSON around it is over).
    let spaces = " ".repeat(64 * 1024 - 200);
    let body = serde_json::json!({"category": "for-sale", "title": spaces,
        "description": "", "price": 1});
    let r = write(&api, &city, &token, "POST", "/post", &body, &[]).await;
    r.problem(422);
    assert_eq!(r.json()["errors"][0]["field"], "title");
    // A title is stored without the space around it.
    let title = format!("trimmed {}", rand::random::<u32>());
    let (id, _) = created(&api, &city, &token, &format!("  \t{title}\n ")).await;
    assert_eq!(posts_titled(&state, &city, &title).await, 1, "post {id}");
    // Unauthenticated writes are refused before anything is checked.
    let r = api
        .send(
            Request::post("/post")
                .header("host", api.host(&city))
                .header("content-type", "application/json")
                .body(Body::from(post_body("x").to_string()))
                .unwrap(),
        )
        .await;
    r.problem(401);
}

/// A request past the api's request timeout is stopped with a 503 that
/// says so (and when to retry), never a 500 or a dropped connection; the
/// shard connections carry the same limit as their `statement_timeout`.
#[tokio::test]
async fn a_request_past_the_timeout_is_a_503_and_statements_carry_the_limit() {
    let state = prepared().await;
    let city = city(&state);
    let patient = Api::start(false).await;
    let token = user(&patient, "timeout").await;
    let hasty = Api::start_with(Setup {
        request_timeout: Duration::from_millis(1),
        ..Setup::default()
    })
    .await;
    let r = write(
        &hasty,
        &city,
        &token,
        "POST",
        "/post",
        &post_body("hasty"),
        &[],
    )
    .await;
    r.problem(503);
    assert!(
        r.json()["type"].as_str().unwrap().ends_with("/timeout"),
        "{}",
        r.body
    );
    assert!(r.headers.get("retry-after").is_some());
    // The default limit, 10 s, on every shard connection of the api.
    let (_, pools) = patient.state.router.route(&city).unwrap();
    let mut conn = pools.primary.acquire().await.unwrap();
    let limit: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(limit, "10s");
}

#[tokio::test]
async fn a_write_not_applied_in_time_is_accepted_and_its_status_catches_up() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start_with(Setup {
        apply_wait: Duration::ZERO,
        ..Setup::default()
    })
    .await;
    let token = user(&api, "patient").await;
    let title = unique_city("desk");
    let r = write(
        &api,
        &city,
        &token,
        "POST",
        "/post",
        &post_body(&title),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let body = r.json();
    assert_eq!(body["state"], "pending");
    let id = body["post"].as_str().unwrap().to_string();
    let command = body["command"].as_str().unwrap().to_string();
    assert_eq!(r.headers.get("location").unwrap(), &format!("/post/{id}"));
    let status_url = format!("/commands/{command}");
    assert_eq!(r.headers.get("content-location").unwrap(), &status_url);
    let ryw = r.cookie("cb_ryw").unwrap();
    assert!(ryw.starts_with("p."));

    // The poster reading the post at once, with the cookie of its 202, waits
    // for the writer instead of being told there is no such post.
    let read = get_as(
        &api,
        &city,
        &format!("/post/{id}"),
        &[("cookie", format!("cb_ryw={ryw}"))],
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["title"], title.as_str());

    let bearer = ("authorization", format!("Bearer {token}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = get_as(&api, &city, &status_url, std::slice::from_ref(&bearer)).await;
        assert_eq!(s.status, 200, "{}", s.body);
        let s = s.json();
        if s["state"] == "applied" {
            assert_eq!(s["post"], id.as_str());
            assert_eq!(s["version"], 1);
            break;
        }
        assert_eq!(s["state"], "pending", "{s}");
        assert!(Instant::now() < deadline, "command {command} never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another user cannot see it; an unknown command does not exist.
    let other = user(&api, "nosy").await;
    get_as(
        &api,
        &city,
        &status_url,
        &[("authorization", format!("Bearer {other}"))],
    )
    .await
    .problem(404);
    get_as(&api, &city, "/commands/12345", &[bearer])
        .await
        .problem(404);
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_to_write() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let token = user(&api, "cookie").await;
    let form = |csrf: &str| format!("category=free&title=Chair&csrf={csrf}");
    let send = |body: String| {
        api.send(
            Request::post("/post")
                .header("host", api.host(&city))
                .header("cookie", format!("cb_session={token}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
    };
    send(form("forged")).await.problem(403);
    let me = get_as(
        &api,
        &city,
        "/me",
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    let csrf = me.json()["csrf_token"].as_str().unwrap().to_string();
    let r = send(form(&csrf)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.headers
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("/post/")
    );
    assert!(r.cookie("cb_ryw").is_some());
}

#[tokio::test]
async fn a_broker_that_is_down_fails_writes_and_not_reads() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start_with(Setup {
        // Nothing listens on port 1.
        broker: Some("127.0.0.1:1".into()),
        ..Setup::default()
    })
    .await;
    let token = user(&api, "offline").await;
    let title = unique_city("rug");
    let key = unique_city("key");
    let headers = [("idempotency-key", key.as_str())];
    let r = write(
        &api,
        &city,
        &token,
        "POST",
        "/post",
        &post_body(&title),
        &headers,
    )
    .await;
    r.problem(503);
    assert!(r.headers.contains_key("retry-after"));
    let read = get_as(&api, &city, "/post", &[]).await;
    assert_eq!(read.status, 200, "{}", read.body);
    // Nothing was written; the key keeps its command, and the retry, on an
    // api whose broker is up, produces it.
    let up = Api::start(false).await;
    let r = write(
        &up,
        &city,
        &token,
        "POST",
        "/post",
        &post_body(&title),
        &headers,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(posts_titled(&state, &city, &title).await, 1);
}

#[tokio::test]
async fn an_edit_refused_after_its_202_says_so_at_its_status_url() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let hasty = Api::start_with(Setup {
        apply_wait: Duration::ZERO,
        ..Setup::default()
    })
    .await;
    let alice = user(&api, "alice").await;
    let mallory = user(&api, "mallory").await;
    let (id, _) = created(&api, &city, &alice, &unique_city("vase")).await;
    let r = write(
        &hasty,
        &city,
        &mallory,
        "PUT",
        &format!("/post/{id}"),
        &post_body("mine"),
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let status_url = r
        .headers
        .get("content-location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let bearer = [("authorization", format!("Bearer {mallory}"))];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = get_as(&api, &city, &status_url, &bearer).await.json();
        if s["state"] != "pending" {
            assert_eq!(s["state"], "rejected", "{s}");
            assert_eq!(s["reason"], "not the poster's post");
            break;
        }
        assert!(Instant::now() < deadline, "{status_url} never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_renewal_link_opens_a_form_that_renews_the_post() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let (alice, email) = user_and_email(&api, "renewer").await;
    let mallory = user(&api, "renewsnoop").await;
    let (id, ryw) = created_days_ago(&city, &email, &unique_city("<b>kayak</b>")).await;
    let path = format!("/post/{id}/renew");
    let page = |headers: Vec<(&'static str, String)>| {
        let mut b = Request::get(path.as_str())
            .header("host", api.host(&city))
            .header("accept", "text/html");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        api.send(b.body(Body::empty()).unwrap())
    };
    // Opened without a session (another browser): asked to log in, not a 401.
    let r = page(vec![]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("href=\"/login\""), "{}", r.body);
    assert!(!r.body.contains("kayak"), "no post shown without a session");
    // Someone else's post: refused, with a page (the request is a browser's).
    let r = page(vec![("cookie", format!("cb_session={mallory}"))]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    // The author's page: the escaped title and a form with the session's
    // CSRF token, never cached on the way.
    let r = page(vec![(
        "cookie",
        format!("cb_session={alice}; cb_ryw={ryw}"),
    )])
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("&#60;b&#62;kayak&#60;/b&#62;") && !r.body.contains("<b>kayak"));
    assert!(r.body.contains(&format!("action=\"/post/{id}/renew\"")));
    assert_eq!(
        r.headers.get("cache-control").unwrap().to_str().unwrap(),
        "private, no-store"
    );
    let csrf = r
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF field")
        .to_string();
    // Submitting it renews the post (the form answer is a redirect to it).
    let r = api
        .send(
            Request::post(path.as_str())
                .header("host", api.host(&city))
                .header("cookie", format!("cb_session={alice}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={csrf}")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let ryw = r.cookie("cb_ryw").expect("read-your-writes cookie");
    let read = get_as(
        &api,
        &city,
        &format!("/post/{id}"),
        &[("cookie", format!("cb_ryw={ryw}"))],
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["version"], 2, "renewed once");
}
