//! Known-answer vectors of the signing scheme, both versions, and of the
//! unsigned-payload mode of version 2 (the streamed upload route).
//! `vectors.json` was written by an independent implementation
//! (`tools/gen_vectors.py`, using only hashlib and hmac), so that agreeing
//! with it proves the scheme, not merely that the code agrees with itself.
//! The Worker checks them inside wasm, region-core on the host, and the
//! schemathesis hooks in Python.

use serde::Deserialize;

use crate::sign::{self, Key, Keyring, Payload, Request, SignatureError, Version};

/// The vectors file, compiled in.
pub const VECTORS_JSON: &str = include_str!("../vectors.json");

/// One vector: a key, the request fields, time and nonce, and the expected
/// canonical bytes and header.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    /// What the case is.
    pub name: String,
    /// Scheme version (1 or 2).
    pub version: u8,
    /// `hashed` (the body's hash is covered) or `unsigned` (the
    /// unsigned-payload mode: it is not).
    pub payload: String,
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
    /// `Content-Type` as sent (covered from version 2 on).
    pub content_type: String,
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
            content_type: &self.content_type,
        }
    }

    /// The vector's scheme version; `None` for a number no version has.
    pub fn scheme(&self) -> Option<Version> {
        Version::from_number(self.version)
    }

    /// The vector's payload mode; `None` for a name no mode has.
    pub fn mode(&self) -> Option<Payload> {
        match self.payload.as_str() {
            "hashed" => Some(Payload::Hashed),
            "unsigned" => Some(Payload::Unsigned),
            _ => None,
        }
    }

    /// The vector's key.
    pub fn key(&self) -> Key {
        Key::new(self.secret.as_bytes().to_vec())
    }
}

/// Checks every vector against this build: key id, canonical bytes, header
/// (and, for the current version, that [`sign::sign`] makes it), that the
/// header verifies, and that it is refused where a verifier retired its
/// version. Also that the file holds both versions, and a version 2 pair
/// that differs in its `Content-Type` alone, whose headers must differ; and
/// unsigned-payload vectors, each verifying only through
/// [`sign::Admitted::check_unsigned_payload`], one of them the same request
/// as a hashed vector, neither of the two verifying the other's mode.
/// Returns the names of failing vectors with what failed; empty means all
/// pass. Meant for tests on both sides.
pub fn check() -> Result<usize, Vec<String>> {
    let all = vectors();
    if all.is_empty() {
        return Err(vec!["vectors.json holds no vectors".to_string()]);
    }
    let mut failures = Vec::new();
    for version in Version::ALL {
        if !all.iter().any(|v| v.scheme() == Some(version)) {
            failures.push(format!("vectors.json holds no {version} vector"));
        }
    }
    for v in &all {
        let Some(version) = v.scheme() else {
            failures.push(format!("{}: no scheme version {}", v.name, v.version));
            continue;
        };
        let Some(mode) = v.mode() else {
            failures.push(format!("{}: no payload mode {:?}", v.name, v.payload));
            continue;
        };
        if mode == Payload::Unsigned {
            failures.extend(check_unsigned(v));
            continue;
        }
        let key = v.key();
        let req = v.request();
        if key.id != v.key_id {
            failures.push(format!("{}: key id {} != {}", v.name, key.id, v.key_id));
        }
        let canonical = hex::encode(sign::canonical(
            version,
            &key.id,
            &req,
            v.timestamp,
            &v.nonce,
        ));
        if canonical != v.canonical_hex {
            failures.push(format!("{}: canonical encoding differs", v.name));
        }
        let header = sign::sign_with(version, &key, &req, v.timestamp, &v.nonce);
        if header != v.header {
            failures.push(format!("{}: header {header} != {}", v.name, v.header));
        }
        if version == Version::CURRENT && sign::sign(&key, &req, v.timestamp, &v.nonce) != v.header
        {
            failures.push(format!("{}: sign() does not make this version", v.name));
        }
        let ring = Keyring::new(key);
        if let Err(e) = ring.verify(&v.header, &req, v.timestamp) {
            failures.push(format!("{}: does not verify: {e}", v.name));
        }
        let strict = ring.with_min_version(Version::CURRENT);
        let retired = strict.verify(&v.header, &req, v.timestamp);
        match (version < Version::CURRENT, retired) {
            (true, Err(SignatureError::RetiredVersion)) | (false, Ok(_)) => {}
            (_, other) => failures.push(format!(
                "{}: with older versions retired: {other:?}",
                v.name
            )),
        }
    }
    failures.extend(content_type_pairs(&all));
    failures.extend(mode_pairs(&all));
    if failures.is_empty() {
        Ok(all.len())
    } else {
        Err(failures)
    }
}

/// One unsigned-payload vector: key id, canonical bytes, header, that it
/// verifies in its mode whatever the body, and that the hashed check (any
/// other route) refuses it.
fn check_unsigned(v: &Vector) -> Vec<String> {
    let mut failures = Vec::new();
    let key = v.key();
    let req = v.request();
    if v.scheme() != Some(Version::V2) {
        failures.push(format!(
            "{}: the unsigned-payload mode is version 2's",
            v.name
        ));
    }
    if key.id != v.key_id {
        failures.push(format!("{}: key id {} != {}", v.name, key.id, v.key_id));
    }
    let canonical = hex::encode(sign::canonical_mode(
        Version::V2,
        Payload::Unsigned,
        &key.id,
        &req,
        v.timestamp,
        &v.nonce,
    ));
    if canonical != v.canonical_hex {
        failures.push(format!("{}: canonical encoding differs", v.name));
    }
    let header = sign::sign_unsigned_payload(&key, &req, v.timestamp, &v.nonce);
    if header != v.header {
        failures.push(format!("{}: header {header} != {}", v.name, v.header));
    }
    let ring = Keyring::new(key).with_min_version(Version::CURRENT);
    let other_body = Request {
        body_sha256: sign::body_sha256(b"not the vector's body"),
        ..req
    };
    for r in [&req, &other_body] {
        match ring.admit(&v.header, v.timestamp) {
            Ok(a) => {
                if let Err(e) = a.check_unsigned_payload(r) {
                    failures.push(format!("{}: does not verify: {e}", v.name));
                }
            }
            Err(e) => failures.push(format!("{}: not admitted: {e}", v.name)),
        }
    }
    if ring.verify(&v.header, &req, v.timestamp) != Err(SignatureError::WrongPayloadMode) {
        failures.push(format!("{}: the hashed check accepts it", v.name));
    }
    failures
}

/// Pairs of vectors that are the same request signed in the two modes:
/// there must be one; their headers differ, and neither verifies in the
/// other mode even with its label rewritten.
fn mode_pairs(all: &[Vector]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut pairs = 0;
    for u in all.iter().filter(|v| v.mode() == Some(Payload::Unsigned)) {
        for h in all.iter().filter(|v| {
            v.mode() == Some(Payload::Hashed)
                && v.version == 2
                && v.request() == u.request()
                && (&v.secret, v.timestamp, &v.nonce) == (&u.secret, u.timestamp, &u.nonce)
        }) {
            pairs += 1;
            let ring = Keyring::new(u.key());
            let req = u.request();
            let as_unsigned = h.header.replacen("v2", "v2u", 1);
            let as_hashed = u.header.replacen("v2u", "v2", 1);
            let unsigned_ok = ring
                .admit(&as_unsigned, h.timestamp)
                .is_ok_and(|a| a.check_unsigned_payload(&req).is_ok());
            if u.header[4..] == h.header[3..]
                || unsigned_ok
                || ring.verify(&as_hashed, &req, u.timestamp).is_ok()
            {
                failures.push(format!(
                    "{} / {}: the payload modes are not kept apart",
                    u.name, h.name
                ));
            }
        }
    }
    if pairs == 0 {
        failures.push("vectors.json holds no request signed in both payload modes".into());
    }
    failures
}

/// The version 2 vectors that differ from another in their
/// `Content-Type` alone: there must be one, each one's header must differ
/// from the other's, and neither may verify the other's request.
fn content_type_pairs(all: &[Vector]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut pairs = 0;
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let same_but_type = a.version == 2
                && b.version == 2
                && a.payload == "hashed"
                && b.payload == "hashed"
                && a.content_type != b.content_type
                && a.request()
                    == Request {
                        content_type: &a.content_type,
                        ..b.request()
                    }
                && (&a.secret, a.timestamp, &a.nonce) == (&b.secret, b.timestamp, &b.nonce);
            if !same_but_type {
                continue;
            }
            pairs += 1;
            let ring = Keyring::new(a.key());
            if a.header == b.header
                || ring.verify(&a.header, &b.request(), a.timestamp).is_ok()
                || ring.verify(&b.header, &a.request(), a.timestamp).is_ok()
            {
                failures.push(format!(
                    "{} / {}: the Content-Type is not covered",
                    a.name, b.name
                ));
            }
        }
    }
    if pairs == 0 {
        failures.push("vectors.json holds no v2 pair that differs in Content-Type alone".into());
    }
    failures
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_independent_vectors_pass() {
        assert_eq!(super::check(), Ok(12));
    }
}
