//! The edge of the shared stack, end to end (issue 6, acceptance 3): the
//! Worker under workerd, its KV service and the regions' apis, driven from
//! outside as visitors and the publisher would.
//!
//! - Visitors from addresses the embedded city database places in served
//!   cities are sent (302) to their city's host.
//! - A page written through the Worker's internal bulk KV route is then
//!   served by the edge with no origin request; one of another template
//!   version is rendered by the origin instead.
//! - Every HTML answer (picker, KV page, origin page) carries the security
//!   headers; `/cities` is the picker whatever `cb_city` says.
//! - A sign-up POSTed through the edge reaches region-core, signed, and is
//!   created; a signed request sent twice is refused the second time.
//!
//! Visitors are placed by `CF-Connecting-IP`, which Cloudflare sets in
//! production and nothing strips locally; the stack's edge has no test mode.

use cityboard_deploy::edge::{
    FORWARD_KEY_FILE, KV_ROUTE_KEY_FILE, addresses_in, embedded_database, template_version,
};
use cityboard_deploy::http;
use cityboard_protocol::headers::SECURITY_HEADERS;
use cityboard_protocol::kv::{BULK_PATH, BulkResult, BulkWrite, PostMeta, post_key};
use cityboard_protocol::sign::{self, SIGNATURE_HEADER};
use cityboard_tests::stack_edge::StackEdge;
use cityboard_tests::{EdgeRequests, device_cookie};
use serde_json::json;

#[tokio::test]
async fn visitors_from_real_city_addresses_land_on_their_city() {
    let edge = StackEdge::shared();
    let cities: Vec<String> = edge
        .state
        .regions
        .iter()
        .flat_map(|r| r.shards.iter().flat_map(|s| s.cities.clone()))
        .collect();
    let wanted: Vec<&str> = cities.iter().map(String::as_str).collect();
    let addresses = addresses_in(&embedded_database(), &wanted).expect("the embedded database");
    for city in ["newyork", "london"] {
        assert!(
            addresses.contains_key(city),
            "the embedded database places no /16 in {city}: {addresses:?}"
        );
    }
    // No cookie and no `cf` object: the address alone places the visitor.
    let apex = edge.host(None);
    for (city, ip) in &addresses {
        let ip = ip.to_string();
        let r = edge
            .request("GET", &apex, "/", &[("cf-connecting-ip", &ip)], b"")
            .await;
        assert_eq!(r.status, 302, "{ip} ({city}): {}", r.text());
        assert_eq!(
            r.header("location"),
            Some(format!("http://{}/", edge.host(Some(city))).as_str()),
            "{ip} should land on {city}"
        );
        assert_eq!(r.header("cache-control"), Some("private, no-store"));
    }
    // An address no database places gets the picker, not a guess.
    let r = edge
        .request("GET", &apex, "/", &[("cf-connecting-ip", "10.1.2.3")], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("db-ip.com"), "the picker credits DB-IP");
    assert_secured(&r, "picker");
    // "Change city": the picker even for a visitor whose cookie names a city.
    let r = edge
        .request(
            "GET",
            &apex,
            "/cities",
            &[("cookie", "cb_city=newyork"), ("accept", "text/html")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("/choose?city=london"), "{}", r.text());
    assert!(r.text().contains("IP Geolocation by DB-IP"));
    assert_secured(&r, "/cities");
}

/// Asserts that `r` carries every security header, with the edge's values.
#[track_caller]
fn assert_secured(r: &http::Response, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(r.header(name), Some(*value), "{what}: {name}");
    }
}

/// `route="/post/{id}"` GETs the apis have answered, all regions together.
async fn origin_post_reads(edge: &StackEdge) -> u64 {
    let mut total = 0;
    for region in &edge.state.regions {
        let r = http::request(region.operator_port, "GET", "/metrics", &[], b"")
            .await
            .expect("metrics");
        total += r
            .text()
            .lines()
            .filter(|l| {
                l.starts_with("cityboard_http_requests_total{")
                    && l.contains("route=\"/post/{id}\"")
                    && l.contains("method=\"GET\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[tokio::test]
async fn a_page_written_through_the_kv_route_is_served_without_the_origin() {
    let edge = StackEdge::shared();
    // An id no origin has: an origin request could only answer 404.
    let id = 8_000_000_000_000 + u64::from(std::process::id());
    let page = format!(
        "<!doctype html><title>edge test {id}</title><p>{}</p>",
        "x".repeat(2000)
    );
    let expires = chrono::Utc::now().timestamp() + 3600;
    let meta = PostMeta::page("newyork", 1, expires).with_template(template_version());
    // The same page rendered with another template: the edge leaves it to
    // the origin (which has no such post).
    let old_id = id + 1;
    let old_meta =
        PostMeta::page("newyork", 1, expires).with_template(template_version().wrapping_add(1));
    let writes = vec![
        BulkWrite {
            key: post_key(id),
            value: page.clone(),
            metadata: Some(serde_json::to_value(&meta).unwrap()),
            expiration_ttl: None,
        },
        BulkWrite {
            key: post_key(old_id),
            value: page.clone(),
            metadata: Some(serde_json::to_value(&old_meta).unwrap()),
            expiration_ttl: None,
        },
    ];
    let body = serde_json::to_vec(&writes).unwrap();
    let host = edge.host(None);
    let fields = sign::Request {
        method: "POST",
        host: &host,
        path_and_query: BULK_PATH,
        client_ip: "",
        city: "",
        body_sha256: sign::body_sha256(&body),
        content_type: "application/json",
    };
    let key = edge.secret(KV_ROUTE_KEY_FILE);
    let signature = sign::sign(&key, &fields, chrono::Utc::now().timestamp(), &nonce());
    let headers = [
        (SIGNATURE_HEADER, signature.as_str()),
        ("content-type", "application/json"),
    ];
    let r = edge
        .request("POST", &host, BULK_PATH, &headers, &body)
        .await;
    assert_eq!(r.status, 200, "bulk write: {}", r.text());
    let result: BulkResult = serde_json::from_slice(&r.body).expect("bulk result");
    assert_eq!((result.written, result.skipped_older), (2, 0));
    // The same signed request again is a replay.
    let again = edge
        .request("POST", &host, BULK_PATH, &headers, &body)
        .await;
    assert_eq!(again.status, 401, "{}", again.text());

    let city = edge.host(Some("newyork"));
    let path = format!("/post/{id}");
    let accept = [("accept", "text/html,application/xhtml+xml")];
    // Other tests read posts from the same apis at the same time, so a
    // round that saw origin reads is measured again; the edge going to the
    // origin would show in every round (20 reads each).
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let before = origin_post_reads(&edge).await;
        for _ in 0..20 {
            let r = edge.request("GET", &city, &path, &accept, b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.text(), page);
            assert_eq!(
                r.header("etag"),
                Some(cityboard_protocol::kv::etag(id, &meta).as_str())
            );
            assert_secured(&r, "KV page");
        }
        let after = origin_post_reads(&edge).await;
        rounds.push(after - before);
        if after == before {
            break;
        }
    }
    assert_eq!(
        rounds.last(),
        Some(&0),
        "origin post reads per round of 20 edge reads: {rounds:?}"
    );

    // The page of another template is the origin's answer: its HTML 404
    // (it knows no such post), with the same headers.
    let r = edge
        .request("GET", &city, &format!("/post/{old_id}"), &accept, b"")
        .await;
    assert_eq!(r.header("x-cityboard-edge"), Some("kv-template"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_ne!(r.text(), page);
    assert_secured(&r, "origin page of an old-template post");
}

fn nonce() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

#[tokio::test]
async fn a_signup_through_the_edge_is_created_and_a_replayed_signature_refused() {
    let edge = StackEdge::shared();
    let email = format!("edge-{}-{}@example.com", std::process::id(), nonce());
    let body = json!({"email": email, "password": "correct horse battery staple"}).to_string();
    let city = edge.host(Some("newyork"));
    let r = edge
        .request(
            "POST",
            &city,
            "/signup",
            &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("cf-connecting-ip", "203.0.113.7"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "signup through the edge: {}", r.text());

    // The origin's side of replay protection: one signed request, sent
    // twice, byte for byte, straight to the api.
    let region = edge.region_of("newyork");
    let api = edge.api_port(&region);
    let email = format!("edge-replay-{}-{}@example.com", std::process::id(), nonce());
    let body = json!({"email": email, "password": "correct horse battery staple"}).to_string();
    let public_host = format!("newyork.{}", edge.apex);
    let fields = sign::Request {
        method: "POST",
        host: &public_host,
        path_and_query: "/signup",
        client_ip: "203.0.113.8",
        city: "newyork",
        body_sha256: sign::body_sha256(body.as_bytes()),
        content_type: "application/json",
    };
    let signature = sign::sign(
        &edge.secret(FORWARD_KEY_FILE),
        &fields,
        chrono::Utc::now().timestamp(),
        &nonce(),
    );
    let headers = [
        (SIGNATURE_HEADER, signature.as_str()),
        (sign::FORWARDED_HOST_HEADER, public_host.as_str()),
        (sign::CITY_HEADER, "newyork"),
        (sign::CLIENT_IP_HEADER, "203.0.113.8"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    let first = http::request(api, "POST", "/signup", &headers, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(first.status, 201, "signed signup: {}", first.text());
    let replay = http::request(api, "POST", "/signup", &headers, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(replay.status, 401, "replayed signature: {}", replay.text());
}

#[tokio::test]
async fn a_log_in_flood_on_one_account_through_the_edge_is_refused_but_not_its_owner() {
    // The shared stack keeps the default failed log-in limit per account
    // (10 per 15 minutes; deploy/limits-load.toml), and the edge passes on
    // each visitor's own address.
    let edge = StackEdge::shared();
    let city = edge.host(Some("newyork"));
    let email = format!("flooded-{}-{}@example.com", std::process::id(), nonce());
    let right = json!({"email": email, "password": "correct horse battery staple"}).to_string();
    let wrong = json!({"email": email, "password": "not the password at all"}).to_string();
    let send = |body: &str, ip: String, cookie: Option<String>| {
        let edge = &edge;
        let city = city.clone();
        let body = body.to_string();
        async move {
            let mut headers = vec![
                ("content-type", "application/json".to_string()),
                ("accept", "application/json".to_string()),
                ("cf-connecting-ip", ip),
            ];
            if let Some(c) = cookie {
                headers.push(("cookie", format!("cb_device={c}")));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            edge.request("POST", &city, "/login", &headers, body.as_bytes())
                .await
        }
    };
    let owner_ip = || "198.51.100.10".to_string();
    let r = edge
        .request(
            "POST",
            &city,
            "/signup",
            &[
                ("content-type", "application/json"),
                ("cf-connecting-ip", "198.51.100.10"),
            ],
            right.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = send(&right, owner_ip(), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let device = device_cookie(&r).expect("a device cookie through the edge");

    // The attacker, from a new address each time.
    let attacker = |i: u32| format!("192.0.2.{}", 1 + i % 250);
    let mut limited = 0;
    for i in 0..14 {
        let r = send(&wrong, attacker(i), None).await;
        match r.status {
            401 => assert!(i < 10, "attempt {i} was checked: {}", r.text()),
            429 => {
                limited += 1;
                let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=90).contains(&after), "Retry-After {after}");
            }
            other => panic!("attempt {i}: {other} {}", r.text()),
        }
    }
    assert_eq!(limited, 4);
    // A fresh browser is limited like the attacker; the owner's is not.
    assert_eq!(send(&right, owner_ip(), None).await.status, 429);
    let r = send(&right, owner_ip(), Some(device)).await;
    assert_eq!(r.status, 200, "the owner's browser: {}", r.text());
}
