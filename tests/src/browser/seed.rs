//! Data the browser tests need before a browser opens, written through the
//! edge's JSON API as any script would (an account, many posts): quicker
//! than a form per post, and the same write path.

use std::time::Duration;

use serde_json::{Value, json};

use cityboard_deploy::http;
use cityboard_test_support::eventually;

use crate::EdgeRequests;
use crate::stack_edge::StackEdge;

/// A signed-up, logged-in API user of one city (owned, so that many
/// requests can run at once in their own tasks).
#[derive(Clone)]
pub struct ApiUser {
    port: u16,
    host: String,
    city: String,
    /// The user's e-mail.
    pub email: String,
    token: String,
    ip: String,
}

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// `POST {path}` with `email` and [`PASSWORD`] as JSON on `city`'s host,
/// from `ip`: sign-up and log-in send the same request.
async fn credentials(
    edge: &StackEdge,
    city: &str,
    path: &str,
    email: &str,
    ip: &str,
) -> http::Response {
    let body = json!({"email": email, "password": PASSWORD}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("cf-connecting-ip", ip),
    ];
    edge.request(
        "POST",
        &edge.host(Some(city)),
        path,
        &headers,
        body.as_bytes(),
    )
    .await
}

impl ApiUser {
    /// Signs up `email` on `city`'s host and logs in, as a visitor from `ip`.
    pub async fn sign_up(edge: &StackEdge, city: &str, email: &str, ip: &str) -> ApiUser {
        let r = credentials(edge, city, "/signup", email, ip).await;
        assert_eq!(r.status, 201, "API sign-up of {email}: {}", r.text());
        ApiUser::log_in(edge, city, email, ip).await
    }

    /// Logs in an existing account `email` on `city`'s host.
    pub async fn log_in(edge: &StackEdge, city: &str, email: &str, ip: &str) -> ApiUser {
        let host = edge.host(Some(city));
        let r = credentials(edge, city, "/login", email, ip).await;
        assert_eq!(r.status, 200, "API log-in of {email}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("log-in JSON");
        ApiUser {
            port: edge.port,
            host,
            city: city.to_string(),
            email: email.to_string(),
            token: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            ip: ip.to_string(),
        }
    }

    /// The account's access token, for requests this type does not make.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Creates a post; returns its id.
    pub async fn create(&self, post: &Value) -> u64 {
        let auth = format!("Bearer {}", self.token);
        let body = post.to_string();
        let r = http::request(
            self.port,
            "POST",
            "/post",
            &[
                ("host", self.host.as_str()),
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("cf-connecting-ip", self.ip.as_str()),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("API create in {}: {e:#}", self.city));
        assert!(
            r.status == 201 || r.status == 202,
            "API create in {}: {} {}",
            self.city,
            r.status,
            r.text()
        );
        let v: Value = serde_json::from_slice(&r.body).expect("create JSON");
        v["post"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v["post"].as_u64())
            .unwrap_or_else(|| panic!("no post id in {v}"))
    }

    /// Creates the posts, eight requests at a time; returns their ids in
    /// the order given.
    pub async fn create_many(&self, posts: Vec<Value>) -> Vec<u64> {
        let mut ids = Vec::with_capacity(posts.len());
        for chunk in posts.chunks(8) {
            let tasks: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|p| {
                    let me = self.clone();
                    tokio::spawn(async move { me.create(&p).await })
                })
                .collect();
            for t in tasks {
                match t.await {
                    Ok(id) => ids.push(id),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        }
        ids
    }
}

/// The city's JSON listing for `query` (may be empty), first page of up
/// to 100 posts.
async fn listing(edge: &StackEdge, city: &str, query: &str) -> Option<Value> {
    let host = edge.host(Some(city));
    let path = if query.is_empty() {
        "/post?limit=100".to_string()
    } else {
        format!("/post?{query}&limit=100")
    };
    let r = edge
        .request(
            "GET",
            &host,
            &path,
            &[
                ("accept", "application/json"),
                ("cf-connecting-ip", "203.0.113.30"),
            ],
            b"",
        )
        .await;
    (r.status == 200)
        .then(|| serde_json::from_slice(&r.body).ok())
        .flatten()
}

/// How many posts the city's listing for `query` shows now (at most 100).
pub async fn listed(edge: &StackEdge, city: &str, query: &str) -> usize {
    listing(edge, city, query)
        .await
        .and_then(|v| v["posts"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Waits until the city's listing for `query` shows at least `want` posts
/// (the listing reads replicas, which replay a little later); returns how
/// many it shows.
pub async fn wait_listed(edge: &StackEdge, city: &str, query: &str, want: usize) -> usize {
    eventually(
        &format!("{want} posts listed in {city} for {query:?}"),
        Duration::from_secs(60),
        || async {
            let n = listed(edge, city, query).await;
            (n >= want).then_some(n)
        },
    )
    .await
}

/// The id of the newest post of the city's listing.
pub async fn first_listed(edge: &StackEdge, city: &str) -> u64 {
    let v = listing(edge, city, "")
        .await
        .unwrap_or_else(|| panic!("{city}'s listing"));
    let id = &v["posts"][0]["id"];
    id.as_u64()
        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("no post in {city}'s listing: {v}"))
}

/// A post body for the API.
pub fn post(title: &str, price: i64, description: &str) -> Value {
    json!({"category": "for-sale", "title": title, "description": description,
           "price": price, "location": "Downtown"})
}
