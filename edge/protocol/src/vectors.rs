//! Known-answer vectors of the signing scheme. `vectors.json` was written by
//! an independent implementation (a short Python script using only hashlib
//! and hmac), so that agreeing with it proves the scheme, not merely that
//! the code agrees with itself. The Worker checks them inside wasm and
//! region-core on the host.

use serde::Deserialize;

use crate::sign::{self, Key, Request};

/// The vectors file, compiled in.
pub const VECTORS_JSON: &str = include_str!("../vectors.json");

/// One vector: a key, the request fields, time and nonce, and the expected
/// canonical bytes and header.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    /// What the case is.
    pub name: String,
    /// The key's secret (UTF-8 text, used as bytes).
    pub secret: String,
    /// Expected key id.
    pub key_id: String,
    /// Request fields.
    pub method: String,
    /// Public host.
    pub host: String,
    /// Path and query.
    pub path_and_query: String,
    /// Client IP.
    pub client_ip: String,
    /// City.
    pub city: String,
    /// Body (UTF-8 text).
    pub body: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Nonce.
    pub nonce: String,
    /// Expected canonical encoding, hex.
    pub canonical_hex: String,
    /// Expected header value.
    pub header: String,
}

/// The parsed vectors (the file is part of the crate, so it always parses;
/// an empty list would make `check` fail loudly).
pub fn vectors() -> Vec<Vector> {
    serde_json::from_str(VECTORS_JSON).unwrap_or_default()
}

impl Vector {
    /// The request the vector signs.
    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            host: &self.host,
            path_and_query: &self.path_and_query,
            client_ip: &self.client_ip,
            city: &self.city,
            body_sha256: sign::body_sha256(self.body.as_bytes()),
        }
    }

    /// The vector's key.
    pub fn key(&self) -> Key {
        Key::new(self.secret.as_bytes().to_vec())
    }
}

/// Checks every vector against this build: key id, canonical bytes, header,
/// and that the header verifies. Returns the names of failing vectors with
/// what failed; empty means all pass. Meant for tests on both sides.
pub fn check() -> Result<usize, Vec<String>> {
    let all = vectors();
    if all.is_empty() {
        return Err(vec!["vectors.json holds no vectors".to_string()]);
    }
    let mut failures = Vec::new();
    for v in &all {
        let key = v.key();
        let req = v.request();
        if key.id != v.key_id {
            failures.push(format!("{}: key id {} != {}", v.name, key.id, v.key_id));
        }
        let canonical = hex::encode(sign::canonical(&key.id, &req, v.timestamp, &v.nonce));
        if canonical != v.canonical_hex {
            failures.push(format!("{}: canonical encoding differs", v.name));
        }
        let header = sign::sign(&key, &req, v.timestamp, &v.nonce);
        if header != v.header {
            failures.push(format!("{}: header {header} != {}", v.name, v.header));
        }
        let ring = sign::Keyring {
            current: key,
            previous: None,
        };
        if let Err(e) = ring.verify(&v.header, &req, v.timestamp) {
            failures.push(format!("{}: does not verify: {e}", v.name));
        }
    }
    if failures.is_empty() {
        Ok(all.len())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_independent_vectors_pass() {
        assert_eq!(super::check(), Ok(4));
    }
}
