//! A log-in flood on one account (issue 27, acceptance 2), against the
//! shared stack's api, signed as the edge signs, from many addresses: 200
//! wrong-password attempts a second for 10 s. The account's failed log-in
//! limit (10 per 15 minutes, deploy/limits-load.toml keeps the default)
//! stops the attacker before any password is hashed, so:
//! - the rightful user, from the browser that logged in before (its device
//!   cookie), still logs in, within 2 s of trying;
//! - a fresh browser is limited like the attacker, right password or not;
//! - the attacker gets 429s, and no answer is a 5xx.
//!
//! Serial: the flood loads the api that every other test shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cityboard_deploy::edge::FORWARD_KEY_FILE;
use cityboard_deploy::http;
use cityboard_protocol::sign::{self, Key, SIGNATURE_HEADER};
use cityboard_tests::device_cookie;
use cityboard_tests::stack_edge::StackEdge;
use serde_json::json;

const CITY: &str = "newyork";
const PASSWORD: &str = "correct horse battery staple";

/// What the edge would forward: `POST path` for `CITY` from `ip`, signed now.
struct Origin {
    port: u16,
    host: String,
    key: Key,
}

impl Origin {
    async fn post(&self, path: &str, ip: &str, body: &str, cookie: Option<&str>) -> http::Response {
        let nonce = format!("{:032x}", rand::random::<u128>());
        let fields = sign::Request {
            method: "POST",
            host: &self.host,
            path_and_query: path,
            client_ip: ip,
            city: CITY,
            body_sha256: sign::body_sha256(body.as_bytes()),
            content_type: "application/json",
        };
        let signature = sign::sign(&self.key, &fields, chrono::Utc::now().timestamp(), &nonce);
        let mut headers = vec![
            (SIGNATURE_HEADER, signature.as_str()),
            (sign::FORWARDED_HOST_HEADER, self.host.as_str()),
            (sign::CITY_HEADER, CITY),
            (sign::CLIENT_IP_HEADER, ip),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ];
        let cookie = cookie.map(|c| format!("cb_device={c}"));
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        http::request(self.port, "POST", path, &headers, body.as_bytes())
            .await
            .expect("the api answers")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_login_flood_on_one_account_spares_its_owner() {
    let edge = StackEdge::shared();
    let origin = Arc::new(Origin {
        port: edge.api_port(&edge.region_of(CITY)),
        host: format!("{CITY}.{}", edge.apex),
        key: edge.secret(FORWARD_KEY_FILE),
    });
    let email = format!("flood-{:08x}@example.com", rand::random::<u32>());
    let right = json!({"email": email, "password": PASSWORD}).to_string();
    let wrong = json!({"email": email, "password": "a guess that is wrong"}).to_string();
    let owner_ip = "198.51.100.77";
    let r = origin.post("/signup", owner_ip, &right, None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = origin.post("/login", owner_ip, &right, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let device = device_cookie(&r).expect("a device cookie");

    // 200 attempts a second for 10 s, each from its own address.
    let started = Instant::now();
    let attack = {
        let origin = origin.clone();
        let wrong = wrong.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut sent = Vec::new();
            for i in 0..2000u32 {
                tick.tick().await;
                let origin = origin.clone();
                let wrong = wrong.clone();
                let ip = format!("10.{}.{}.{}", 200 + i / 65536, (i / 256) % 256, i % 256);
                sent.push(tokio::spawn(async move {
                    origin.post("/login", &ip, &wrong, None).await.status
                }));
            }
            let mut statuses = Vec::new();
            for s in sent {
                statuses.push(s.await.expect("an attempt"));
            }
            statuses
        })
    };

    // Mid-attack: the owner's browser, then a fresh one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    let r = origin.post("/login", owner_ip, &right, Some(&device)).await;
    let took = t.elapsed();
    assert_eq!(r.status, 200, "the owner's browser: {}", r.text());
    assert!(took <= Duration::from_secs(2), "the owner waited {took:?}");
    let r = origin.post("/login", "198.51.100.78", &right, None).await;
    assert_eq!(r.status, 429, "a fresh browser: {}", r.text());

    let statuses = attack.await.expect("the attack");
    let elapsed = started.elapsed();
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    let (refused, limited) = (count(401), count(429));
    let others: Vec<u16> = statuses
        .iter()
        .copied()
        .filter(|s| *s != 401 && *s != 429)
        .collect();
    eprintln!(
        "{} attempts in {elapsed:?}: {refused} checked (401), {limited} limited (429), owner in {took:?}",
        statuses.len()
    );
    assert!(others.is_empty(), "answers besides 401 and 429: {others:?}");
    // The account's 10, however many were in flight at once (each attempt
    // takes before it is hashed); everything else refused unhashed.
    assert!(refused <= 10, "{refused} attempts were checked");
    assert_eq!(limited, statuses.len() - refused, "{limited} limited");
}
