//! The api of the stack's first region, in process: requests go through the
//! real router, extractors and middleware (tower `oneshot`), against the
//! stack's real databases and Redis. `send` signs every request the way the
//! edge does (the origin requires it), so tests read as if they came
//! through the Worker.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cityboard_protocol::sign::{self, Key};
use region_core::clock::SharedClock;
use region_core::http::{AppState, app, operator_app};
use region_core::limits::Limits;
use region_core::roles::api::{ApiOptions, connect};
use region_core::stack::{PreviousKey, Secrets, StackFile};
use tower::ServiceExt;

/// The visitor address the test edge reports (TEST-NET-3).
pub const CLIENT_IP: &str = "203.0.113.9";

/// Test keys (the api never reads them from disk here). The forwarding
/// keys are 32 bytes or more, as the api requires.
pub fn secrets() -> Secrets {
    Secrets {
        session: b"test session key, 32 bytes long!".to_vec(),
        kv_route: b"test kv-route key".to_vec(),
        edge_forward: b"test edge-forward key, 32 bytes long".to_vec(),
        edge_forward_previous: Some(PreviousKey {
            key: previous_forward_key(),
            expires: chrono::DateTime::<chrono::Utc>::MAX_UTC,
        }),
        operator_token: b"test operator token".to_vec(),
    }
}

/// The previous forwarding key of [`secrets`] (it never expires there).
pub fn previous_forward_key() -> Vec<u8> {
    b"test edge-forward previous key, 32 bytes".to_vec()
}

/// What an in-process api is started with, beyond what every test shares.
pub struct Setup {
    /// Listing pages in Redis (30 s).
    pub cache: bool,
    /// `ApiOptions::require_signatures` (false: `--allow-unsigned`).
    pub require_signatures: bool,
    pub clock: SharedClock,
    pub secrets: Secrets,
    /// Another non-evicting store than the stack's (e.g. one that is down).
    pub store_url: Option<String>,
    /// `ApiOptions::apply_wait` (zero: every write answers 202). 5 s by
    /// default, not the roles' 1.5 s: on CI's two cores, under the whole
    /// parallel phase, a write has taken longer than 1.5 s to apply, and a
    /// test that expects its 201 then met a 202. A write applied sooner
    /// still answers at once.
    pub apply_wait: std::time::Duration,
    /// Another broker than the stack's (e.g. one that is down).
    pub broker: Option<String>,
    /// Which region of the stack (index in `state.json`).
    pub region: usize,
    /// `ApiOptions::archive_url` (none: `DELETE /old_posts` answers 503).
    pub archive_url: Option<String>,
    /// `ApiOptions::request_timeout`.
    pub request_timeout: std::time::Duration,
    /// `ApiOptions::limits`: off unless a test is about them (every test
    /// request comes from `CLIENT_IP`, so the defaults would soon refuse
    /// the suite's sign-ups).
    pub limits: Limits,
    /// `ApiOptions::signing_min_version` (`--signing-min-version`).
    pub signing_min_version: sign::Version,
    /// `ApiOptions::photos_url` (none: uploads and `/media/` answer 503).
    pub photos_url: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            cache: false,
            require_signatures: true,
            clock: Arc::new(region_core::clock::SystemClock),
            secrets: secrets(),
            store_url: None,
            apply_wait: std::time::Duration::from_secs(5),
            broker: None,
            region: 0,
            archive_url: None,
            request_timeout: ApiOptions::default().request_timeout,
            limits: Limits {
                enabled: false,
                ..Limits::default()
            },
            signing_min_version: ApiOptions::default().signing_min_version,
            photos_url: None,
        }
    }
}

/// The api of a region (the first unless told) as `serve` builds it, with light argon2 parameters
/// (the hashing itself is not what these tests are about) and no page cache
/// unless asked.
pub struct Api {
    pub state: AppState,
    pub apex: String,
    /// The key the test edge signs with.
    pub key: Key,
}

impl Api {
    pub async fn start(cache: bool) -> Api {
        Api::start_with(Setup {
            cache,
            ..Setup::default()
        })
        .await
    }

    pub async fn start_with(setup: Setup) -> Api {
        let home = std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME");
        let state_file = std::path::PathBuf::from(home).join("state.json");
        let stack = StackFile::read(&state_file).unwrap();
        let (number, region) = stack
            .region(&stack.regions[setup.region].name.clone())
            .unwrap();
        let mut region = region.clone();
        if let Some(url) = setup.store_url {
            region.redis_store_url = url;
        }
        let options = ApiOptions {
            argon2: argon2::Params::new(1024, 1, 1, None).unwrap(),
            cache_ttl: if setup.cache {
                std::time::Duration::from_secs(30)
            } else {
                std::time::Duration::ZERO
            },
            // A loaded test machine must not turn a hit into a miss.
            cache_timeout: std::time::Duration::from_secs(10),
            require_signatures: setup.require_signatures,
            apply_wait: setup.apply_wait,
            broker: setup
                .broker
                .or_else(|| region_core::roles::common::broker_from_state(&state_file).ok()),
            regions: stack.regions.iter().map(|r| r.name.clone()).collect(),
            archive_url: setup.archive_url,
            request_timeout: setup.request_timeout,
            limits: setup.limits,
            signing_min_version: setup.signing_min_version,
            photos_url: setup.photos_url,
            ..ApiOptions::default()
        };
        let (state, background) = connect(
            &stack.apex,
            number,
            &region,
            &setup.secrets,
            setup.clock,
            options,
        )
        .await
        .unwrap();
        // The tasks stop with the test's runtime.
        std::mem::forget(background);
        Api {
            state,
            apex: stack.apex.clone(),
            key: Key::new(setup.secrets.edge_forward.clone()),
        }
    }

    pub fn host(&self, city: &str) -> String {
        format!("{city}.{}", self.apex)
    }

    /// What the edge would forward for `req`: its `Host` becomes the public
    /// host, the city is that host's (empty for any other host), the
    /// visitor is `CLIENT_IP`, signed now (by the api's clock) with the
    /// api's current key.
    pub async fn forward(&self, req: Request<Body>) -> Forward {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let host = parts
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default();
        let city = host
            .strip_suffix(&format!(".{}", self.apex))
            .unwrap_or("")
            .to_string();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        let is_upload = region_core::http::uploads::is_upload(
            &Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .body(())
                .unwrap(),
        );
        let mut headers = parts.headers;
        headers.remove("host");
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Forward {
            method: parts.method.to_string(),
            host,
            path,
            client_ip: CLIENT_IP.to_string(),
            city,
            body,
            content_type,
            headers,
            key: self.key.clone(),
            timestamp: self.state.clock.now().timestamp(),
            nonce: new_nonce(),
            version: sign::Version::CURRENT,
            payload: if is_upload {
                sign::Payload::Unsigned
            } else {
                sign::Payload::Hashed
            },
        }
    }

    /// `req` as the edge forwards it: signed, with the edge's headers.
    pub async fn signed(&self, req: Request<Body>) -> Request<Body> {
        let f = self.forward(req).await;
        f.request(&f.signature())
    }

    /// Sends `req` signed by the test edge (unless it carries a signature
    /// already) and returns status, headers and body text. Operator paths
    /// are sent as they are: nobody signs those.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let operator = ["/healthz", "/openapi.json"].contains(&req.uri().path());
        let req = if operator || req.headers().contains_key(sign::SIGNATURE_HEADER) {
            req
        } else {
            self.signed(req).await
        };
        self.send_raw(req).await
    }

    /// Sends `req`, as it is, to the operator's listener
    /// (`http::operator_app`: `/metrics`, `DELETE /old_posts`).
    pub async fn send_operator(&self, req: Request<Body>) -> Reply {
        reply(operator_app(self.state.clone()).oneshot(req).await.unwrap()).await
    }

    /// Sends `req` signed by the test edge as coming from visitor `ip`.
    pub async fn send_from(&self, ip: &str, req: Request<Body>) -> Reply {
        let mut f = self.forward(req).await;
        f.client_ip = ip.to_string();
        self.send_raw(f.request(&f.signature())).await
    }

    /// Sends `req` exactly as it is (no signature added).
    pub async fn send_raw(&self, req: Request<Body>) -> Reply {
        reply(app(self.state.clone()).oneshot(req).await.unwrap()).await
    }

    pub async fn get(&self, city: &str, path: &str, accept: &str) -> Reply {
        self.send(
            Request::get(path)
                .header("host", self.host(city))
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, json: serde_json::Value) -> Reply {
        self.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(json.to_string()))
                .unwrap(),
        )
        .await
    }
}

/// Status, headers and body text of `res`.
async fn reply(res: axum::response::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A random nonce of the accepted shape (32 hex digits).
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The fields the edge signs, and the other headers of the request; change
/// a field after `signature()` to tamper with it.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: String,
    /// The public host (`x-forwarded-host`; the request's `Host` too).
    pub host: String,
    pub path: String,
    pub client_ip: String,
    pub city: String,
    pub body: Vec<u8>,
    /// The `Content-Type` signed (empty: none). The one sent is the
    /// request's own, among `headers`: change either to tamper.
    pub content_type: String,
    /// Headers besides the edge's.
    pub headers: axum::http::HeaderMap,
    pub key: Key,
    pub timestamp: i64,
    pub nonce: String,
    /// The scheme version it signs with (the current one unless a test
    /// makes an old edge's signature).
    pub version: sign::Version,
    /// The payload mode: unsigned for a photo upload, as the Worker
    /// streams it; hashed for everything else.
    pub payload: sign::Payload,
}

impl Forward {
    /// The `x-cityboard-signature` value of these fields.
    pub fn signature(&self) -> String {
        let req = sign::Request {
            method: &self.method,
            host: &self.host,
            path_and_query: &self.path,
            client_ip: &self.client_ip,
            city: &self.city,
            body_sha256: sign::body_sha256(&self.body),
            content_type: &self.content_type,
        };
        match self.payload {
            sign::Payload::Hashed => {
                sign::sign_with(self.version, &self.key, &req, self.timestamp, &self.nonce)
            }
            sign::Payload::Unsigned => {
                sign::sign_unsigned_payload(&self.key, &req, self.timestamp, &self.nonce)
            }
        }
    }

    /// The request the edge sends, with `signature` as its signature header.
    pub fn request(&self, signature: &str) -> Request<Body> {
        let mut b = Request::builder()
            .method(self.method.as_str())
            .uri(self.path.as_str());
        for (name, value) in &self.headers {
            b = b.header(name, value);
        }
        // The Worker's fetch goes to the origin's own address: `Host` says
        // nothing about the city; the signed headers do.
        b = b.header("host", "127.0.0.1");
        if !self.host.is_empty() {
            b = b.header(sign::FORWARDED_HOST_HEADER, self.host.as_str());
        }
        b.header(sign::CITY_HEADER, self.city.as_str())
            .header(sign::CLIENT_IP_HEADER, self.client_ip.as_str())
            .header(sign::SIGNATURE_HEADER, signature)
            .body(Body::from(self.body.clone()))
            .unwrap()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an RFC 9457 problem with `status` and returns its `type`.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        p["type"].as_str().unwrap().to_string()
    }

    /// The value of `name` among the Set-Cookie headers.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let (kv, _) = v.split_once(';').unwrap_or((v, ""));
                let (k, val) = kv.split_once('=')?;
                (k == name).then(|| val.to_string())
            })
    }
}
