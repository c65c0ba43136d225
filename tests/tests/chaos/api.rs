//! The chaos stack's apis as the edge reaches them: each request goes
//! straight to the api of the city's region, signed with the stack's
//! forward key exactly as the Worker signs what it forwards (the origin
//! refuses anything else). Going around the edge keeps the answer the api's
//! own: a killed api is a connection error here, not the Worker's 502.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cityboard_deploy::edge::FORWARD_KEY_FILE;
use cityboard_deploy::http::{self, Response};
use cityboard_deploy::secrets::read_secret;
use cityboard_protocol::sign::{self, Key};
use cityboard_tests::{Home, StackState};

/// The visitor address every request reports (TEST-NET-3).
const CLIENT_IP: &str = "203.0.113.77";

/// What every request says its body is (and the signature covers).
const CONTENT_TYPE: &str = "application/json";

/// Signed requests to the apis of one stack.
#[derive(Clone)]
pub struct Apis {
    apex: String,
    key: Key,
    /// City slug → api port of its region.
    ports: HashMap<String, u16>,
}

impl Apis {
    /// The apis of the stack described by `state`, whose home is `home`.
    pub fn new(home: &Path, state: &StackState) -> Apis {
        let secrets = Home::new(home).expect("home").secrets_dir();
        let key = read_secret(&secrets, FORWARD_KEY_FILE).expect("the forward key");
        let ports = state
            .regions
            .iter()
            .flat_map(|r| {
                r.shards
                    .iter()
                    .flat_map(|s| s.cities.iter().map(|c| (c.clone(), r.api_port)))
            })
            .collect();
        Apis {
            apex: state.apex.clone(),
            key: Key::new(key.into_bytes()),
            ports,
        }
    }

    /// `METHOD path` on `city`'s host, as the edge forwards it, with the
    /// bearer `token` if any. A connection error (the api is down or died
    /// mid-request) is an `Err`.
    pub async fn send(
        &self,
        method: &str,
        city: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Response> {
        let port = *self.ports.get(city).context("a city of the stack")?;
        let host = format!("{city}.{}", self.apex);
        let fields = sign::Request {
            method,
            host: &host,
            path_and_query: path,
            client_ip: CLIENT_IP,
            city,
            body_sha256: sign::body_sha256(body),
            content_type: CONTENT_TYPE,
        };
        let nonce = format!("{:032x}", rand::random::<u128>());
        let signature = sign::sign(&self.key, &fields, chrono::Utc::now().timestamp(), &nonce);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            // The Worker's fetch goes to the origin's address; the signed
            // headers say which host and city it was for.
            ("host", "127.0.0.1"),
            (sign::FORWARDED_HOST_HEADER, host.as_str()),
            (sign::CITY_HEADER, city),
            (sign::CLIENT_IP_HEADER, CLIENT_IP),
            (sign::SIGNATURE_HEADER, signature.as_str()),
            ("content-type", CONTENT_TYPE),
            ("accept", "application/json"),
        ];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        http::request(port, method, path, &headers, body).await
    }

    /// Signs up a new user at `city`'s region and logs in: the bearer token
    /// (which every region accepts).
    pub async fn user(&self, city: &str, name: &str) -> Result<String> {
        let email = format!("{name}-{:08x}@example.com", rand::random::<u32>());
        let body = serde_json::json!({"email": email, "password": "correct horse battery staple"})
            .to_string();
        let r = self
            .send("POST", city, "/signup", None, body.as_bytes())
            .await?;
        if r.status != 201 {
            bail!("signup: {} {}", r.status, r.text());
        }
        let r = self
            .send("POST", city, "/login", None, body.as_bytes())
            .await?;
        if r.status != 200 {
            bail!("login: {} {}", r.status, r.text());
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        Ok(v["access_token"]
            .as_str()
            .context("an access token")?
            .to_string())
    }
}
