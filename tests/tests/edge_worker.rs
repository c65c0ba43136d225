//! The edge Worker in bare workerd (issue 6, acceptance 1): every route and
//! fault, driven over HTTP. Each test starts its own runtime (workerd + the
//! real KV service + fake origins, `cityboard_tests::edge`), so they run in
//! parallel and need no stack. The Worker must be built (deploy/test does).

use std::time::{Duration, Instant};

use cityboard_protocol::headers::{CONTENT_SECURITY_POLICY, SECURITY_HEADERS};
use cityboard_protocol::kv::{BulkResult, BulkWrite, PostMeta, Route, post_key, route_key};
use cityboard_protocol::sign::SIGNATURE_HEADER;
use cityboard_tests::EdgeRequests;
use cityboard_tests::edge::{
    APEX, ASSET_CACHE_CONTROL, Behaviour, EdgeRuntime, FORWARD_SECRET, FakeOrigin, HTML_PATH,
    KV_ROUTE_SECRET, Options, nonce, unix_now,
};

const PAGE: &str = "<!doctype html><title>Bike</title><h1>A red bike</h1>";
const JSON: (&str, &str) = ("accept", "application/json");

/// Options of a runtime whose us-east origin is `us` and eu-west origin is `eu`.
fn options(us: &str, eu: &str, bulk_route: bool) -> Options {
    Options {
        origins: vec![("us-east".into(), us.into()), ("eu-west".into(), eu.into())],
        bulk_route,
        origin_timeout_ms: 800,
        page_cache_ms: None,
        embedded_database: false,
        template_version: None,
        production_build: false,
    }
}

/// A runtime whose us-east origin is `us` and eu-west origin is `eu`.
async fn runtime(name: &str, us: &str, eu: &str, bulk_route: bool) -> EdgeRuntime {
    EdgeRuntime::start(name, options(us, eu, bulk_route)).await
}

/// A page of `city` at `version` in KV, written straight to the KV service.
async fn put_page(edge: &EdgeRuntime, id: u64, city: &str, version: i64, html: &str) {
    let meta =
        serde_json::to_value(PostMeta::page(city, version, unix_now() + 7 * 86_400)).unwrap();
    edge.kv
        .put(&post_key(id), html.as_bytes(), Some(&meta), None)
        .await
        .expect("seed a page");
}

/// A read-your-writes cookie value as the origin of the test runtimes
/// seals it (with the key derived from their forwarding key).
fn sealed(value: &str, issued: i64) -> String {
    let ryw = value.parse().expect("a cookie value");
    let key = cityboard_protocol::ryw::cookie_key(FORWARD_SECRET.as_bytes());
    cityboard_protocol::ryw::seal(&ryw, &key, issued)
}

fn host(city: &str) -> String {
    format!("{city}.{APEX}")
}

#[tokio::test]
async fn apex_sends_visitors_by_cookie_then_cf_then_ip_else_to_the_picker() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("apex", &us.url(), &eu.url(), false).await;
    let port = edge.port;
    let at = |city: &str| format!("http://{city}.{APEX}:{port}/");

    // The visitor's own choice wins over where they are.
    let res = edge
        .browse(
            APEX,
            "/",
            &[
                ("cookie", "cb_city=boston"),
                ("x-forwarded-for", "81.2.69.10"),
            ],
        )
        .await;
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some(at("boston").as_str()))
    );
    assert_eq!(res.header("cache-control"), Some("private, no-store"));
    assert_eq!(res.header("x-cityboard-located-by"), Some("cookie"));
    // The same answer again is the isolate's kept redirect (respond.rs),
    // every header of it.
    for _ in 0..2 {
        let again = edge
            .browse(APEX, "/", &[("cookie", "cb_city=boston")])
            .await;
        assert_eq!(
            (again.status, again.header("location")),
            (302, Some(at("boston").as_str()))
        );
        assert_eq!(again.header("cache-control"), Some("private, no-store"));
        assert_eq!(again.header("x-cityboard-located-by"), Some("cookie"));
    }

    // cf coordinates (Versailles) place a visitor; Cloudflare sends strings.
    let cf = r#"{"country":"FR","latitude":"48.80","longitude":"2.13","colo":"CDG"}"#;
    let res = edge
        .browse(
            APEX,
            "/",
            &[("cf-blob", cf), ("cookie", "cb_city=atlantis")],
        )
        .await;
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some(at("paris").as_str()))
    );
    assert_eq!(res.header("x-cityboard-located-by"), Some("cf"));
    assert_eq!(res.header("cache-control"), Some("private, no-store"));

    // A partial cf object (no coordinates) falls back to the IP.
    for (cf, ip, city) in [
        (r#"{"country":"GB"}"#, "81.2.69.10", "london"),
        (r#"{}"#, "3.0.1.2", "newyork"),
        (
            r#"{"latitude":null,"longitude":"x"}"#,
            "::ffff:18.204.1.1",
            "boston",
        ),
    ] {
        let res = edge
            .browse(APEX, "/", &[("cf-blob", cf), ("x-forwarded-for", ip)])
            .await;
        assert_eq!(
            (res.status, res.header("location")),
            (302, Some(at(city).as_str())),
            "{cf} {ip}: {}",
            res.text()
        );
        assert_eq!(res.header("x-cityboard-located-by"), Some("ip"));
    }
    // X-Forwarded-For: the first entry is the client.
    let res = edge
        .browse(APEX, "/", &[("x-forwarded-for", "2.16.5.5, 10.0.0.1")])
        .await;
    assert_eq!(res.header("location"), Some(at("paris").as_str()));

    // Nobody places these visitors: the picker, grouped by region, with the credit.
    for headers in [
        vec![("x-forwarded-for", "8.8.8.8")],
        vec![("x-forwarded-for", "127.0.0.1")],
        // In the test database, but the Worker's table is IPv4 only.
        vec![("x-forwarded-for", "2600:1f18::1")],
        vec![("x-forwarded-for", "not an ip")],
        vec![(
            "cf-blob",
            r#"{"country":"JP","latitude":35.68,"longitude":139.69}"#,
        )],
        vec![],
    ] {
        let res = edge.browse(APEX, "/", &headers).await;
        assert_eq!(res.status, 200, "{headers:?}");
        let page = res.text();
        assert!(page.contains("Choose your city"), "{page}");
        assert!(
            page.contains("<h2>us-east</h2>") && page.contains("<h2>eu-west</h2>"),
            "{page}"
        );
        assert!(
            page.contains(&format!("http://{APEX}:{port}/choose?city=london")),
            "{page}"
        );
        assert!(
            page.contains("<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>"),
            "{page}"
        );
        assert_eq!(res.header("cache-control"), Some("private, no-store"));
    }

    // Choosing sets the cookie and goes there.
    let res = edge.browse(APEX, "/choose?city=london", &[]).await;
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some(at("london").as_str()))
    );
    let cookie = res.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.starts_with("cb_city=london;") && cookie.contains("Path=/"),
        "{cookie}"
    );
    // A city that is not served: 404 with the picker.
    let res = edge.browse(APEX, "/choose?city=atlantis", &[]).await;
    assert_eq!(res.status, 404);
    assert!(res.text().contains("Choose your city"));

    // Hosts that are not ours and cities not served: 404 with the picker, no origin call.
    for h in [
        "evil.example",
        &host("atlantis"),
        &format!("a.b.{APEX}"),
        "127.0.0.1",
    ] {
        let res = edge.browse(h, "/post/1", &[]).await;
        assert_eq!(res.status, 404, "{h}");
        assert!(
            res.text().contains("Choose your city"),
            "{h}: {}",
            res.text()
        );
        let res = edge.request("GET", h, "/", &[JSON], b"").await;
        assert_eq!(res.status, 404, "{h}");
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
    }
    // The bulk route is off without KV_ROUTE_KEY.
    let res = edge
        .bulk(b"[]", KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert_eq!(us.hits() + eu.hits(), 0);
}

#[tokio::test]
async fn post_pages_come_from_kv_without_touching_the_origin() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("pages", &us.url(), &eu.url(), false).await;
    let boston = host("boston");
    put_page(&edge, 101, "boston", 3, PAGE).await;

    // Hit: the stored bytes, an ETag, no origin call.
    let res = edge.browse(&boston, "/post/101", &[]).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), PAGE);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.header("x-cityboard-edge"), Some("kv-hit"));
    let etag = res.header("etag").expect("an etag").to_string();
    assert_eq!(
        etag,
        cityboard_protocol::kv::etag(101, &PostMeta::page("boston", 3, 0))
    );
    // Revalidation: 304, no body.
    let res = edge
        .browse(&boston, "/post/101", &[("if-none-match", &etag)])
        .await;
    assert_eq!((res.status, res.body.len()), (304, 0));
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    let res = edge
        .browse(&boston, "/post/101", &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(res.status, 200);
    // A big page streams through whole.
    let big = format!("<p>{}</p>", "x".repeat(300_000));
    put_page(&edge, 102, "boston", 1, &big).await;
    assert_eq!(edge.browse(&boston, "/post/102", &[]).await.text(), big);
    assert_eq!(us.hits() + eu.hits(), 0, "KV hits must not reach an origin");

    // Read-your-writes: a cookie the origin sealed naming a newer version
    // (or a pending write) of this post sends the read to the origin; an
    // older one, another post, an unsealed, forged or expired one does not.
    let now = chrono::Utc::now().timestamp();
    let forged = sealed("p.77.101", now).replacen("p.77.", "p.78.", 1);
    let cases = [
        (sealed("a.1.shard-1.16B3D28.101.4", now), true),
        (sealed("p.77.101", now), true),
        (sealed("a.1.shard-1.16B3D28.101.3", now), false),
        (sealed("a.1.shard-1.16B3D28.999.9", now), false),
        ("p.77.101".to_string(), false),
        (forged, false),
        (sealed("p.77.101", now - 601), false),
        ("garbage".to_string(), false),
    ];
    for (value, to_origin) in cases {
        let cookie = format!("cb_ryw={value}");
        let cookie = cookie.as_str();
        let before = us.hits();
        let res = edge
            .browse(&boston, "/post/101", &[("cookie", cookie)])
            .await;
        assert_eq!(res.status, 200);
        assert_eq!(us.hits() - before, usize::from(to_origin), "{cookie}");
        if to_origin {
            assert_eq!(res.header("x-cityboard-edge"), Some("kv-stale"));
            assert!(
                res.text().starts_with("origin us GET /post/101"),
                "{}",
                res.text()
            );
        }
    }

    // Miss: the city's region origin, signed; never a 404 of the edge's own.
    let res = edge.browse(&boston, "/post/555", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-cityboard-edge"), Some("kv-miss"));
    assert_eq!(res.text(), "origin us GET /post/555 city=boston");
    let seen = us.seen().pop().expect("the origin saw the miss");
    assert_eq!(seen.signature, Ok(()), "{seen:?}");
    assert_eq!(
        seen.headers.get("x-forwarded-host").map(String::as_str),
        Some(format!("{boston}:{}", edge.port).as_str())
    );
    assert_eq!(
        seen.headers.get("x-cityboard-city").map(String::as_str),
        Some("boston")
    );
    // JSON readers always get the origin's answer.
    let before = us.hits();
    let res = edge
        .request("GET", &boston, "/post/101", &[JSON], b"")
        .await;
    assert_eq!((res.status, us.hits() - before), (200, 1));
    // A London page asked for on the Paris host goes to the eu origin on a miss.
    let res = edge.browse(&host("paris"), "/post/556", &[]).await;
    assert_eq!(res.text(), "origin eu GET /post/556 city=paris");

    // Tombstone: 410 page. Another city's page: 301 to its canonical host.
    let tomb = serde_json::to_value(PostMeta::tombstone(5)).unwrap();
    edge.kv
        .put(&post_key(103), b"", Some(&tomb), Some(3600))
        .await
        .unwrap();
    let res = edge.browse(&boston, "/post/103", &[]).await;
    assert_eq!(res.status, 410);
    assert!(res.text().contains("Gone"));
    put_page(&edge, 104, "london", 1, PAGE).await;
    let res = edge.browse(&boston, "/post/104", &[]).await;
    assert_eq!(res.status, 301);
    assert_eq!(
        res.header("location"),
        Some(format!("http://london.{APEX}:{}/post/104", edge.port).as_str())
    );
    // An expired page (the janitor's tombstone not there yet): the origin decides.
    let meta = serde_json::to_value(PostMeta::page("boston", 1, unix_now() - 10)).unwrap();
    edge.kv
        .put(&post_key(105), PAGE.as_bytes(), Some(&meta), None)
        .await
        .unwrap();
    let res = edge.browse(&boston, "/post/105", &[]).await;
    assert_eq!(res.header("x-cityboard-edge"), Some("kv-expired"));
    assert_eq!(eu.hits(), 1);
}

#[tokio::test]
async fn an_origin_answering_421_makes_the_worker_reread_the_route_and_retry_once() {
    let old = FakeOrigin::start("old").await;
    let new = FakeOrigin::start("new").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("reroute", &old.url(), &eu.url(), false).await;
    let boston = host("boston");
    // The city moved: the old region answers 421 (after the route moved in KV).
    let route = Route {
        region: "us-west".into(),
        origin: new.url(),
    };
    old.behave(Behaviour::Misdirected {
        moved_to: Some((edge.kv.clone(), route, "boston".into())),
    });
    let res = edge
        .request("GET", &boston, "/post?search=bike", &[JSON], b"")
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "origin new GET /post?search=bike city=boston");
    assert_eq!((old.hits(), new.hits()), (1, 1));
    assert_eq!(
        new.seen()[0].signature,
        Ok(()),
        "the retry is signed afresh"
    );
    assert_ne!(
        old.seen()[0].headers[SIGNATURE_HEADER],
        new.seen()[0].headers[SIGNATURE_HEADER],
        "a new nonce, not a replay"
    );
    // From now on the route in KV is used directly; writes too.
    let res = edge.request("POST", &boston, "/post", &[JSON], b"{}").await;
    assert_eq!(res.text(), "origin new POST /post city=boston");
    assert_eq!((old.hits(), new.hits()), (1, 2));

    // A 421 whose route did not change: one retry only, then the 421 goes back.
    let eu_before = eu.hits();
    eu.behave(Behaviour::Misdirected { moved_to: None });
    let res = edge
        .request("GET", &host("paris"), "/me", &[JSON], b"")
        .await;
    assert_eq!(res.status, 421);
    assert_eq!(eu.hits() - eu_before, 2);
    // A route in KV for a city wins over the configured region.
    edge.kv
        .put(
            &route_key("london"),
            serde_json::to_string(&Route {
                region: "x".into(),
                origin: new.url(),
            })
            .unwrap()
            .as_bytes(),
            None,
            None,
        )
        .await
        .unwrap();
    let res = edge
        .request("GET", &host("london"), "/me", &[JSON], b"")
        .await;
    assert_eq!(res.text(), "origin new GET /me city=london");
}

#[tokio::test]
async fn with_the_origin_down_kv_hits_are_served_and_the_rest_is_503() {
    let down = format!("http://127.0.0.1:{}", cityboard_tests::edge::free_port());
    let slow = FakeOrigin::start("slow").await;
    slow.behave(Behaviour::Slow(Duration::from_secs(5)));
    let edge = runtime("down", &down, &slow.url(), false).await;
    let boston = host("boston");
    put_page(&edge, 201, "boston", 1, PAGE).await;
    put_page(&edge, 202, "paris", 1, PAGE).await;

    for city in ["boston", "paris"] {
        let id = if city == "boston" { 201 } else { 202 };
        let res = edge.browse(&host(city), &format!("/post/{id}"), &[]).await;
        assert_eq!((res.status, res.text().as_str()), (200, PAGE), "{city}");
    }
    // Down (refused) and slow (over ORIGIN_TIMEOUT_MS): 503 with Retry-After,
    // an HTML page for browsers, a problem document otherwise.
    for city in ["boston", "paris"] {
        let h = host(city);
        let started = Instant::now();
        let res = edge.browse(&h, "/post/299", &[]).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{city}: the timeout holds"
        );
        assert_eq!(res.status, 503, "{city}: {}", res.text());
        assert!(res.header("retry-after").is_some());
        assert!(res.text().contains("Service unavailable"));
        // Nothing of the runtime's own error (addresses, the timeout's
        // reason) reaches the visitor.
        for internal in ["127.0.0.1", "timeout", "fetch", "refused"] {
            assert!(
                !res.text().to_lowercase().contains(internal),
                "{city}: {internal:?} in the page: {}",
                res.text()
            );
        }
        assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
        for (method, path) in [
            ("GET", "/post?search=x"),
            ("POST", "/post"),
            ("DELETE", "/post/1"),
        ] {
            let res = edge.request(method, &h, path, &[JSON], b"{}").await;
            assert_eq!(res.status, 503, "{method} {path}");
            assert!(res.header("retry-after").is_some());
            let problem: serde_json::Value =
                serde_json::from_slice(&res.body).expect("problem json");
            assert_eq!(problem["status"], 503);
            assert!(
                problem["type"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("/origin-unavailable")
            );
        }
    }
    assert!(slow.hits() >= 4);
    // The Worker is still healthy afterwards (no exception reset it).
    let res = edge.browse(&boston, "/post/201", &[]).await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn writes_go_to_the_origin_signed_unfollowed_and_limited() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("writes", &us.url(), &eu.url(), false).await;
    let boston = host("boston");
    let body = br#"{"title":"bike","price":100}"#;
    let res = edge
        .request(
            "POST",
            &boston,
            "/post?x=1",
            &[
                JSON,
                ("content-type", "application/json"),
                ("cookie", "cb_session=abc"),
                ("x-forwarded-for", "3.0.9.9"),
                ("forwarded", "for=6.6.6.6"),
                ("x-real-ip", "6.6.6.7"),
                // A visitor cannot supply what the Worker signs.
                ("x-cityboard-city", "paris"),
                ("x-cityboard-signature", "v1 forged"),
            ],
            body,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = us.seen().pop().expect("the origin got the write");
    assert_eq!(
        (seen.method.as_str(), seen.path_and_query.as_str()),
        ("POST", "/post?x=1")
    );
    assert_eq!(seen.body, body);
    assert_eq!(
        seen.signature,
        Ok(()),
        "the host-side verifier (version 2 only) accepts the Worker's signature"
    );
    let signature = &seen.headers[SIGNATURE_HEADER];
    assert!(signature.starts_with("v2 "), "{signature}");
    // Version 2 covers the Content-Type the origin gets: another one on
    // the same bytes fails the host-side verifier.
    let fields = cityboard_protocol::sign::Request {
        method: "POST",
        host: &seen.headers["x-forwarded-host"],
        path_and_query: "/post?x=1",
        client_ip: "3.0.9.9",
        city: "boston",
        body_sha256: cityboard_protocol::sign::body_sha256(body),
        content_type: "text/plain",
    };
    let keyring = cityboard_protocol::sign::Keyring::new(cityboard_protocol::sign::Key::new(
        FORWARD_SECRET.as_bytes().to_vec(),
    ));
    let now = cityboard_protocol::sign::Signature::parse(signature)
        .unwrap()
        .timestamp;
    assert_eq!(
        keyring.verify(signature, &fields, now),
        Err(cityboard_protocol::sign::SignatureError::BadMac)
    );
    assert!(
        keyring
            .verify(
                signature,
                &cityboard_protocol::sign::Request {
                    content_type: "application/json",
                    ..fields
                },
                now
            )
            .is_ok()
    );
    assert_eq!(seen.headers["x-cityboard-city"], "boston");
    assert_eq!(seen.headers["x-cityboard-client-ip"], "3.0.9.9");
    assert_eq!(seen.headers["cookie"], "cb_session=abc");
    assert!(!seen.headers.contains_key("cf-blob"));
    // A client's own claims of its address never reach the origin.
    for claim in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        assert!(!seen.headers.contains_key(claim), "{claim} passed on");
    }
    for method in ["PUT", "DELETE", "PATCH"] {
        let res = edge
            .request(method, &boston, "/post/7", &[JSON], b"{}")
            .await;
        assert_eq!(
            res.text(),
            format!("origin us {method} /post/7 city=boston")
        );
    }
    // Redirects are the browser's to follow, not the Worker's.
    us.behave(Behaviour::Redirect(format!("{}/elsewhere", eu.url())));
    let res = edge
        .request("POST", &boston, "/login", &[], b"user=a")
        .await;
    assert_eq!(res.status, 302);
    assert_eq!(
        res.header("location"),
        Some(format!("{}/elsewhere", eu.url()).as_str())
    );
    assert_eq!(eu.hits(), 0);
    us.behave(Behaviour::Normal);

    // Over 64 KiB: 413 at the edge.
    let before = us.hits();
    let res = edge
        .request(
            "POST",
            &boston,
            "/post",
            &[JSON],
            &vec![b'x'; 64 * 1024 + 1],
        )
        .await;
    assert_eq!(res.status, 413, "{}", res.text());
    let res = edge
        .request("POST", &boston, "/post", &[JSON], &vec![b'x'; 64 * 1024])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(us.hits() - before, 1);

    // Logged-in GETs always reach the origin.
    let before = us.hits();
    for _ in 0..2 {
        edge.request(
            "GET",
            &boston,
            "/post?search=a",
            &[JSON, ("cookie", "cb_session=t")],
            b"",
        )
        .await;
    }
    assert_eq!(us.hits() - before, 2);
}

#[tokio::test]
async fn bad_input_is_answered_at_the_edge_without_an_origin_call() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("bad-input", &us.url(), &eu.url(), false).await;
    let boston = host("boston");
    for path in [
        "/post/abc",
        "/post/0123",
        "/post/0",
        "/post/99999999999999999999",
        "/post/-1",
        "/post/1e5",
    ] {
        for accept in [JSON, ("accept", "text/html")] {
            let res = edge.request("GET", &boston, path, &[accept], b"").await;
            assert_eq!(res.status, 404, "{path}");
        }
        let res = edge.request("DELETE", &boston, path, &[JSON], b"").await;
        assert_eq!(res.status, 404, "DELETE {path}");
    }
    let long = format!("/post?search={}", "a".repeat(2100));
    let res = edge.request("GET", &boston, &long, &[JSON], b"").await;
    assert_eq!(res.status, 400);
    let huge = "x".repeat(9000);
    let res = edge
        .request("GET", &boston, "/post", &[JSON, ("x-junk", &huge)], b"")
        .await;
    assert_eq!(res.status, 400);
    let res = edge.request("GET", &boston, "/healthz", &[], b"").await;
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    // The origin's operator endpoints are not reachable through the edge,
    // on a city host or the apex.
    for (method, path) in [
        ("GET", "/metrics"),
        ("DELETE", "/old_posts"),
        ("GET", "/old_posts"),
    ] {
        for h in [boston.as_str(), APEX] {
            let res = edge.request(method, h, path, &[JSON], b"").await;
            assert_eq!(res.status, 404, "{method} {h}{path}");
        }
    }
    assert_eq!(us.hits() + eu.hits(), 0);
}

#[tokio::test]
async fn the_bulk_route_writes_newer_versions_and_refuses_bad_signatures() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("bulk", &us.url(), &eu.url(), true).await;
    let write = |id: u64, meta: PostMeta, value: &str| BulkWrite {
        key: post_key(id),
        value: value.into(),
        metadata: Some(serde_json::to_value(meta).unwrap()),
        expiration_ttl: None,
    };
    let exp = unix_now() + 86_400;
    let batch = vec![
        write(301, PostMeta::page("boston", 2, exp), "<p>v2</p>"),
        write(302, PostMeta::page("paris", 1, exp), "<p>paris</p>"),
        BulkWrite {
            key: route_key("boston"),
            value: serde_json::to_string(&Route {
                region: "us-east".into(),
                origin: us.url(),
            })
            .unwrap(),
            metadata: None,
            expiration_ttl: None,
        },
    ];
    let body = serde_json::to_vec(&batch).unwrap();
    let res = edge
        .bulk(&body, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let result: BulkResult = serde_json::from_slice(&res.body).unwrap();
    assert_eq!((result.written, result.skipped_older), (3, 0));
    let res = edge.browse(&host("boston"), "/post/301", &[]).await;
    assert_eq!((res.status, res.text().as_str()), (200, "<p>v2</p>"));

    // An older version never replaces a newer one; a tombstone does, and stays.
    let older =
        serde_json::to_vec(&[write(301, PostMeta::page("boston", 1, exp), "<p>v1</p>")]).unwrap();
    let res = edge
        .bulk(&older, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    let result: BulkResult = serde_json::from_slice(&res.body).unwrap();
    assert_eq!((result.written, result.skipped_older), (0, 1));
    assert_eq!(
        edge.browse(&host("boston"), "/post/301", &[]).await.text(),
        "<p>v2</p>"
    );
    let tomb = serde_json::to_vec(&[
        write(301, PostMeta::tombstone(2), ""),
        write(301, PostMeta::page("boston", 2, exp), "<p>v2 again</p>"),
    ])
    .unwrap();
    let res = edge
        .bulk(&tomb, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    let result: BulkResult = serde_json::from_slice(&res.body).unwrap();
    assert_eq!((result.written, result.skipped_older), (1, 1));
    assert_eq!(
        edge.browse(&host("boston"), "/post/301", &[]).await.status,
        410
    );
    let (_, meta) = edge
        .kv
        .get(&post_key(301))
        .await
        .unwrap()
        .expect("tombstone kept");
    assert_eq!(meta.unwrap()["gone"], true);

    // Forged (another key), stale, replayed, missing, tampered: 401.
    let fresh =
        serde_json::to_vec(&[write(303, PostMeta::page("boston", 1, exp), "<p>x</p>")]).unwrap();
    let res = edge
        .bulk(&fresh, FORWARD_SECRET, unix_now(), &nonce())
        .await;
    assert_eq!(res.status, 401, "another key: {}", res.text());
    let res = edge
        .bulk(&fresh, KV_ROUTE_SECRET, unix_now() - 120, &nonce())
        .await;
    assert_eq!(res.status, 401, "stale: {}", res.text());
    let n = nonce();
    let ts = unix_now();
    assert_eq!(edge.bulk(&fresh, KV_ROUTE_SECRET, ts, &n).await.status, 200);
    let res = edge.bulk(&fresh, KV_ROUTE_SECRET, ts, &n).await;
    assert_eq!(res.status, 401, "replayed: {}", res.text());
    assert!(res.text().contains("replayed"), "{}", res.text());
    let res = edge
        .request("POST", APEX, cityboard_protocol::kv::BULK_PATH, &[], &fresh)
        .await;
    assert_eq!(res.status, 401);
    let header = cityboard_tests::edge::bulk_signature(
        &format!("{APEX}:{}", edge.port),
        &fresh,
        KV_ROUTE_SECRET,
        unix_now(),
        &nonce(),
    );
    let res = edge
        .request(
            "POST",
            APEX,
            cityboard_protocol::kv::BULK_PATH,
            &[(SIGNATURE_HEADER, &header)],
            b"[]",
        )
        .await;
    assert_eq!(res.status, 401, "body changed after signing");

    // Version 2 covers the Content-Type: the same signed bytes sent as
    // another type are refused, and nothing is written.
    let header = cityboard_tests::edge::bulk_signature(
        &format!("{APEX}:{}", edge.port),
        &fresh,
        KV_ROUTE_SECRET,
        unix_now(),
        &nonce(),
    );
    let res = edge
        .request(
            "POST",
            APEX,
            cityboard_protocol::kv::BULK_PATH,
            &[(SIGNATURE_HEADER, &header), ("content-type", "text/plain")],
            &fresh,
        )
        .await;
    assert_eq!(res.status, 401, "another Content-Type: {}", res.text());
    // A publisher of before version 2 (version 1, which does not cover it)
    // is still accepted.
    let fresh_304 =
        serde_json::to_vec(&[write(304, PostMeta::page("boston", 1, exp), "<p>v1</p>")]).unwrap();
    let older = cityboard_tests::edge::bulk_signature_with(
        cityboard_protocol::sign::Version::V1,
        &format!("{APEX}:{}", edge.port),
        &fresh_304,
        KV_ROUTE_SECRET,
        unix_now(),
        &nonce(),
    );
    assert!(older.starts_with("v1 "), "{older}");
    let res = edge
        .request(
            "POST",
            APEX,
            cityboard_protocol::kv::BULK_PATH,
            &[(SIGNATURE_HEADER, &older)],
            &fresh_304,
        )
        .await;
    assert_eq!(res.status, 200, "a version 1 signature: {}", res.text());
    assert_eq!(
        edge.browse(&host("boston"), "/post/304", &[]).await.text(),
        "<p>v1</p>"
    );
    assert_eq!(us.hits() + eu.hits(), 0);
}

/// A runtime whose post pages are kept for `page_cache_ms` (both regions on `origin`).
async fn keeping_runtime(name: &str, origin: &str, page_cache_ms: u32) -> EdgeRuntime {
    let options = Options {
        page_cache_ms: Some(page_cache_ms),
        ..options(origin, origin, true)
    };
    EdgeRuntime::start(name, options).await
}

#[tokio::test]
async fn kept_pages_answer_until_written_through_this_isolate_and_never_hide_a_readers_write() {
    let us = FakeOrigin::start("us").await;
    // A minute: longer than the test, so what is kept stays kept.
    let edge = keeping_runtime("keep", &us.url(), 60_000).await;
    let boston = host("boston");
    put_page(&edge, 401, "boston", 1, "<p>v1</p>").await;
    let first = edge.browse(&boston, "/post/401", &[]).await;
    assert_eq!((first.status, first.text().as_str()), (200, "<p>v1</p>"));
    let etag = first.header("etag").expect("an etag").to_string();

    // Written behind this isolate's back (as another location's write
    // would be): the kept page answers, bytes and ETag, again and again.
    put_page(&edge, 401, "boston", 2, "<p>v2</p>").await;
    for _ in 0..3 {
        let res = edge.browse(&boston, "/post/401", &[]).await;
        assert_eq!((res.status, res.text().as_str()), (200, "<p>v1</p>"));
        assert_eq!(res.header("etag"), Some(etag.as_str()));
        assert_eq!(res.header("x-cityboard-edge"), Some("kv-hit"));
    }
    let res = edge
        .browse(&boston, "/post/401", &[("if-none-match", &etag)])
        .await;
    assert_eq!((res.status, res.body.len()), (304, 0));
    // The writer of version 2 is not shown the kept version 1.
    let res = edge
        .browse(
            &boston,
            "/post/401",
            &[(
                "cookie",
                &format!(
                    "cb_ryw={}",
                    sealed("a.1.shard-1.16B3D28.401.2", chrono::Utc::now().timestamp())
                ),
            )],
        )
        .await;
    assert_eq!(res.header("x-cityboard-edge"), Some("kv-stale"));
    assert_eq!(us.hits(), 1);

    // A write through the bulk route of this isolate shows at once, and so
    // does a tombstone.
    let write = |meta: PostMeta, value: &str| BulkWrite {
        key: post_key(401),
        value: value.into(),
        metadata: Some(serde_json::to_value(meta).unwrap()),
        expiration_ttl: None,
    };
    let v3 = serde_json::to_vec(&[write(
        PostMeta::page("boston", 3, unix_now() + 86_400),
        "<p>v3</p>",
    )])
    .unwrap();
    let res = edge.bulk(&v3, KV_ROUTE_SECRET, unix_now(), &nonce()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        edge.browse(&boston, "/post/401", &[]).await.text(),
        "<p>v3</p>"
    );
    let gone = serde_json::to_vec(&[write(PostMeta::tombstone(4), "")]).unwrap();
    let res = edge
        .bulk(&gone, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(edge.browse(&boston, "/post/401", &[]).await.status, 410);
    put_page(&edge, 401, "boston", 5, "<p>v5</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/401", &[]).await.status,
        410,
        "tombstones are kept too"
    );

    // A miss is not kept: the page published a moment later shows next time.
    let res = edge.browse(&boston, "/post/402", &[]).await;
    assert_eq!(res.header("x-cityboard-edge"), Some("kv-miss"));
    put_page(&edge, 402, "boston", 1, "<p>new</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/402", &[]).await.text(),
        "<p>new</p>"
    );
    assert_eq!(us.hits(), 2);
}

#[tokio::test]
async fn with_page_keeping_off_every_page_is_read_from_kv() {
    let us = FakeOrigin::start("us").await;
    let edge = keeping_runtime("nokeep", &us.url(), 0).await;
    let boston = host("boston");
    put_page(&edge, 411, "boston", 1, "<p>v1</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/411", &[]).await.text(),
        "<p>v1</p>"
    );
    put_page(&edge, 411, "boston", 2, "<p>v2</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/411", &[]).await.text(),
        "<p>v2</p>"
    );
    assert_eq!(us.hits(), 0);
}

#[tokio::test]
async fn a_panic_resets_the_wasm_instance_and_the_next_request_is_answered() {
    let us = FakeOrigin::start("us").await;
    // Kept for a minute, so that only a reset instance forgets the page.
    let edge = keeping_runtime("panic", &us.url(), 60_000).await;
    let boston = host("boston");
    put_page(&edge, 501, "boston", 1, "<p>v1</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/501", &[]).await.text(),
        "<p>v1</p>"
    );
    put_page(&edge, 501, "boston", 2, "<p>v2</p>").await;
    assert_eq!(
        edge.browse(&boston, "/post/501", &[]).await.text(),
        "<p>v1</p>"
    );

    // The trap fails only the request that caused it.
    let res = edge
        .request("POST", APEX, "/__cityboard/test/panic", &[], b"")
        .await;
    assert_eq!(res.status, 500, "{}", res.text());

    // The next request runs on a fresh instance (the glue's call guard, or
    // edge/entry.js for a trap that escapes it): it answers,
    // and what the old instance kept is gone, so KV's version 2 shows.
    let res = edge.browse(&boston, "/post/501", &[]).await;
    assert_eq!((res.status, res.text().as_str()), (200, "<p>v2</p>"));
    let res = edge
        .request("GET", APEX, "/", &[("cookie", "cb_city=boston")], b"")
        .await;
    assert_eq!(res.status, 302);
    assert_eq!(us.hits(), 0);
}

#[tokio::test]
async fn known_answer_vectors_pass_inside_the_wasm_build() {
    let us = FakeOrigin::start("us").await;
    let edge = runtime("vectors", &us.url(), &us.url(), false).await;
    let res = edge
        .request("GET", APEX, "/__cityboard/test/vectors", &[], b"")
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let passed: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let expected = cityboard_protocol::vectors().len();
    assert!(expected > 0);
    assert_eq!(passed["passed"], expected, "{passed}");
    assert!(
        cityboard_protocol::vectors().iter().any(|v| v.version == 1)
            && cityboard_protocol::vectors().iter().any(|v| v.version == 2),
        "both scheme versions are among the vectors"
    );
    // Each vector's fields signed by the Worker with its own key, in the
    // vector's version, equal the host-side signature with that key; and
    // without a version the Worker signs the current one.
    let key = cityboard_protocol::sign::Key::new(FORWARD_SECRET.as_bytes().to_vec());
    for v in cityboard_protocol::vectors() {
        let input = serde_json::json!({
            "method": v.method, "host": v.host, "path_and_query": v.path_and_query,
            "client_ip": v.client_ip, "city": v.city, "body": v.body,
            "timestamp": v.timestamp, "nonce": v.nonce,
            "content_type": v.content_type, "version": v.version,
        });
        let res = edge
            .request(
                "POST",
                APEX,
                "/__cityboard/test/sign",
                &[],
                input.to_string().as_bytes(),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let got: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        let version = v.scheme().expect("a known version");
        let want =
            cityboard_protocol::sign::sign_with(version, &key, &v.request(), v.timestamp, &v.nonce);
        assert_eq!(got["header"], want, "vector {}", v.name);
    }
    let v = &cityboard_protocol::vectors()[0];
    let input = serde_json::json!({
        "method": v.method, "host": v.host, "path_and_query": v.path_and_query,
        "client_ip": v.client_ip, "city": v.city, "body": v.body,
        "timestamp": v.timestamp, "nonce": v.nonce, "content_type": v.content_type,
    });
    let res = edge
        .request(
            "POST",
            APEX,
            "/__cityboard/test/sign",
            &[],
            input.to_string().as_bytes(),
        )
        .await;
    let got: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let want = cityboard_protocol::sign::sign(&key, &v.request(), v.timestamp, &v.nonce);
    assert!(want.starts_with("v2 "), "{want}");
    assert_eq!(got["header"], want);
}

/// The production Worker (`edge/build`, built without the `test-mode`
/// feature), given the test runtime's bindings with `TEST_MODE=1`, has no
/// test mode: no test routes, no `X-Forwarded-For` override, no
/// `x-cityboard-located-by` header. The binding is ignored (a warning in
/// the log), not an error: the Worker serves as production does.
#[tokio::test]
async fn the_production_build_ignores_test_mode() {
    let us = FakeOrigin::start("us").await;
    let edge = EdgeRuntime::start(
        "production",
        Options {
            production_build: true,
            ..options(&us.url(), &us.url(), false)
        },
    )
    .await;
    let port = edge.port;

    // The test routes are not there: the apex answers them as any path
    // (the picker for a read, 405 for a write); nothing panics.
    let res = edge
        .request("GET", APEX, "/__cityboard/test/vectors", &[JSON], b"")
        .await;
    assert!(!res.text().contains("passed"), "{}", res.text());
    for route in ["/__cityboard/test/sign", "/__cityboard/test/panic"] {
        let res = edge.request("POST", APEX, route, &[], b"{}").await;
        assert_eq!(res.status, 405, "{route}: {}", res.text());
    }

    // X-Forwarded-For places nobody (the test build sends this visitor to
    // London): without Cloudflare's address, the picker.
    let res = edge
        .browse(APEX, "/", &[("x-forwarded-for", "81.2.69.10")])
        .await;
    assert_eq!(res.status, 200, "{:?}", res.header("location"));
    assert_eq!(res.header("location"), None);

    // A redirect says nothing of how the visitor was placed.
    let cf = r#"{"country":"FR","latitude":"48.80","longitude":"2.13"}"#;
    let res = edge.browse(APEX, "/", &[("cf-blob", cf)]).await;
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some(format!("http://paris.{APEX}:{port}/").as_str()))
    );
    assert_eq!(res.header("x-cityboard-located-by"), None);

    // A write reaches the origin signed, with the client's address claim
    // dropped, not believed.
    let res = edge
        .request(
            "POST",
            &host("boston"),
            "/post",
            &[
                JSON,
                ("content-type", "application/json"),
                ("x-forwarded-for", "3.0.9.9"),
            ],
            b"{}",
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = us.seen().pop().expect("the origin got the write");
    assert_eq!(seen.signature, Ok(()));
    let client_ip = seen.headers.get("x-cityboard-client-ip");
    assert_eq!(client_ip.map(String::as_str).unwrap_or(""), "");
    assert!(!seen.headers.contains_key("x-forwarded-for"));
}

#[tokio::test]
async fn the_embedded_city_database_places_real_addresses() {
    // deploy/build-edge.sh compiles it from the default topology (DB-IP Lite)
    // and embeds the range table made from it, which answers every IPv4
    // address as the database does (geo-router's tests/range_table.rs); the
    // test cities are among the topology's.
    // (or the one CITYBOARD_EDGE_MMDB named for the build).
    let mmdb = std::env::var_os("CITYBOARD_EDGE_MMDB")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cityboard_tests::repo_root().join("target/edge/cities.mmdb"));
    let cities = ["newyork", "boston", "london", "paris"];
    let addresses = cityboard_deploy::edge::addresses_in(&mmdb, &cities)
        .unwrap_or_else(|e| panic!("{e:#}: the Worker must be built with its city database"));
    let us = FakeOrigin::start("us").await;
    let edge = EdgeRuntime::start(
        "embedded-db",
        Options {
            origins: vec![("us-east".into(), us.url()), ("eu-west".into(), us.url())],
            bulk_route: false,
            origin_timeout_ms: 800,
            page_cache_ms: None,
            embedded_database: true,
            template_version: None,
            production_build: false,
        },
    )
    .await;
    for (city, ip) in &addresses {
        let started = Instant::now();
        let res = edge
            .browse(APEX, "/", &[("cf-connecting-ip", &ip.to_string())])
            .await;
        let location = format!("http://{city}.{APEX}:{}/", edge.port);
        assert_eq!(
            (res.status, res.header("location")),
            (302, Some(location.as_str())),
            "{ip} is in {city}: {}",
            res.text()
        );
        assert_eq!(res.header("x-cityboard-located-by"), Some("ip"));
        eprintln!("{ip} -> {city} in {:?}", started.elapsed());
    }
    assert_eq!(addresses.len(), cities.len(), "{addresses:?}");
}

/// Asserts that `res` carries every security header, with the edge's values.
#[track_caller]
fn assert_secured(res: &cityboard_deploy::http::Response, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(res.header(name), Some(*value), "{what}: {name}");
    }
}

/// A KV entry written straight to the KV service with these metadata.
async fn put_meta(edge: &EdgeRuntime, id: u64, meta: &PostMeta, html: &str) {
    let meta = serde_json::to_value(meta).unwrap();
    edge.kv
        .put(&post_key(id), html.as_bytes(), Some(&meta), None)
        .await
        .expect("seed an entry");
}

#[tokio::test]
async fn every_html_answer_carries_the_security_headers() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("headers", &us.url(), &eu.url(), false).await;
    let boston = host("boston");

    // The Worker's own pages: the picker (a visitor it cannot place, and
    // /cities whatever the cookie says), with the GeoIP credit.
    let picker = edge.browse(APEX, "/", &[]).await;
    assert_eq!(picker.status, 200, "{}", picker.text());
    assert_secured(&picker, "picker");
    let chosen = edge
        .browse(APEX, "/cities", &[("cookie", "cb_city=paris")])
        .await;
    assert_eq!(
        chosen.status,
        200,
        "/cities with cb_city: {}",
        chosen.text()
    );
    assert!(chosen.text().contains("Choose your city"));
    assert!(
        chosen
            .text()
            .contains("<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>")
    );
    assert_secured(&chosen, "/cities");
    // The cookie still sends the apex itself to the city.
    let home = edge.browse(APEX, "/", &[("cookie", "cb_city=paris")]).await;
    assert_eq!(home.status, 302);

    // Error pages: a post id that is none, a city nobody serves.
    let bad = edge.browse(&boston, "/post/abc", &[]).await;
    assert_eq!(bad.status, 404);
    assert_secured(&bad, "404 page");
    let nowhere = edge.browse(&host("atlantis"), "/", &[]).await;
    assert_eq!(nowhere.status, 404);
    assert_secured(&nowhere, "picker for an unknown city");

    // KV pages: read from KV, then kept in the isolate.
    put_page(&edge, 501, "boston", 1, PAGE).await;
    for round in ["read from KV", "kept"] {
        let res = edge.browse(&boston, "/post/501", &[]).await;
        assert_eq!((res.status, res.text().as_str()), (200, PAGE), "{round}");
        assert_eq!(res.header("x-cityboard-edge"), Some("kv-hit"), "{round}");
        assert_secured(&res, round);
    }
    // A tombstone's 410, read from KV and then kept.
    put_meta(&edge, 502, &PostMeta::tombstone(2), "").await;
    for round in ["410 read from KV", "410 kept"] {
        let res = edge.browse(&boston, "/post/502", &[]).await;
        assert_eq!(res.status, 410, "{round}");
        assert!(res.text().contains("no longer available"), "{round}");
        assert_secured(&res, round);
    }
    assert_eq!(us.hits() + eu.hits(), 0, "all of that without an origin");
    // `/post/new` is the origin's form, not a post id the edge refuses.
    edge.browse(&boston, "/post/new", &[]).await;
    assert_eq!(us.hits(), 1, "/post/new goes to boston's origin");

    // An origin's HTML page: the edge's headers replace the origin's own.
    let page = edge.browse(&boston, &format!("{HTML_PATH}/x"), &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-origin"), Some("us"));
    assert_secured(&page, "origin page");
    assert_eq!(
        page.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY)
    );
    // A post page the origin renders (a KV miss) and a logged-in visitor's
    // page (not through the cache) get them as well.
    let miss = edge
        .browse(
            &boston,
            &format!("{HTML_PATH}/mine"),
            &[("cookie", "cb_session=abc")],
        )
        .await;
    assert_secured(&miss, "a visitor's origin page");
    // Anything not HTML is passed on as it came.
    let plain = edge.browse(&boston, "/plain", &[]).await;
    assert_eq!(plain.header("x-origin"), Some("us"));
    assert_eq!(plain.header("content-security-policy"), None);
}

#[tokio::test]
async fn static_assets_keep_their_immutable_caching_through_the_edge() {
    let us = FakeOrigin::start("us").await;
    let edge = runtime("assets", &us.url(), &us.url(), false).await;
    for cookies in ["", "cb_session=abc; cb_ryw=1:2"] {
        let res = edge
            .request(
                "GET",
                &host("boston"),
                "/static/site.3f2a9c1b.css",
                &[("cookie", cookies)],
                b"",
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.header("x-origin"), Some("us"));
        assert_eq!(
            res.header("cache-control"),
            Some(ASSET_CACHE_CONTROL),
            "cookies {cookies:?}"
        );
        assert_eq!(res.text(), "body{margin:0}");
    }
}

#[tokio::test]
async fn a_kv_page_of_another_template_is_rendered_by_the_origin_until_republished() {
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = EdgeRuntime::start(
        "template",
        Options {
            template_version: Some(7),
            ..options(&us.url(), &eu.url(), true)
        },
    )
    .await;
    let boston = host("boston");
    let exp = unix_now() + 86_400;
    let current = PostMeta::page("boston", 1, exp).with_template(7);
    put_meta(&edge, 601, &current, "<p>current</p>").await;
    put_meta(
        &edge,
        602,
        &PostMeta::page("boston", 1, exp).with_template(6),
        "<p>old template</p>",
    )
    .await;
    put_meta(
        &edge,
        603,
        &PostMeta::page("boston", 1, exp),
        "<p>no template</p>",
    )
    .await;

    let hit = edge.browse(&boston, "/post/601", &[]).await;
    assert_eq!(hit.text(), "<p>current</p>");
    assert_eq!(hit.header("x-cityboard-edge"), Some("kv-hit"));
    for id in [602, 603] {
        for round in 0..2 {
            let res = edge.browse(&boston, &format!("/post/{id}"), &[]).await;
            assert_eq!(res.status, 200);
            assert_eq!(
                res.header("x-cityboard-edge"),
                Some("kv-template"),
                "post {id} round {round}"
            );
            assert_eq!(res.header("x-origin"), Some("us"), "post {id}");
        }
    }
    assert_eq!(us.hits(), 4, "each old page went to the origin");

    // The publisher re-publishes the same version with the current
    // template: it replaces the old page, and the edge serves it.
    let write = |meta: PostMeta, value: &str| BulkWrite {
        key: post_key(602),
        value: value.into(),
        metadata: Some(serde_json::to_value(meta).unwrap()),
        expiration_ttl: None,
    };
    let body = serde_json::to_vec(&[write(current.clone(), "<p>re-rendered</p>")]).unwrap();
    let res = edge
        .bulk(&body, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let result: BulkResult = serde_json::from_slice(&res.body).unwrap();
    assert_eq!((result.written, result.skipped_older), (1, 0));
    let res = edge.browse(&boston, "/post/602", &[]).await;
    assert_eq!(
        (res.text().as_str(), res.header("x-cityboard-edge")),
        ("<p>re-rendered</p>", Some("kv-hit"))
    );
    // The same write again is a no-op, and so is an older template's.
    let again = serde_json::to_vec(&[
        write(current.clone(), "<p>again</p>"),
        write(
            PostMeta::page("boston", 1, exp).with_template(7),
            "<p>again</p>",
        ),
    ])
    .unwrap();
    let res = edge
        .bulk(&again, KV_ROUTE_SECRET, unix_now(), &nonce())
        .await;
    let result: BulkResult = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(result.written, 0, "{result:?}");
    assert_eq!(us.hits(), 4);
}

/// The fields a verifier reads off a request the fake origin saw.
fn signed_fields(seen: &cityboard_tests::edge::Seen) -> cityboard_protocol::sign::Request<'_> {
    use cityboard_protocol::sign;
    sign::Request {
        method: &seen.method,
        host: &seen.headers[sign::FORWARDED_HOST_HEADER],
        path_and_query: &seen.path_and_query,
        client_ip: &seen.headers[sign::CLIENT_IP_HEADER],
        city: &seen.headers[sign::CITY_HEADER],
        body_sha256: sign::body_sha256(&seen.body),
        content_type: &seen.headers["content-type"],
    }
}

/// A photo upload is streamed to the origin whole (more than the 64 KiB a
/// buffered write may carry) and signed in the unsigned-payload mode, with
/// the request-id nonce; a normal write's signature does not pass in that
/// mode, nor the upload's in the normal one.
#[tokio::test]
async fn an_upload_reaches_the_origin_whole_signed_without_its_body() {
    use cityboard_protocol::sign::{Key, Keyring, Payload, Signature, SignatureError};
    let us = FakeOrigin::start("us").await;
    let eu = FakeOrigin::start("eu").await;
    let edge = runtime("upload", &us.url(), &eu.url(), false).await;
    let boston = host("boston");
    let content_type = "multipart/form-data; boundary=----cb";
    let mut body = b"------cb\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
    body.extend((0..300 * 1024).map(|i| (i % 251) as u8));
    body.extend_from_slice(b"\r\n------cb--\r\n");
    let path = "/post/42/photos?token=42.7.3.1764548100.00112233445566778899aabbccddeeff";
    let res = edge
        .request(
            "POST",
            &boston,
            path,
            &[JSON, ("content-type", content_type)],
            &body,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let upload = us.seen().pop().expect("the origin got the upload");
    assert_eq!(upload.path_and_query, path);
    assert_eq!(upload.body.len(), body.len(), "the whole body arrived");
    assert!(upload.body == body, "the body arrived unchanged");
    assert_eq!(upload.signature, Ok(()));
    let u = upload.headers[SIGNATURE_HEADER].clone();
    assert!(u.starts_with("v2u "), "{u}");
    let parsed = Signature::parse(&u).unwrap();
    assert_eq!(parsed.payload, Payload::Unsigned);
    assert!(
        parsed.nonce.len() >= 16,
        "the nonce carries the request id: {}",
        parsed.nonce
    );

    // A normal write through the same edge.
    let json = br#"{"title":"bike","price":100}"#;
    let res = edge
        .request(
            "POST",
            &boston,
            "/post",
            &[JSON, ("content-type", "application/json")],
            json,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let write = us.seen().pop().expect("the origin got the write");
    let h = write.headers[SIGNATURE_HEADER].clone();
    assert!(h.starts_with("v2 "), "{h}");

    let ring = Keyring::new(Key::new(FORWARD_SECRET.as_bytes().to_vec()));
    let now = parsed.timestamp;
    // The write's signature replayed in the unsigned-payload mode, on its
    // own request or on the upload's: refused.
    for target in [&write, &upload] {
        let replay = ring
            .admit(&h.replacen("v2", "v2u", 1), now)
            .unwrap()
            .check_unsigned_payload(&signed_fields(target));
        assert_eq!(replay, Err(SignatureError::BadMac));
    }
    // The upload's signature in the normal mode: refused as it is, and
    // relabelled.
    assert_eq!(
        ring.verify(&u, &signed_fields(&upload), now),
        Err(SignatureError::WrongPayloadMode)
    );
    assert_eq!(
        ring.verify(&u.replacen("v2u", "v2", 1), &signed_fields(&upload), now),
        Err(SignatureError::BadMac)
    );
    // Only the upload route streams: a large write elsewhere is still 413.
    let res = edge
        .request(
            "POST",
            &boston,
            "/post/42/renew",
            &[JSON, ("content-type", content_type)],
            &body,
        )
        .await;
    assert_eq!(res.status, 413, "{}", res.text());
}
