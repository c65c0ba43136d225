//! The api of the stack's first region, in process: requests go through the
//! real router, extractors and middleware (tower `oneshot`), against the
//! stack's real databases and Redis.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use region_core::http::{ApiOptions, AppState, app};
use region_core::stack::{Secrets, StackFile};
use tower::ServiceExt;

/// Test keys (the api never reads them from disk here).
pub fn secrets() -> Secrets {
    Secrets {
        session: b"test session key, 32 bytes long!".to_vec(),
        kv_route: b"test kv-route key".to_vec(),
        edge_forward: b"test edge-forward key".to_vec(),
        edge_forward_previous: b"test edge-forward previous".to_vec(),
        operator_token: b"test operator token".to_vec(),
    }
}

/// The api of region 0 as `serve` builds it, with light argon2 parameters
/// (the hashing itself is not what these tests are about) and no page cache
/// unless asked.
pub struct Api {
    pub state: AppState,
    pub apex: String,
}

impl Api {
    pub async fn start(cache: bool) -> Api {
        let home = std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME");
        let stack = StackFile::read(&std::path::PathBuf::from(home).join("state.json")).unwrap();
        let (number, region) = stack.region(&stack.regions[0].name.clone()).unwrap();
        let options = ApiOptions {
            argon2: argon2::Params::new(1024, 1, 1, None).unwrap(),
            cache_ttl: if cache {
                std::time::Duration::from_secs(30)
            } else {
                std::time::Duration::ZERO
            },
            // A loaded test machine must not turn a hit into a miss.
            cache_timeout: std::time::Duration::from_secs(10),
            ..ApiOptions::default()
        };
        let (state, background) = AppState::connect(
            &stack.apex,
            number,
            region,
            &secrets(),
            Arc::new(region_core::clock::SystemClock),
            options,
        )
        .await
        .unwrap();
        // The tasks stop with the test's runtime.
        std::mem::forget(background);
        Api {
            state,
            apex: stack.apex.clone(),
        }
    }

    pub fn host(&self, city: &str) -> String {
        format!("{city}.{}", self.apex)
    }

    /// Sends `req` and returns status, headers and body text.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = app(self.state.clone()).oneshot(req).await.unwrap();
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
