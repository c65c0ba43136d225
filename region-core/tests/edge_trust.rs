//! Edge ↔ origin trust (design §4, issue 6 acceptance 2): the origin serves
//! what the edge signed, and refuses with 401 anything forged, tampered
//! with, stale or replayed.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension};
use axum::http::Request;
use cityboard_protocol::sign::{self, Key, Keyring};
use common::api::{
    Api, CLIENT_IP, Forward, Reply, Setup, new_nonce, previous_forward_key, secrets,
};
use common::*;
use region_core::clock::ManualClock;
use region_core::http::edge_trust::{self, Forwarded};
use region_core::http::{AppState, ClientIp};
use region_core::stack::PreviousKey;
use tower::ServiceExt;

/// A city the stack serves in its first region.
fn served_city() -> String {
    let state = State::load();
    state
        .region()
        .shards
        .iter()
        .flat_map(|s| s.cities.iter())
        .next()
        .expect("the first region serves a city")
        .clone()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn forward_get(api: &Api, city: &str, path: &str) -> Forward {
    api.forward(
        Request::get(path)
            .header("host", api.host(city))
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// Asserts a 401 of the signature check and returns its detail.
fn refused(reply: &Reply) -> String {
    let kind = reply.problem(401);
    assert!(kind.ends_with("/signature"), "{kind}: {}", reply.body);
    reply.json()["detail"].as_str().unwrap().to_string()
}

/// Only the signature middleware in front of a handler that shows what it
/// let through: the `Forwarded` it attached and the `ClientIp` a handler
/// sees.
async fn echo(state: &AppState, req: Request<Body>) -> serde_json::Value {
    let router = axum::Router::new()
        .fallback(
            |f: Option<Extension<Forwarded>>, ClientIp(ip): ClientIp| async move {
                axum::Json(serde_json::json!({
                    "signed": f.is_some(),
                    "host": f.as_ref().map(|f| f.host.clone()),
                    "city": f.as_ref().map(|f| f.city.clone()),
                    "client_ip": ip.map(|ip| ip.to_string()),
                }))
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge_trust::verify,
        ))
        .with_state(state.clone());
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_protocols_known_answer_vectors_verify_here_and_at_the_middleware() {
    prepared().await;
    let vectors = cityboard_protocol::vectors();
    assert!(!vectors.is_empty());
    assert_eq!(cityboard_protocol::vectors::check(), Ok(vectors.len()));
    let home = std::env::var_os("CITYBOARD_HOME").unwrap();
    let stack =
        region_core::stack::StackFile::read(&std::path::PathBuf::from(home).join("state.json"))
            .unwrap();
    let redis = redis::Client::open(stack.regions[0].redis_store_url.as_str()).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();

    let mut through_the_middleware = Vec::new();
    for v in &vectors {
        // The unsigned-payload vectors verify only on the upload route with
        // a valid upload token (vectors::check, and the upload test below).
        if v.mode() == Some(cityboard_protocol::sign::Payload::Unsigned) {
            continue;
        }
        let version = v.scheme().expect("a known version");
        // With the keyring the origin builds: the vector's key as current,
        // and as previous (not yet expired); version 1 refused where the
        // api retired it.
        let other = Key::new(b"some other forwarding key".to_vec());
        for ring in [
            Keyring::new(v.key()).with_previous(other.clone(), Some(v.timestamp + 1)),
            Keyring::new(other.clone()).with_previous(v.key(), Some(v.timestamp + 1)),
        ] {
            let sig = ring.verify(&v.header, &v.request(), v.timestamp).unwrap();
            assert_eq!(
                (sig.key_id.as_str(), sig.nonce.as_str(), sig.version),
                (v.key_id.as_str(), v.nonce.as_str(), version)
            );
            let retired = ring.with_min_version(sign::Version::V2).verify(
                &v.header,
                &v.request(),
                v.timestamp,
            );
            assert_eq!(retired.is_ok(), version == sign::Version::V2, "{}", v.name);
        }

        // Through the origin's middleware: an api whose forwarding key is
        // the vector's, at the vector's time. Two version 1 vectors have
        // keys shorter than an api starts with (they predate that rule).
        if v.secret.len() < sign::MIN_SECRET_BYTES {
            assert_eq!(version, sign::Version::V1, "{}", v.name);
            continue;
        }
        let mut keys = secrets();
        keys.edge_forward = v.secret.as_bytes().to_vec();
        let clock = Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(v.timestamp, 0).unwrap(),
        ));
        for min_version in [sign::Version::V1, sign::Version::V2] {
            let api = Api::start_with(Setup {
                secrets: keys.clone(),
                clock: clock.clone(),
                signing_min_version: min_version,
                ..Setup::default()
            })
            .await;
            // The vectors' nonces are fixed: forget a previous run's claim.
            let _: () = redis::cmd("DEL")
                .arg(format!("cb:nonce:v1:{}:{}", v.key_id, v.nonce))
                .query_async(&mut redis)
                .await
                .unwrap();
            let req = vector_request(v);
            if min_version > version {
                let detail = refused(&api.send_raw(req).await);
                assert!(detail.contains("retired"), "{}: {detail}", v.name);
                continue;
            }
            let seen = echo(&api.state, req).await;
            assert_eq!(seen["signed"], true, "{}", v.name);
            assert_eq!(seen["host"], v.host.to_ascii_lowercase(), "{}", v.name);
            assert_eq!(seen["city"], v.city.as_str(), "{}", v.name);
            let ip = (!v.client_ip.is_empty()).then(|| v.client_ip.clone());
            assert_eq!(seen["client_ip"], serde_json::json!(ip), "{}", v.name);
        }
        through_the_middleware.push(v.name.clone());
    }
    for version in sign::Version::ALL {
        assert!(
            vectors
                .iter()
                .any(|v| v.scheme() == Some(version) && through_the_middleware.contains(&v.name)),
            "no {version} vector went through the middleware"
        );
    }
}

/// The request the edge sends for vector `v`: its fields as headers, its
/// `Content-Type` when it has one, its signature.
fn vector_request(v: &cityboard_protocol::Vector) -> Request<Body> {
    let mut req = Request::builder()
        .method(v.method.as_str())
        .uri(v.path_and_query.as_str())
        .header("host", "127.0.0.1")
        .header(sign::FORWARDED_HOST_HEADER, v.host.as_str())
        .header(sign::CITY_HEADER, v.city.as_str())
        .header(sign::SIGNATURE_HEADER, v.header.as_str());
    if !v.client_ip.is_empty() {
        req = req.header(sign::CLIENT_IP_HEADER, v.client_ip.as_str());
    }
    if !v.content_type.is_empty() {
        req = req.header("content-type", v.content_type.as_str());
    }
    req.body(Body::from(v.body.clone())).unwrap()
}

#[tokio::test]
async fn a_signed_request_is_served_for_the_city_and_host_it_names() {
    prepared().await;
    let city = served_city();
    let api = Api::start(false).await;
    // `Host` is the origin's own address, as on a Worker's fetch: the city
    // comes from the signed headers.
    let f = forward_get(&api, &city, "/post?limit=1").await;
    let listing = api.send_raw(f.request(&f.signature())).await;
    assert_eq!(listing.status, 200, "{}", listing.body);

    // A body reaches the handler intact after being hashed.
    let email = format!("edge-{}@example.com", new_nonce());
    let signup = api
        .send(
            Request::post("/signup")
                .header("host", api.host(&city))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"email": email, "password": "correct horse"}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    assert_eq!(signup.json()["email"], email);

    // A signed city this region does not serve is a 421, like any other.
    let mut elsewhere = forward_get(&api, &city, "/post?limit=1").await;
    elsewhere.city = "atlantis-nowhere".into();
    let t = api
        .send_raw(elsewhere.request(&elsewhere.signature()))
        .await
        .problem(421);
    assert!(t.ends_with("/city-not-served"), "{t}");
}

#[tokio::test]
async fn every_signed_field_is_bound_to_the_request() {
    prepared().await;
    let city = served_city();
    let api = Api::start(false).await;
    let email = format!("tamper-{}@example.com", new_nonce());
    let original = api
        .forward(
            Request::post("/signup")
                .header("host", api.host(&city))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"email": email, "password": "correct horse"}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    let signature = original.signature();
    type Tamper = Box<dyn Fn(&mut Forward)>;
    let tampered: Vec<(&str, Tamper)> = vec![
        ("method", Box::new(|f| f.method = "PUT".into())),
        ("host", Box::new(|f| f.host = format!("x{}", f.host))),
        ("path", Box::new(|f| f.path = "/signup?again=1".into())),
        (
            "client ip",
            Box::new(|f| f.client_ip = "198.51.100.1".into()),
        ),
        ("city", Box::new(|f| f.city = format!("x{}", f.city))),
        (
            "body",
            Box::new(|f| f.body = f.body.replace_ascii("correct", "CORRECT")),
        ),
        (
            "content type",
            Box::new(|f| {
                f.headers
                    .insert("content-type", "text/plain".parse().unwrap());
            }),
        ),
    ];
    for (field, tamper) in &tampered {
        let mut f = original.clone();
        tamper(&mut f);
        let reply = api.send_raw(f.request(&signature)).await;
        assert_eq!(reply.status, 401, "tampered {field}: {}", reply.body);
        let detail = refused(&reply);
        assert!(detail.contains("does not match"), "{field}: {detail}");
    }
    // None of them used up the nonce: the request as signed is served.
    let served = api.send_raw(original.request(&signature)).await;
    assert_eq!(served.status, 201, "{}", served.body);
}

trait ReplaceAscii {
    fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceAscii for Vec<u8> {
    fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(self.clone())
            .unwrap()
            .replace(from, to)
            .into_bytes()
    }
}

/// Scheme version 2 covers `Content-Type`: the same bytes (so the same
/// size and hash) sent as another media type, or as none, are refused, and
/// nothing happens (the account does not exist until the request as signed
/// is sent).
#[tokio::test]
async fn a_body_of_the_right_size_with_a_wrong_content_type_is_refused() {
    prepared().await;
    let city = served_city();
    let api = Api::start(false).await;
    let email = format!("ctype-{}@example.com", new_nonce());
    let signup = api
        .forward(
            Request::post("/signup")
                .header("host", api.host(&city))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"email": email, "password": "correct horse"}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    let signature = signup.signature();
    assert!(signature.starts_with("v2 "), "{signature}");
    for (what, value) in [
        ("a form", Some("application/x-www-form-urlencoded")),
        (
            "another JSON spelling",
            Some("application/json; charset=utf-8"),
        ),
        ("upper case", Some("Application/JSON")),
        ("none", None),
    ] {
        let mut wrong = signup.clone();
        match value {
            Some(v) => {
                wrong.headers.insert("content-type", v.parse().unwrap());
            }
            None => {
                wrong.headers.remove("content-type");
            }
        }
        let req = wrong.request(&signature);
        let reply = api.send_raw(req).await;
        let detail = refused(&reply);
        assert!(detail.contains("does not match"), "{what}: {detail}");
    }
    let mut two = signup.clone();
    two.headers
        .append("content-type", "application/json".parse().unwrap());
    let detail = refused(&api.send_raw(two.request(&signature)).await);
    assert!(detail.contains("more than one content-type"), "{detail}");

    // None of them spent the nonce or made the account: the request as
    // signed is served, once.
    let served = api.send_raw(signup.request(&signature)).await;
    assert_eq!(served.status, 201, "{}", served.body);
    assert_eq!(served.json()["email"], email);
    let detail = refused(&api.send_raw(signup.request(&signature)).await);
    assert!(detail.contains("replayed"), "{detail}");
}

/// A rolling upgrade: an api accepts an old edge's version 1 signature
/// (which does not cover `Content-Type`) until it is started with
/// `--signing-min-version 2`; then only version 2 passes.
#[tokio::test]
async fn version_1_signatures_pass_until_the_api_retires_them() {
    prepared().await;
    let api = Api::start(false).await;
    let mut old_edge = api.forward(get("/signup")).await;
    old_edge.version = sign::Version::V1;
    let header = old_edge.signature();
    assert!(header.starts_with("v1 "), "{header}");
    let reply = api.send_raw(old_edge.request(&header)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let strict = Api::start_with(Setup {
        signing_min_version: sign::Version::V2,
        ..Setup::default()
    })
    .await;
    let mut old_edge = strict.forward(get("/signup")).await;
    old_edge.version = sign::Version::V1;
    let detail = refused(
        &strict
            .send_raw(old_edge.request(&old_edge.signature()))
            .await,
    );
    assert!(detail.contains("retired"), "{detail}");
    let new_edge = strict.forward(get("/signup")).await;
    let reply = strict
        .send_raw(new_edge.request(&new_edge.signature()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_timestamp_more_than_30_s_off_the_origins_clock_is_refused() {
    prepared().await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let api = Api::start_with(Setup {
        clock: clock.clone(),
        ..Setup::default()
    })
    .await;
    let signed_now = api.forward(get("/signup")).await;
    let header = signed_now.signature();

    clock.advance(chrono::Duration::seconds(31));
    let detail = refused(&api.send_raw(signed_now.request(&header)).await);
    assert!(detail.contains("window"), "{detail}");

    // 30 s either way is within the window.
    clock.advance(chrono::Duration::seconds(-1));
    let ok = api.send_raw(signed_now.request(&header)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let mut ahead = api.forward(get("/signup")).await;
    ahead.timestamp += 30;
    assert_eq!(
        api.send_raw(ahead.request(&ahead.signature())).await.status,
        200
    );
    ahead.timestamp += 1;
    ahead.nonce = new_nonce();
    refused(&api.send_raw(ahead.request(&ahead.signature())).await);
}

/// Key and time are checked before the body is read: a stale or unknown
/// signature on a body over the limit is a 401, not a 413 (the origin never
/// buffered it).
#[tokio::test]
async fn a_signature_with_a_bad_key_or_time_is_refused_before_the_body_is_read() {
    prepared().await;
    let api = Api::start(false).await;
    let mut f = api.forward(get("/signup")).await;
    f.method = "POST".into();
    f.body = vec![b' '; region_core::http::BODY_LIMIT + 1];
    // With a current signature, the body's size is what is refused.
    assert_eq!(api.send_raw(f.request(&f.signature())).await.status, 413);
    f.nonce = new_nonce();
    f.timestamp -= 31;
    let detail = refused(&api.send_raw(f.request(&f.signature())).await);
    assert!(detail.contains("window"), "{detail}");
    f.timestamp += 31;
    f.key = Key::new(b"a key this origin never had".to_vec());
    let detail = refused(&api.send_raw(f.request(&f.signature())).await);
    assert!(detail.contains("unknown key"), "{detail}");
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    prepared().await;
    let api = Api::start(false).await;
    let f = api.forward(get("/signup")).await;
    let header = f.signature();
    assert_eq!(api.send_raw(f.request(&header)).await.status, 200);
    let detail = refused(&api.send_raw(f.request(&header)).await);
    assert!(detail.contains("replayed"), "{detail}");

    // The nonce is spent for the key, whatever request carries it.
    let mut other = api.forward(get("/login")).await;
    other.nonce = f.nonce.clone();
    let detail = refused(&api.send_raw(other.request(&other.signature())).await);
    assert!(detail.contains("replayed"), "{detail}");
}

#[tokio::test]
async fn the_previous_key_is_accepted_and_an_unknown_one_is_not() {
    prepared().await;
    let api = Api::start(false).await;
    let mut f = api.forward(get("/signup")).await;
    f.key = Key::new(previous_forward_key());
    let during_rotation = api.send_raw(f.request(&f.signature())).await;
    assert_eq!(during_rotation.status, 200, "{}", during_rotation.body);

    f.key = Key::new(b"a key this origin never had".to_vec());
    f.nonce = new_nonce();
    let detail = refused(&api.send_raw(f.request(&f.signature())).await);
    assert!(detail.contains("unknown key"), "{detail}");

    for malformed in ["", "v1", "v1 kid=x ts=1 nonce=short mac=00", "Bearer abc"] {
        let req = f.request(malformed);
        let detail = refused(&api.send_raw(req).await);
        assert!(detail.contains("malformed"), "{malformed:?}: {detail}");
    }
}

/// The previous key is accepted until its expiry (by the api's clock) and
/// refused from then on; the current key is not affected. Without a
/// previous key, only the current one is known.
#[tokio::test]
async fn the_previous_key_is_refused_from_its_expiry_on_and_may_be_absent() {
    prepared().await;
    let start = chrono::Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let mut keys = secrets();
    keys.edge_forward_previous = Some(PreviousKey {
        key: previous_forward_key(),
        expires: start + chrono::Duration::seconds(60),
    });
    let api = Api::start_with(Setup {
        secrets: keys,
        clock: clock.clone(),
        ..Setup::default()
    })
    .await;
    let previous = Key::new(previous_forward_key());
    let by_previous = |mut f: Forward| {
        f.key = previous.clone();
        f
    };
    let f = by_previous(api.forward(get("/signup")).await);
    let reply = api.send_raw(f.request(&f.signature())).await;
    assert_eq!(reply.status, 200, "before the expiry: {}", reply.body);

    clock.advance(chrono::Duration::seconds(59));
    let f = by_previous(api.forward(get("/signup")).await);
    let reply = api.send_raw(f.request(&f.signature())).await;
    assert_eq!(reply.status, 200, "a second before: {}", reply.body);
    clock.advance(chrono::Duration::seconds(1));
    let f = by_previous(api.forward(get("/signup")).await);
    let detail = refused(&api.send_raw(f.request(&f.signature())).await);
    assert!(detail.contains("expiry"), "at the expiry: {detail}");
    let current = api.forward(get("/signup")).await;
    let reply = api.send_raw(current.request(&current.signature())).await;
    assert_eq!(reply.status, 200, "the current key: {}", reply.body);

    let mut keys = secrets();
    keys.edge_forward_previous = None;
    let api = Api::start_with(Setup {
        secrets: keys,
        ..Setup::default()
    })
    .await;
    let current = api.forward(get("/signup")).await;
    let reply = api.send_raw(current.request(&current.signature())).await;
    assert_eq!(reply.status, 200, "no previous key: {}", reply.body);
    let f = by_previous(api.forward(get("/signup")).await);
    let detail = refused(&api.send_raw(f.request(&f.signature())).await);
    assert!(detail.contains("unknown key"), "{detail}");
}

#[tokio::test]
async fn unsigned_requests_are_refused_unless_the_development_flag_allows_them() {
    prepared().await;
    let city = served_city();
    let api = Api::start(false).await;
    let detail = refused(&api.send_raw(get("/signup")).await);
    assert!(detail.contains("missing"), "{detail}");
    // Operators reach these directly.
    for path in ["/healthz", "/openapi.json"] {
        assert_eq!(api.send_raw(get(path)).await.status, 200, "{path}");
    }
    // The operator's routes are not on this listener: an unsigned request
    // for them is refused like any other, a signed one finds nothing.
    for (method, path) in [("GET", "/metrics"), ("DELETE", "/old_posts?older_than=1d")] {
        let req = || {
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap()
        };
        refused(&api.send_raw(req()).await);
        api.send(req()).await.problem(404);
        assert_ne!(api.send_operator(req()).await.status, 404, "{path}");
    }

    let dev = Api::start_with(Setup {
        require_signatures: false,
        ..Setup::default()
    })
    .await;
    assert_eq!(dev.send_raw(get("/signup")).await.status, 200);
    // A signature that is present is still checked.
    let mut forged = dev.forward(get("/signup")).await;
    forged.key = Key::new(b"not the edge's key".to_vec());
    refused(&dev.send_raw(forged.request(&forged.signature())).await);
    let good = dev.forward(get("/signup")).await;
    let mut bad_mac = good.signature();
    let last = if bad_mac.ends_with('0') { "1" } else { "0" };
    bad_mac.replace_range(bad_mac.len() - 1.., last);
    refused(&dev.send_raw(good.request(&bad_mac)).await);

    // Unsigned, the edge's headers are anyone's claims: the city comes from
    // Host, the client's address from the connection.
    let claims_city = Request::get("/post?limit=1")
        .header("host", "127.0.0.1")
        .header(sign::CITY_HEADER, city.as_str())
        .header(sign::FORWARDED_HOST_HEADER, dev.host(&city))
        .body(Body::empty())
        .unwrap();
    dev.send_raw(claims_city).await.problem(421);
    let by_host = Request::get("/post?limit=1")
        .header("host", dev.host(&city))
        .body(Body::empty())
        .unwrap();
    assert_eq!(dev.send_raw(by_host).await.status, 200);

    let peer: SocketAddr = "192.0.2.44:50000".parse().unwrap();
    let mut claims_ip = Request::get("/whoami")
        .header(sign::CLIENT_IP_HEADER, "198.51.100.99")
        .body(Body::empty())
        .unwrap();
    claims_ip.extensions_mut().insert(ConnectInfo(peer));
    let seen = echo(&dev.state, claims_ip).await;
    assert_eq!(seen["signed"], false);
    assert_eq!(seen["client_ip"], "192.0.2.44");
    // Signed, the edge's view of the visitor wins over the peer (the edge).
    let mut signed = dev.signed(get("/whoami")).await;
    signed.extensions_mut().insert(ConnectInfo(peer));
    let seen = echo(&dev.state, signed).await;
    assert_eq!(seen["signed"], true);
    assert_eq!(seen["client_ip"], CLIENT_IP);
}

#[tokio::test]
async fn a_nonce_store_that_is_down_is_a_503_not_a_pass() {
    prepared().await;
    let api = Api::start_with(Setup {
        store_url: Some("redis://127.0.0.1:1/".into()),
        ..Setup::default()
    })
    .await;
    let reply = api.send(get("/signup")).await;
    let kind = reply.problem(503);
    assert!(kind.ends_with("/store-unavailable"), "{kind}");
    assert!(reply.headers.contains_key("retry-after"));
    // What needs no signature needs no store.
    assert_eq!(api.send(get("/openapi.json")).await.status, 200);
}

/// The unsigned-payload mode (`v2u`, a streamed photo upload): accepted on
/// the upload route alone and only with an upload token for the signed
/// city and the path's post; its body is not buffered by the check (more
/// than the 64 KiB a hashed request may carry reaches the handler), and a
/// signature of either mode never passes for the other.
#[tokio::test]
async fn the_unsigned_payload_mode_passes_only_on_an_upload_with_its_token() {
    prepared().await;
    let city = served_city();
    let api = Api::start(false).await;
    let now = api.state.clock.now().timestamp();
    let post = region_core::model::Id(4_242_424_242);
    let user = region_core::model::Id(7);
    let token = api.state.uploads.issue(&city, post, user, 3, now);
    let big = vec![b'x'; 200 * 1024];
    let upload = |path: String, body: Vec<u8>| {
        let api = &api;
        let city = city.clone();
        async move {
            api.forward(
                Request::post(path)
                    .header("host", api.host(&city))
                    .header("accept", "application/json")
                    .header("content-type", "multipart/form-data; boundary=b")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };

    // With its token: past the check (whatever the handler makes of a post
    // that does not exist), and not cut at 64 KiB.
    let ok = upload(
        format!("/post/{}/photos?token={token}", post.0),
        big.clone(),
    )
    .await;
    assert_eq!(ok.payload, sign::Payload::Unsigned);
    let signature = ok.signature();
    assert!(signature.starts_with("v2u "), "{signature}");
    let reply = api.send_raw(ok.request(&signature)).await;
    assert!(
        ![401, 413].contains(&reply.status.as_u16()),
        "{}: {}",
        reply.status,
        reply.body
    );

    // The body is not covered, everything else is: the token in the query.
    let mut other_token = ok.clone();
    other_token.nonce = new_nonce();
    let s = other_token.signature();
    other_token.path = other_token.path.replace("token=", "token=1");
    assert!(refused(&api.send_raw(other_token.request(&s)).await).contains("upload"));

    // Without a valid token for this post and city: refused, body unread.
    let other_post = api
        .state
        .uploads
        .issue(&city, region_core::model::Id(1), user, 3, now);
    let expired = api.state.uploads.issue(&city, post, user, 3, now - 16 * 60);
    for path in [
        format!("/post/{}/photos", post.0),
        format!("/post/{}/photos?token=1.2.3.4.00", post.0),
        format!("/post/{}/photos?token={other_post}", post.0),
        format!("/post/{}/photos?token={expired}", post.0),
    ] {
        let f = upload(path.clone(), big.clone()).await;
        let detail = refused(&api.send_raw(f.request(&f.signature())).await);
        assert!(
            detail.contains("only on a photo upload"),
            "{path}: {detail}"
        );
    }

    // Any other route: refused in that mode.
    let mut signup = api
        .forward(
            Request::post("/signup")
                .header("host", api.host(&city))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    signup.payload = sign::Payload::Unsigned;
    let detail = refused(&api.send_raw(signup.request(&signup.signature())).await);
    assert!(detail.contains("only on a photo upload"), "{detail}");

    // A hashed signature of the upload, relabelled v2u: does not match;
    // the unsigned one relabelled v2: does not match either.
    let mut hashed = upload(
        format!("/post/{}/photos?token={token}", post.0),
        vec![1; 10],
    )
    .await;
    hashed.payload = sign::Payload::Hashed;
    let h = hashed.signature();
    let detail = refused(
        &api.send_raw(hashed.request(&h.replacen("v2", "v2u", 1)))
            .await,
    );
    assert!(detail.contains("does not match"), "{detail}");
    let mut unsigned = hashed.clone();
    unsigned.nonce = new_nonce();
    unsigned.payload = sign::Payload::Unsigned;
    let u = unsigned.signature();
    let detail = refused(
        &api.send_raw(unsigned.request(&u.replacen("v2u", "v2", 1)))
            .await,
    );
    assert!(detail.contains("does not match"), "{detail}");

    // A hashed upload is buffered like any request: 64 KiB at most.
    let mut hashed_big = upload(format!("/post/{}/photos?token={token}", post.0), big).await;
    hashed_big.payload = sign::Payload::Hashed;
    let reply = api
        .send_raw(hashed_big.request(&hashed_big.signature()))
        .await;
    assert_eq!(reply.status, 413, "{}", reply.body);
}
