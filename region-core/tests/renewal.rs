//! Renewal and the listing order, against the stack's writer and shards:
//! posts are written through the api with its clock set to when they were
//! posted (the command carries that time, as a real one of then would), so a
//! post created 8 days ago and renewed now is at the top of its listing and
//! in search, a renewal inside 48 h is a 409 naming the instant it becomes
//! allowed, an edit moves nothing, every sort pages through without gaps or
//! repeats, and empty form fields are the first page.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::api::{Api, Reply, Setup};
use common::*;
use region_core::clock::ManualClock;

/// A served city of the stack's first region (the stack's writer applies
/// its commands).
fn city(state: &State) -> String {
    state.region().shards[0].cities[0].clone()
}

/// Now, on a whole second: instants the test compares with what the shard
/// stored (microseconds) and with RFC 3339 seconds in messages.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

/// An in-process api whose clock the test sets, and a user logged in on it.
/// The clock only ever moves forward: the api's id generator waits for a
/// clock that went back to pass its last id's time again.
struct Actor {
    api: Api,
    clock: Arc<ManualClock>,
    email: String,
    city: String,
    /// The latest write's read-your-writes cookie: reads after it see it.
    ryw: Option<String>,
}

impl Actor {
    async fn new(city: &str, at: DateTime<Utc>) -> Actor {
        let clock = Arc::new(ManualClock::new(at));
        let api = Api::start_with(Setup {
            clock: clock.clone(),
            ..Setup::default()
        })
        .await;
        let email = format!("{}@example.com", unique_city("renewer"));
        let body = serde_json::json!({"email": email, "password": "correct horse battery"});
        let r = api.post_json("/signup", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        Actor {
            api,
            clock,
            email,
            city: city.to_string(),
            ryw: None,
        }
    }

    /// A token issued at the clock's time (tokens live minutes, the test
    /// moves the clock by days).
    async fn token(&self) -> String {
        let body = serde_json::json!({"email": self.email, "password": "correct horse battery"});
        let r = self.api.post_json("/login", body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    /// `method path` with a JSON body (unless null), at `at`.
    async fn write(
        &mut self,
        at: DateTime<Utc>,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> Reply {
        self.clock.set(at);
        let token = self.token().await;
        let b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.api.host(&self.city))
            .header("authorization", format!("Bearer {token}"));
        let req = if body.is_null() {
            b.body(Body::empty()).unwrap()
        } else {
            b.header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let r = self.api.send(req).await;
        if let Some(c) = r.cookie("cb_ryw") {
            self.ryw = Some(c);
        }
        r
    }

    /// A post created at `at`: its id.
    async fn create(&mut self, at: DateTime<Utc>, title: &str, price: Option<i64>) -> String {
        let r = self
            .write(at, "POST", "/post", post_body(title, price))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["post"].as_str().unwrap().to_string()
    }

    /// `GET path` (JSON) at the clock's current time, after the latest write.
    async fn get(&self, path: &str) -> Reply {
        let mut b = Request::get(path)
            .header("host", self.api.host(&self.city))
            .header("accept", "application/json");
        if let Some(c) = &self.ryw {
            b = b.header("cookie", format!("cb_ryw={c}"));
        }
        self.api.send(b.body(Body::empty()).unwrap()).await
    }

    /// The ids of one page of `path` and its next cursor.
    async fn page(&self, path: &str) -> (Vec<String>, Option<String>) {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        let ids = v["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect();
        (ids, v["next_cursor"].as_str().map(str::to_string))
    }

    /// Every id of a listing, page by page (`limit` per page).
    async fn all_pages(&self, query: &str, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let path = match &cursor {
                Some(c) => format!("/post?{query}&limit={limit}&cursor={c}"),
                None => format!("/post?{query}&limit={limit}"),
            };
            let (ids, next) = self.page(&path).await;
            assert!(ids.len() <= limit);
            out.extend(ids);
            match next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
        panic!("more than 50 pages of {query}");
    }
}

fn post_body(title: &str, price: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "category": "for-sale",
        "title": title,
        "description": "Collect from the porch.",
        "price": price,
        "location": "Back Bay",
    })
}

#[tokio::test]
async fn a_post_renewed_after_eight_days_tops_its_listing_and_search() {
    let state = prepared().await;
    let city = city(&state);
    // "Now" is an hour ahead of the real clock, so posts that other tests
    // write meanwhile (at the real time) stay below the renewed one.
    let now = whole_second(Utc::now()) + Duration::hours(1);
    let mut a = Actor::new(&city, now - Duration::days(8)).await;
    let word = unique_city("zq").replace('-', "");

    let old = a
        .create(
            now - Duration::days(8),
            &format!("{word} old lamp"),
            Some(15),
        )
        .await;
    let edited = a
        .create(now - Duration::days(1), &format!("{word} desk"), Some(40))
        .await;
    let newer = a
        .create(
            now - Duration::days(1) + Duration::minutes(5),
            &format!("{word} chair"),
            Some(25),
        )
        .await;

    // Before the renewal, the 8-day-old post is out of the 7-day window.
    a.clock.set(now);
    let (ids, _) = a.page(&format!("/post?search={word}")).await;
    assert_eq!(ids, [newer.clone(), edited.clone()], "before renewal");

    // A renewal inside 48 h of posting: 409, naming when it is allowed.
    let allowed =
        (now - Duration::days(1) + Duration::hours(48)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let r = a
        .write(
            now,
            "POST",
            &format!("/post/{edited}/renew"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.starts_with("renewed too early") && detail.contains(&allowed),
        "{detail} (expected {allowed})"
    );

    // An edit does not move a post up.
    let r = a
        .write(
            now,
            "PUT",
            &format!("/post/{edited}"),
            post_body(&format!("{word} desk, reduced"), Some(35)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (ids, _) = a.page(&format!("/post?search={word}")).await;
    assert_eq!(ids, [newer.clone(), edited.clone()], "after the edit");

    // The 8-day-old post, renewed now: first in search and in the city's
    // listing, with its creation date kept.
    let r = a
        .write(
            now,
            "POST",
            &format!("/post/{old}/renew"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (ids, _) = a.page(&format!("/post?search={word}")).await;
    assert_eq!(ids, [old.clone(), newer.clone(), edited.clone()]);
    let (ids, _) = a.page("/post").await;
    assert_eq!(ids.first(), Some(&old), "top of the city's listing");
    let r = a.get(&format!("/post/{old}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["listed_at"].as_str().unwrap(),
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let created: DateTime<Utc> = v["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(created, now - Duration::days(8));
    let expires: DateTime<Utc> = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, now + Duration::days(7), "renewal moves expiry");

    // Renewed again at once: refused until 48 h after this renewal.
    let r = a
        .write(
            now + Duration::minutes(1),
            "POST",
            &format!("/post/{old}/renew"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let again = (now + Duration::hours(48)).to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(r.body.contains(&again), "{}", r.body);

    // "Posted today" (the city's day) keeps the renewed post, and the
    // others only if they were posted since the city's midnight.
    let midnight = region_core::locale::city_locale(&city).start_of_today(now);
    let (ids, _) = a.page(&format!("/post?search={word}&today=true")).await;
    let expected: Vec<String> = [
        (&old, now),
        (&newer, now - Duration::days(1) + Duration::minutes(5)),
        (&edited, now - Duration::days(1)),
    ]
    .into_iter()
    .filter(|(_, at)| *at >= midnight)
    .map(|(id, _)| id.clone())
    .collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.first(), Some(&old));
}

#[tokio::test]
async fn every_sort_pages_through_without_gaps_or_repeats() {
    let state = prepared().await;
    let city = city(&state);
    let now = whole_second(Utc::now());
    let mut a = Actor::new(&city, now - Duration::minutes(61)).await;
    let word = unique_city("zp").replace('-', "");
    // Prices with ties and posts without a price; listed a minute apart.
    let prices = [
        Some(30),
        None,
        Some(10),
        Some(30),
        Some(0),
        None,
        Some(1_000_000_000),
        Some(10),
    ];
    let mut posts: Vec<(String, Option<i64>, DateTime<Utc>)> = Vec::new();
    for (i, price) in prices.into_iter().enumerate() {
        let at = now - Duration::minutes(60 - i as i64);
        let id = a.create(at, &format!("{word} item {i}"), price).await;
        posts.push((id, price, at));
    }
    // One whose description, not title, has the word.
    a.clock.set(now);
    let r = a
        .write(
            now,
            "POST",
            "/post",
            serde_json::json!({
                "category": "free",
                "title": "a box of things",
                "description": format!("{word} in the description only"),
                "price": 5,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let described = r.json()["post"].as_str().unwrap().to_string();

    let id_num = |id: &String| id.parse::<i64>().unwrap();
    let mut newest = posts.clone();
    newest.sort_by_key(|(id, _, at)| std::cmp::Reverse((*at, id_num(id))));
    let mut asc = posts.clone();
    asc.sort_by_key(|(id, price, _)| (price.is_none(), price.unwrap_or(0), id_num(id)));
    let mut desc = posts.clone();
    desc.sort_by_key(|(id, price, _)| {
        (
            price.is_none(),
            std::cmp::Reverse((price.unwrap_or(0), id_num(id))),
        )
    });
    let ids = |v: &[(String, Option<i64>, DateTime<Utc>)]| -> Vec<String> {
        v.iter().map(|(id, _, _)| id.clone()).collect()
    };

    for limit in [1, 3, 100] {
        let q = format!("search={word}&titles_only=true");
        assert_eq!(
            a.all_pages(&q, limit).await,
            ids(&newest),
            "newest, {limit}"
        );
        let q = format!("search={word}&titles_only=true&sort=price_asc");
        assert_eq!(
            a.all_pages(&q, limit).await,
            ids(&asc),
            "price_asc, {limit}"
        );
        let q = format!("search={word}&titles_only=true&sort=price_desc");
        assert_eq!(
            a.all_pages(&q, limit).await,
            ids(&desc),
            "price_desc, {limit}"
        );
    }
    // Without titles_only the description's match is found too (newest).
    let all = a.all_pages(&format!("search={word}"), 4).await;
    assert_eq!(all.first(), Some(&described));
    assert_eq!(all.len(), posts.len() + 1);

    // A cursor of one sort is refused for another.
    let (_, next) = a
        .page(&format!("/post?search={word}&sort=price_asc&limit=2"))
        .await;
    let next = next.expect("a second page");
    let r = a
        .get(&format!(
            "/post?search={word}&sort=price_desc&limit=2&cursor={next}"
        ))
        .await;
    r.problem(400);
    // An unknown sort is a 422 naming it.
    let r = a.get(&format!("/post?search={word}&sort=cheapest")).await;
    r.problem(422);
    assert!(r.body.contains("\"sort\""), "{}", r.body);
}

#[tokio::test]
async fn empty_form_fields_are_the_first_page() {
    let state = prepared().await;
    let city = city(&state);
    let now = whole_second(Utc::now());
    let mut a = Actor::new(&city, now - Duration::minutes(4)).await;
    let word = unique_city("ze").replace('-', "");
    for i in 0..3 {
        a.create(
            now - Duration::minutes(3 - i),
            &format!("{word} {i}"),
            Some(i),
        )
        .await;
    }
    a.clock.set(now);
    let first = a.page(&format!("/post?search={word}&limit=2")).await;
    assert_eq!(first.0.len(), 2);
    let empties = a
        .page(&format!(
            "/post?search={word}&limit=2&cursor=&min_price=&max_price=&category=&sort=\
             &has_image=&titles_only=&today="
        ))
        .await;
    assert_eq!(empties.0, first.0);
    // The cursors differ only if the scopes do: the empty fields are absent.
    assert_eq!(empties.1, first.1);
    // `cursor=` alone on the unfiltered listing: the first page, not a 400.
    let r = a.get("/post?cursor=&search=").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same for a browser.
    let r = a
        .api
        .get(
            &city,
            "/post?cursor=&min_price=&category=&search=&sort=",
            "text/html",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
