//! The service over real HTTP, with the requests workerd sends (the same
//! paths, query parameters and header); the binding itself is exercised
//! through a real workerd in `deploy/tests/kv_binding.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cityboard_deploy::edge_kv::{Client, probe};
use cityboard_deploy::http;
use cityboard_edge_kv::{METADATA_HEADER, Service, Store, routes, unix_now};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Running {
    port: u16,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

async fn start_in(dir: tempfile::TempDir, now: i64) -> Running {
    start_with(dir, now, None).await
}

async fn start_with(dir: tempfile::TempDir, now: i64, key: Option<&str>) -> Running {
    let clock = Arc::new(AtomicI64::new(now));
    let path = dir.path().join("kv");
    let service = Arc::new(Service {
        store: Store::open(&path, now).unwrap(),
        min_ttl: 60,
        now: {
            let clock = clock.clone();
            Arc::new(move || clock.load(Ordering::SeqCst))
        },
        key: key.map(str::to_string),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, routes::router(service)).await });
    Running {
        port,
        clock,
        dir: path,
        _dir: dir,
    }
}

async fn start() -> Running {
    start_in(tempfile::tempdir().unwrap(), unix_now()).await
}

async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> http::Response {
    http::request(port, method, path, headers, body)
        .await
        .unwrap()
}

#[tokio::test]
async fn get_put_delete_with_metadata() {
    let kv = start().await;
    let client = Client::new(kv.port);
    let meta = json!({"version": 7, "city": "newyork"});
    client
        .put("post:42", b"<html>page</html>", Some(&meta), None)
        .await
        .unwrap();
    let (value, metadata) = client.get("post:42").await.unwrap().unwrap();
    assert_eq!(value, b"<html>page</html>");
    assert_eq!(metadata, Some(meta));

    // No metadata: no header (getWithMetadata answers null).
    client.put("route:paris", b"{}", None, None).await.unwrap();
    let r = send(kv.port, "GET", "/route%3Aparis?urlencoded=true", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header(METADATA_HEADER), None);

    client.delete("post:42").await.unwrap();
    assert_eq!(client.get("post:42").await.unwrap(), None);
    // Deleting what is not there is fine, as in Cloudflare KV.
    client.delete("post:42").await.unwrap();
}

#[tokio::test]
async fn keys_are_percent_decoded_path_segments() {
    let kv = start().await;
    let client = Client::new(kv.port);
    for key in ["a/b", "sp ace", "ünï", "q?x=1&y", "100%"] {
        client.put(key, key.as_bytes(), None, None).await.unwrap();
        let (value, _) = client.get(key).await.unwrap().expect(key);
        assert_eq!(value, key.as_bytes());
    }
    let r = send(kv.port, "GET", "/a%2Fb?urlencoded=true", &[], b"").await;
    assert_eq!(r.body, b"a/b");
}

#[tokio::test]
async fn expirations_are_honoured_on_read_and_list() {
    let kv = start().await;
    let now = kv.clock.load(Ordering::SeqCst);
    let r = send(
        kv.port,
        "PUT",
        "/t?urlencoded=true&expiration_ttl=60",
        &[],
        b"v",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let at = (now + 120).to_string();
    let r = send(
        kv.port,
        "PUT",
        &format!("/u?urlencoded=true&expiration={at}"),
        &[],
        b"v",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let listing: Value =
        serde_json::from_slice(&send(kv.port, "GET", "/", &[], b"").await.body).unwrap();
    assert_eq!(
        listing["keys"][0],
        json!({"name": "t", "expiration": now + 60})
    );
    assert_eq!(
        listing["keys"][1],
        json!({"name": "u", "expiration": now + 120})
    );

    kv.clock.store(now + 60, Ordering::SeqCst);
    assert_eq!(
        send(kv.port, "GET", "/t?urlencoded=true", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        send(kv.port, "GET", "/u?urlencoded=true", &[], b"")
            .await
            .status,
        200
    );
    let listing: Value =
        serde_json::from_slice(&send(kv.port, "GET", "/", &[], b"").await.body).unwrap();
    assert_eq!(listing["keys"].as_array().unwrap().len(), 1);
    kv.clock.store(now + 120, Ordering::SeqCst);
    assert_eq!(
        send(kv.port, "GET", "/u?urlencoded=true", &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_puts_get_cloudflare_statuses() {
    let kv = start().await;
    let now = kv.clock.load(Ordering::SeqCst);
    for (path, status) in [
        ("/k?expiration_ttl=59".to_string(), 400),
        ("/k?expiration_ttl=abc".to_string(), 400),
        (format!("/k?expiration={}", now - 1), 400),
        (format!("/k?expiration={}", now + 30), 400),
        (format!("/{}", "x".repeat(513)), 414),
        ("/..".to_string(), 400),
        ("/%FF".to_string(), 400),
    ] {
        let r = send(kv.port, "PUT", &path, &[], b"v").await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let big = json!({"x": "y".repeat(1100)}).to_string();
    let r = send(kv.port, "PUT", "/k", &[(METADATA_HEADER, &big)], b"v").await;
    assert_eq!(r.status, 413);
    let r = send(
        kv.port,
        "PUT",
        "/k",
        &[(METADATA_HEADER, "{not json")],
        b"v",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        send(kv.port, "GET", "/k", &[], b"").await.status,
        404,
        "nothing was stored"
    );
    assert_eq!(send(kv.port, "PATCH", "/k", &[], b"").await.status, 405);
}

#[tokio::test]
async fn list_pages_with_prefix_limit_cursor_and_metadata_as_json_text() {
    let kv = start().await;
    let client = Client::new(kv.port);
    for id in 1..=5 {
        client
            .put(
                &format!("post:{id}"),
                b"p",
                Some(&json!({"version": id})),
                None,
            )
            .await
            .unwrap();
    }
    client.put("route:london", b"r", None, None).await.unwrap();
    let page = |cursor: Option<String>| {
        let path = match cursor {
            Some(c) => format!("/?key_count_limit=2&prefix=post%3A&cursor={c}"),
            None => "/?key_count_limit=2&prefix=post%3A".to_string(),
        };
        async move {
            let r = send(kv.port, "GET", &path, &[], b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
            serde_json::from_slice::<Value>(&r.body).unwrap()
        }
    };
    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let listing = page(cursor.clone()).await;
        for key in listing["keys"].as_array().unwrap() {
            names.push(key["name"].as_str().unwrap().to_string());
            // workerd JSON.parses a string metadata into the Worker's object.
            let meta: Value = serde_json::from_str(key["metadata"].as_str().unwrap()).unwrap();
            assert!(meta["version"].is_i64());
        }
        if listing["list_complete"] == json!(true) {
            assert!(listing.get("cursor").is_none());
            break;
        }
        cursor = Some(listing["cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(names, ["post:1", "post:2", "post:3", "post:4", "post:5"]);
    assert_eq!(
        send(kv.port, "GET", "/?key_count_limit=0", &[], b"")
            .await
            .status,
        400
    );
    assert_eq!(
        send(kv.port, "GET", "/?key_count_limit=1001", &[], b"")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn bulk_get_answers_each_key() {
    let kv = start().await;
    let client = Client::new(kv.port);
    client
        .put("a", br#"{"n":1}"#, Some(&json!({"m": 1})), None)
        .await
        .unwrap();
    let body = json!({"keys": ["a", "missing"], "type": "json", "withMetadata": true});
    let r = send(
        kv.port,
        "POST",
        "/bulk/get",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        got,
        json!({"a": {"value": {"n": 1}, "metadata": {"m": 1}}, "missing": null})
    );
    let body = json!({"keys": ["a"]});
    let r = send(
        kv.port,
        "POST",
        "/bulk/get",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"a": "{\"n\":1}"})
    );
}

#[tokio::test]
async fn the_namespace_survives_a_restart_of_the_service() {
    let first = start().await;
    let client = Client::new(first.port);
    client
        .put("post:9", b"kept", Some(&json!({"version": 1})), Some(3600))
        .await
        .unwrap();
    let dir = first.dir.clone();
    // A second service over the same directory: what a restart sees.
    let store = Store::open(&dir, unix_now()).unwrap();
    let entry = store.get("post:9", unix_now()).unwrap();
    assert_eq!(&entry.value[..], b"kept");
    assert_eq!(entry.metadata, Some(json!({"version": 1})));
    assert!(entry.expiration.is_some());
}

#[tokio::test]
async fn the_probe_and_the_absolute_form_workerd_may_send() {
    let kv = start().await;
    probe(&Client::new(kv.port)).await.unwrap();
    Client::new(kv.port)
        .put("k", b"v", None, None)
        .await
        .unwrap();
    // Raw bytes: an HTTP client sends the absolute form only to a proxy,
    // and this is the request line workerd writes.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", kv.port))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET https://fake-host/k?urlencoded=true HTTP/1.1\r\n\
              host: fake-host\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nv"), "{raw}");
}

#[tokio::test]
async fn a_service_with_a_key_serves_only_clients_that_present_it() {
    let kv = start_with(tempfile::tempdir().unwrap(), unix_now(), Some("the-key")).await;
    for client in [
        Client::new(kv.port),
        Client::with_key(kv.port, "a-guess".into()),
    ] {
        let r = client
            .request("GET", "/post%3A1?urlencoded=true", &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(client.put("k", b"v", None, None).await.is_err());
    }
    let client = Client::with_key(kv.port, "the-key".into());
    probe(&client).await.unwrap();
    client.put("k", b"v", None, None).await.unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap().0, b"v");
}
