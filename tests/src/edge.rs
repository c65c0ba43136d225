//! The edge Worker in its real runtime, for `tests/tests/edge_worker.rs`.
//!
//! [`EdgeRuntime`] is one bare workerd serving the Worker built with the
//! `test-mode` feature (`edge/build-test`, from `deploy/build-edge.sh
//! --test-mode`; or, for a test of what production ignores, the production
//! build `edge/build`) with a generated config, its `PAGES` namespace backed
//! by the real KV service (`cityboard edge-kv`), and `TEST_MODE=1`. Behind
//! it stand [`FakeOrigin`]s: small HTTP servers in
//! the test process that record every request (so a test can count origin
//! hits and check signatures with the host-side verifier), and can answer
//! 421, redirect, or hang. A region whose origin is "down" points at a port
//! nobody listens on. Each test starts its own runtime on free ports, so the
//! tests run in parallel and beside the shared stack.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cityboard_deploy::edge::workerd::Binding;
use cityboard_deploy::edge::{self, EdgeConfig, FORWARD_KEY_ENV, KV_ROUTE_KEY_ENV};
use cityboard_deploy::edge_kv;
use cityboard_deploy::http;
use cityboard_protocol::bindings::CityBinding;
use cityboard_protocol::kv::{BULK_PATH, Route, route_key};
use cityboard_protocol::sign::{
    self, CITY_HEADER, CLIENT_IP_HEADER, Key, Keyring, SIGNATURE_HEADER,
};

use crate::{EdgeRequests, cityboard_bin};

/// Apex of the test runtimes.
pub const APEX: &str = "cityboard.localhost";
/// Forward key of the test runtimes.
pub const FORWARD_SECRET: &str = "edge-worker-test-forward-key-0123456789";
/// Bulk-route key of the test runtimes that turn the route on.
pub const KV_ROUTE_SECRET: &str = "edge-worker-test-kv-route-key-0123456789";

/// Networks of the test city database and the city each is placed in.
/// The IPv6 one is in the database but not in the range table the Worker
/// reads (IPv4 only), so the Worker must not place it.
pub const TEST_NETWORKS: &[(&str, &str)] = &[
    ("81.2.69.0/24", "london"),
    ("2.16.0.0/16", "paris"),
    ("3.0.0.0/16", "newyork"),
    ("18.204.0.0/14", "boston"),
    ("2600:1f18::/32", "boston"),
];

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The four test cities in two regions.
pub fn test_cities() -> Vec<CityBinding> {
    let city =
        |slug: &str, name: &str, country: &str, lat: f64, lon: f64, region: &str| CityBinding {
            slug: slug.into(),
            name: name.into(),
            country: country.into(),
            lat,
            lon,
            region: region.into(),
        };
    vec![
        city("newyork", "New York", "US", 40.71427, -74.00597, "us-east"),
        city("boston", "Boston", "US", 42.35843, -71.05977, "us-east"),
        city("london", "London", "GB", 51.50853, -0.12574, "eu-west"),
        city("paris", "Paris", "FR", 48.85341, 2.3488, "eu-west"),
    ]
}

/// The compact city database of [`TEST_NETWORKS`], in geo-router's format.
pub fn test_city_database() -> Vec<u8> {
    use mmdb_writer::{IpVersion, Ipv4Aliasing, Value, Writer};
    let mut writer = Writer::builder(geo_router::compact::DATABASE_TYPE)
        .ip_version(IpVersion::V6)
        .ipv4_aliasing(Ipv4Aliasing::Disabled)
        .description(&[("en", "edge worker test database")])
        .build();
    for (net, city) in TEST_NETWORKS {
        let value = Value::map([
            ("c", Value::from(*city)),
            ("h", Value::from("d")),
            ("k", Value::from(0u16)),
        ]);
        // IPv4 networks go in as such: the writer puts them under ::/96.
        let net: mmdb_writer::ipnet::IpNet = net.parse().expect("network");
        writer.insert_value(net, value).expect("insert");
    }
    writer.to_bytes().expect("database bytes")
}

/// The range table the Worker reads in test mode: [`test_city_database`]
/// reduced the way `deploy/build-edge.sh` reduces the real one.
pub fn test_range_table() -> Vec<u8> {
    let locator = geo_router::Locator::from_bytes(test_city_database()).expect("test database");
    geo_router::RangeTable::from_compact(&locator)
        .expect("test range table")
        .to_bytes()
}

/// Paths under this answer an HTML page at a [`FakeOrigin`].
pub const HTML_PATH: &str = "/html";
/// `Cache-Control` of a [`FakeOrigin`]'s `/static/…` answers (region-core's
/// for fingerprinted assets).
pub const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// One request an origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path_and_query: String,
    /// Headers (lower-case names).
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// What the host-side verifier (the forward keyring) said.
    pub signature: Result<(), String>,
}

/// How a fake origin answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a body naming the origin and the path.
    Normal,
    /// 421 (this region does not serve the city), after pointing
    /// `route:{city}` in KV through `moved_to`'s client (a finished move),
    /// if given.
    Misdirected {
        moved_to: Option<(edge_kv::Client, Route, String)>,
    },
    /// 302 to elsewhere (the Worker must not follow it).
    Redirect(String),
    /// Answers only after this long.
    Slow(Duration),
}

struct OriginState {
    name: String,
    keyring: Keyring,
    seen: Mutex<Vec<Seen>>,
    behaviour: Mutex<Behaviour>,
}

/// A controllable origin in the test process.
#[derive(Clone)]
pub struct FakeOrigin {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<OriginState>,
}

impl FakeOrigin {
    /// Starts one named `name` (it says its name in every body).
    pub async fn start(name: &str) -> FakeOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake origin");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(OriginState {
            name: name.into(),
            // Version 2 only: the Worker must sign the current version.
            keyring: Keyring::new(Key::new(FORWARD_SECRET.as_bytes().to_vec()))
                .with_min_version(sign::Version::V2),
            seen: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Normal),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOrigin { port, state }
    }

    /// Its base URL, as `ORIGINS` and routes name it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// How many requests it received.
    pub fn hits(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }

    /// Changes how it answers from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("lock") = behaviour;
    }
}

async fn answer(
    State(state): State<Arc<OriginState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let get = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    // What region-core's middleware does: host and city from the signed headers.
    let fields = sign::Request {
        method: method.as_str(),
        host: get(sign::FORWARDED_HOST_HEADER),
        path_and_query: &path_and_query,
        client_ip: get(CLIENT_IP_HEADER),
        city: get(CITY_HEADER),
        body_sha256: sign::body_sha256(&body),
        content_type: get("content-type"),
    };
    // Either payload mode, as the header names it (region-core accepts the
    // unsigned one on the upload route alone; the tests look at the label).
    let signature = state
        .keyring
        .admit(get(SIGNATURE_HEADER), unix_now())
        .and_then(|admitted| match admitted.payload() {
            sign::Payload::Hashed => admitted.check(&fields),
            sign::Payload::Unsigned => admitted.check_unsigned_payload(&fields),
        })
        .map(|_| ())
        .map_err(|e| e.to_string());
    let city = get(CITY_HEADER).to_string();
    state.seen.lock().expect("lock").push(Seen {
        method: method.to_string(),
        path_and_query: path_and_query.clone(),
        headers: headers.clone(),
        body: body.to_vec(),
        signature,
    });
    let behaviour = state.behaviour.lock().expect("lock").clone();
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Misdirected { moved_to } => {
            if let Some((kv, route, moved_city)) = moved_to {
                let value = serde_json::to_vec(&route).expect("route json");
                kv.put(&route_key(&moved_city), &value, None, None)
                    .await
                    .expect("move the route");
            }
            return (StatusCode::MISDIRECTED_REQUEST, "not served here").into_response();
        }
        Behaviour::Redirect(to) => {
            return (StatusCode::FOUND, [("location", to)], "moved").into_response();
        }
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
    }
    // Pages as region-core answers them: HTML (with a weaker policy of its
    // own, which the edge must replace) and fingerprinted assets.
    if path_and_query.starts_with(HTML_PATH) {
        return (
            StatusCode::OK,
            [
                ("content-type", "text/html; charset=utf-8"),
                ("content-security-policy", "default-src *"),
                ("x-origin", state.name.as_str()),
            ],
            format!("<!doctype html><title>origin {}</title>", state.name),
        )
            .into_response();
    }
    if path_and_query.starts_with("/static/") {
        return (
            StatusCode::OK,
            [
                ("content-type", "text/css"),
                ("cache-control", ASSET_CACHE_CONTROL),
                ("x-origin", state.name.as_str()),
            ],
            "body{margin:0}",
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            ("content-type", "text/plain"),
            ("x-origin", state.name.as_str()),
        ],
        format!(
            "origin {} {} {path_and_query} city={city}",
            state.name, method
        ),
    )
        .into_response()
}

/// What an [`EdgeRuntime`] is started with.
pub struct Options {
    /// Region → origin base URL.
    pub origins: Vec<(String, String)>,
    /// Whether the bulk KV route is on (`KV_ROUTE_KEY` set).
    pub bulk_route: bool,
    /// `ORIGIN_TIMEOUT_MS`.
    pub origin_timeout_ms: u32,
    /// `PAGE_CACHE_MS` (`None`: the Worker's default).
    pub page_cache_ms: Option<u32>,
    /// Look IPs up in the database embedded at build time instead of the
    /// test one ([`TEST_NETWORKS`]).
    pub embedded_database: bool,
    /// `TEMPLATE_VERSION` (`None`: unset, KV pages of any template served).
    pub template_version: Option<u32>,
    /// Serve the production Worker (`edge/build`, built without the
    /// `test-mode` feature) instead of the test one, with the same
    /// bindings, `TEST_MODE=1` among them: what a production Worker does
    /// with a test binding.
    pub production_build: bool,
}

/// One bare workerd with the Worker, its KV service, in a scratch directory.
/// Both processes are killed (by pid) and the directory removed on drop.
pub struct EdgeRuntime {
    /// Port of the Worker.
    pub port: u16,
    /// The KV service (seed and inspect KV directly).
    pub kv: edge_kv::Client,
    dir: PathBuf,
    workerd: Child,
    kv_service: Child,
}

impl EdgeRuntime {
    /// Starts workerd and the KV service and waits until the Worker answers
    /// `/healthz`. Fails loudly when the Worker is not built.
    pub async fn start(name: &str, options: Options) -> EdgeRuntime {
        let (build, how) = if options.production_build {
            (edge::build_dir(), "deploy/build-edge.sh")
        } else {
            (edge::test_build_dir(), "deploy/build-edge.sh --test-mode")
        };
        assert!(
            build.join("index.js").is_file() && build.join("index_bg.wasm").is_file(),
            "the edge Worker is not built ({} is missing index.js/index_bg.wasm): \
             run {how} (deploy/test does)",
            build.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "cityboard-edge-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (port, kv_port) = (free_port(), free_port());

        // A KV service that requires a key, as the stack's does: workerd
        // must present it (injected by the config) for any page to load.
        let kv_key = format!("edge-worker-test-kv-key-{:016x}", rand::random::<u64>());
        std::fs::write(dir.join("kv.key"), &kv_key).expect("kv key");
        let kv_log = std::fs::File::create(dir.join("kv.log")).expect("kv log");
        let kv_service = Command::new(cityboard_bin())
            .args([
                "edge-kv",
                "--listen",
                &format!("127.0.0.1:{kv_port}"),
                "--dir",
            ])
            .arg(dir.join("kv"))
            .arg("--key-file")
            .arg(dir.join("kv.key"))
            .stdout(kv_log.try_clone().expect("log"))
            .stderr(kv_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} edge-kv: {e}", cityboard_bin().display()));

        let modules = edge::copy_modules(&build, &dir.join("edge")).expect("copy the Worker");
        std::fs::write(dir.join("cities.ranges"), test_range_table())
            .expect("write the test range table");
        let origins: serde_json::Map<String, serde_json::Value> = options
            .origins
            .iter()
            .map(|(r, u)| (r.clone(), serde_json::Value::from(u.as_str())))
            .collect();
        let timeout = options.origin_timeout_ms.to_string();
        let page_cache = options.page_cache_ms.map(|ms| ms.to_string());
        let mut extra = vec![
            Binding::Text("TEST_MODE", "1"),
            Binding::Text("ORIGIN_TIMEOUT_MS", &timeout),
        ];
        if let Some(ms) = &page_cache {
            extra.push(Binding::Text("PAGE_CACHE_MS", ms));
        }
        let template = options.template_version.map(|v| v.to_string());
        if let Some(v) = &template {
            extra.push(Binding::Text("TEMPLATE_VERSION", v));
        }
        // The test range table, as the data binding the Worker reads in
        // test mode instead of the one embedded at build time.
        if !options.embedded_database {
            extra.push(Binding::Data("TEST_GEO_RANGES", "cities.ranges"));
        }
        let text = EdgeConfig {
            listen: format!("127.0.0.1:{port}"),
            kv: format!("127.0.0.1:{kv_port}"),
            kv_key: Some(kv_key.clone()),
            modules: &modules,
            apex: APEX,
            cities: serde_json::to_string(&test_cities()).expect("cities json"),
            origins: serde_json::to_string(&origins).expect("origins json"),
            extra: &extra,
        }
        .render();
        let config = dir.join("edge.capnp");
        std::fs::write(&config, text).expect("write the workerd config");

        let log = std::fs::File::create(dir.join("workerd.log")).expect("workerd log");
        let workerd_bin = edge::workerd_bin().expect("workerd");
        let workerd = Command::new(&workerd_bin)
            .arg("serve")
            .arg(&config)
            .arg("--verbose")
            .env(FORWARD_KEY_ENV, FORWARD_SECRET)
            .env(
                KV_ROUTE_KEY_ENV,
                if options.bulk_route {
                    KV_ROUTE_SECRET
                } else {
                    ""
                },
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", workerd_bin.display()));
        let mut runtime = EdgeRuntime {
            port,
            kv: edge_kv::Client::with_key(kv_port, kv_key),
            dir,
            workerd,
            kv_service,
        };
        runtime.wait_ready().await;
        runtime
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let worker = http::request(self.port, "GET", "/healthz", &[], b"").await;
            let kv = edge_kv::probe(&self.kv).await;
            if worker.as_ref().is_ok_and(|r| r.status == 200) && kv.is_ok() {
                return;
            }
            let exited = [
                ("workerd", &mut self.workerd),
                ("edge-kv", &mut self.kv_service),
            ]
            .into_iter()
            .find_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (name, s)));
            if let Some((name, status)) = exited {
                panic!("{name} exited with {status} at start:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the edge runtime did not become ready in 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The runtime's and the KV service's logs, for failure messages.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- workerd.log\n{}\n--- kv.log\n{}",
            read("workerd.log"),
            read("kv.log")
        )
    }

    /// A browser's GET (`Accept: text/html…`) plus `headers`.
    pub async fn browse(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> http::Response {
        let mut all = vec![("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
        all.extend_from_slice(headers);
        self.request("GET", host, path, &all, b"").await
    }

    /// A bulk-route call signed with `key` at `timestamp` with `nonce`.
    pub async fn bulk(
        &self,
        body: &[u8],
        key: &str,
        timestamp: i64,
        nonce: &str,
    ) -> http::Response {
        let header = bulk_signature(
            &format!("{APEX}:{}", self.port),
            body,
            key,
            timestamp,
            nonce,
        );
        self.request(
            "POST",
            APEX,
            BULK_PATH,
            &[
                (SIGNATURE_HEADER, &header),
                ("content-type", BULK_CONTENT_TYPE),
            ],
            body,
        )
        .await
    }
}

/// The bulk route's signature (the current version): method, the `Host` as
/// sent, path, no client IP, no city, body hash, `Content-Type`
/// [`BULK_CONTENT_TYPE`].
pub fn bulk_signature(host: &str, body: &[u8], key: &str, timestamp: i64, nonce: &str) -> String {
    bulk_signature_with(sign::Version::CURRENT, host, body, key, timestamp, nonce)
}

/// [`bulk_signature`] of a given scheme version (a publisher of before
/// version 2 signs version 1).
pub fn bulk_signature_with(
    version: sign::Version,
    host: &str,
    body: &[u8],
    key: &str,
    timestamp: i64,
    nonce: &str,
) -> String {
    let fields = sign::Request {
        method: "POST",
        host,
        path_and_query: BULK_PATH,
        client_ip: "",
        city: "",
        body_sha256: sign::body_sha256(body),
        content_type: BULK_CONTENT_TYPE,
    };
    sign::sign_with(
        version,
        &Key::new(key.as_bytes().to_vec()),
        &fields,
        timestamp,
        nonce,
    )
}

/// The `Content-Type` of the bulk route's calls, as the publisher sends it.
pub const BULK_CONTENT_TYPE: &str = "application/json";

/// A fresh random nonce (hex).
pub fn nonce() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Requests go to `host` (a city host, the apex, anything) on the
/// runtime's port; a failure shows the runtime's logs.
impl EdgeRequests for EdgeRuntime {
    fn port(&self) -> u16 {
        self.port
    }

    fn host_header(&self, host: &str) -> String {
        format!("{host}:{}", self.port)
    }

    fn failure_context(&self) -> String {
        format!("\n{}", self.logs())
    }
}

impl Drop for EdgeRuntime {
    fn drop(&mut self) {
        for child in [&mut self.workerd, &mut self.kv_service] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("edge runtime files kept in {}", self.dir.display());
        }
    }
}
