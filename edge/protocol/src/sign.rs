//! The signature the edge puts on every request it forwards to an origin,
//! and the publisher on every call of the internal bulk KV route (design §4).
//!
//! The MAC covers a canonical encoding in which every field is prefixed by
//! its length, so that no two different requests encode alike (with plain
//! concatenation, host `a.b` + path `/c` and host `a.b/` + path `c` would).
//! It covers the public host and the city because the Worker cannot set
//! `Host` on a fetch: the origin reads both from headers, and trusts them
//! only because they are signed. Replayed nonces are the verifier's to
//! refuse: this module is pure and keeps no state.
//!
//! Two versions of the scheme exist ([`Version`]); the header says which
//! one signed (`v1 …`, `v2 …`). Version 2 also covers the request's
//! `Content-Type`, so that a body cannot be sent to a handler that reads it
//! as another media type than the signer meant (a JSON body replayed as a
//! form, say). Signers make version 2; a verifier accepts both unless it
//! was told to retire version 1 ([`Keyring::min_version`]), so that edges
//! and origins can be upgraded one at a time.
//!
//! A photo upload is streamed from the visitor through the Worker to the
//! origin, so nobody can hash its body before it is sent. For that route
//! alone a signature may be made in the unsigned-payload mode
//! ([`Payload::Unsigned`], header `v2u …`): it covers everything version 2
//! covers (the path and query carry the upload token, which the origin
//! checks on its own), but in place of the body hash a fixed marker, under
//! its own domain tag. A signature of one mode therefore never verifies a
//! request in the other, and the mode is not something a verifier infers:
//! [`Admitted::check`] refuses an unsigned-payload signature outright, and
//! only [`Admitted::check_unsigned_payload`], which a verifier calls on the
//! upload route alone, accepts one.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-cityboard-signature";
/// The visitor's IP as the edge saw it; trusted only on signed requests.
pub const CLIENT_IP_HEADER: &str = "x-cityboard-client-ip";
/// The city of the public host the visitor asked for.
pub const CITY_HEADER: &str = "x-cityboard-city";
/// The public host the visitor asked for (the fetch's own `Host` is the
/// origin's).
pub const FORWARDED_HOST_HEADER: &str = "x-forwarded-host";
/// Largest accepted difference between the signer's clock and the
/// verifier's, in seconds. A verifier keeps nonces at least this long
/// (twice, in fact: a timestamp may be this far in the future or the past).
pub const MAX_SKEW_SECS: i64 = 30;
/// How long a verifier must remember a nonce: any longer-ago signature is
/// refused as stale anyway.
pub const NONCE_TTL_SECS: u64 = 2 * MAX_SKEW_SECS as u64 + 1;

/// A version of the signature scheme. Each has its own domain tag, so that
/// a MAC made under one can never verify under the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// Method, host, path and query, timestamp, nonce, client IP, city,
    /// body hash.
    V1,
    /// Everything of version 1, then the `Content-Type` header's value.
    V2,
}

impl Version {
    /// The version signers make.
    pub const CURRENT: Version = Version::V2;

    /// Every version, oldest first.
    pub const ALL: [Version; 2] = [Version::V1, Version::V2];

    /// Its number (1, 2).
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    /// The version with this number.
    pub fn from_number(n: u8) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.number() == n)
    }

    /// Domain tag of its canonical encoding.
    fn tag(self) -> &'static [u8] {
        match self {
            Version::V1 => b"cityboard-signature-v1",
            Version::V2 => b"cityboard-signature-v2",
        }
    }

    /// The header's first word (`v1`, `v2`).
    fn label(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// What a signature says of the body: hashed (every route), or not
/// covered at all (the streamed upload route only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    /// The body's SHA-256 is covered ([`Request::body_sha256`]).
    Hashed,
    /// The body is not covered; [`UNSIGNED_PAYLOAD`] stands in its place and
    /// [`Request::body_sha256`] is ignored. Version 2 only.
    Unsigned,
}

/// The marker covered in place of the body hash in the unsigned-payload
/// mode. Its length (16) differs from a hash's (32), and its mode has its
/// own domain tag besides.
pub const UNSIGNED_PAYLOAD: &[u8] = b"UNSIGNED-PAYLOAD";

/// Domain tag of the unsigned-payload mode's canonical encoding.
const UNSIGNED_PAYLOAD_TAG: &[u8] = b"cityboard-signature-v2-unsigned-payload";

/// Header label of the unsigned-payload mode (version 2 fields).
const UNSIGNED_PAYLOAD_LABEL: &str = "v2u";

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for Version {
    type Err = String;

    /// `1`, `2`, `v1` or `v2` (what a command-line flag is given).
    fn from_str(s: &str) -> Result<Version, String> {
        let s = s.trim();
        s.strip_prefix('v')
            .unwrap_or(s)
            .parse::<u8>()
            .ok()
            .and_then(Version::from_number)
            .ok_or_else(|| format!("{s:?} is not a signature scheme version (1 or 2)"))
    }
}

/// What a signature covers besides key id, timestamp and nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// HTTP method, compared upper-cased.
    pub method: &'a str,
    /// The public host name (with its port, if the visitor used one),
    /// compared lower-cased.
    pub host: &'a str,
    /// Path and query exactly as sent.
    pub path_and_query: &'a str,
    /// The visitor's IP address as text (empty when there is none, e.g. the
    /// publisher's KV calls).
    pub client_ip: &'a str,
    /// The city of the host (empty where none applies).
    pub city: &'a str,
    /// SHA-256 of the body (of the empty string when there is none).
    pub body_sha256: [u8; 32],
    /// The `Content-Type` header's value as sent (empty when there is
    /// none), covered from version 2 on. Compared exactly, byte for byte,
    /// but for surrounding spaces and tabs (HTTP's optional whitespace,
    /// which parsers drop): no case folding, no parameter reordering, since
    /// neither the Worker's fetch nor the origin's HTTP parser changes the
    /// value, and a rule that normalised more would be one more thing two
    /// implementations could disagree on.
    pub content_type: &'a str,
}

/// A `Content-Type` value as the signature covers it: surrounding spaces
/// and tabs trimmed, nothing else changed.
pub fn content_type(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// SHA-256 of a request body.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// A signing key. Its id is derived from the secret itself, so that a
/// rotation (current becomes previous) needs no separate configuration and
/// two keys never share an id by mistake.
#[derive(Clone)]
pub struct Key {
    /// 16 hex digits naming the key in signatures.
    pub id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// The fewest secret bytes a signing key may have (the HMAC-SHA256 output
/// size: a shorter key is easier to guess than the MAC it makes). Both
/// sides refuse to start with less.
pub const MIN_SECRET_BYTES: usize = 32;

impl Key {
    /// A key with `secret`, refused (with a message naming `what`) when it
    /// is shorter than [`MIN_SECRET_BYTES`].
    pub fn strong(what: &str, secret: impl Into<Vec<u8>>) -> Result<Key, String> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "{what} is too short ({} bytes; at least {MIN_SECRET_BYTES})",
                secret.len()
            ));
        }
        Ok(Key::new(secret))
    }

    /// A key with the given secret bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Key {
        let secret = secret.into();
        let mut h = Sha256::new();
        h.update(b"cityboard key id\0");
        h.update(&secret);
        let id = hex::encode(&h.finalize()[..8]);
        Key { id, secret }
    }

    fn mac(
        &self,
        version: Version,
        payload: Payload,
        req: &Request<'_>,
        timestamp: i64,
        nonce: &str,
    ) -> [u8; 32] {
        let mut m = <Hmac<Sha256>>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(&canonical_mode(
            version, payload, &self.id, req, timestamp, nonce,
        ));
        m.finalize().into_bytes().into()
    }
}

/// The bytes the MAC is computed over: the version's tag, then each field
/// as a 4-byte big-endian length followed by its bytes. Version 2 appends
/// the `Content-Type` ([`content_type`]) as a tenth field; version 1 does
/// not read it.
pub fn canonical(
    version: Version,
    key_id: &str,
    req: &Request<'_>,
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    canonical_mode(version, Payload::Hashed, key_id, req, timestamp, nonce)
}

/// The canonical encoding in either mode. In the unsigned-payload mode
/// (version 2 only: a version 1 request is encoded in the hashed mode
/// whatever `payload` says, and [`sign_unsigned_payload`] never makes one)
/// the tag is the mode's own and [`UNSIGNED_PAYLOAD`] replaces the body
/// hash; the other nine fields are version 2's.
pub fn canonical_mode(
    version: Version,
    payload: Payload,
    key_id: &str,
    req: &Request<'_>,
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    let unsigned = payload == Payload::Unsigned && version == Version::V2;
    let method = req.method.to_ascii_uppercase();
    let host = req.host.to_ascii_lowercase();
    let ts = timestamp.to_string();
    let mut fields: Vec<&[u8]> = vec![
        key_id.as_bytes(),
        method.as_bytes(),
        host.as_bytes(),
        req.path_and_query.as_bytes(),
        ts.as_bytes(),
        nonce.as_bytes(),
        req.client_ip.as_bytes(),
        req.city.as_bytes(),
        if unsigned {
            UNSIGNED_PAYLOAD
        } else {
            &req.body_sha256
        },
    ];
    match version {
        Version::V1 => {}
        Version::V2 => fields.push(content_type(req.content_type).as_bytes()),
    }
    let tag = if unsigned {
        UNSIGNED_PAYLOAD_TAG
    } else {
        version.tag()
    };
    let mut out = Vec::with_capacity(tag.len() + 160);
    out.extend_from_slice(tag);
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Whether `nonce` has the accepted shape: 16 to 64 characters of
/// `[A-Za-z0-9_-]` (a random 128-bit value in hex or base64url fits).
pub fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Signs `req` with the current version ([`Version::CURRENT`]) and returns
/// the header value:
/// `v2 kid=<id> ts=<unix seconds> nonce=<nonce> mac=<64 hex digits>`.
/// The caller supplies time and a fresh random nonce (the Worker and the
/// host get randomness differently).
pub fn sign(key: &Key, req: &Request<'_>, timestamp: i64, nonce: &str) -> String {
    sign_with(Version::CURRENT, key, req, timestamp, nonce)
}

/// Signs `req` with the given version of the scheme (the known-answer
/// vectors and tests make version 1 signatures with it).
pub fn sign_with(
    version: Version,
    key: &Key,
    req: &Request<'_>,
    timestamp: i64,
    nonce: &str,
) -> String {
    let mac = key.mac(version, Payload::Hashed, req, timestamp, nonce);
    format!(
        "{version} kid={} ts={} nonce={} mac={}",
        key.id,
        timestamp,
        nonce,
        hex::encode(mac)
    )
}

/// Signs `req` in the unsigned-payload mode (version 2 fields, the body
/// not covered: `req.body_sha256` is ignored) and returns the header value
/// `v2u kid=… ts=… nonce=… mac=…`. Only for the streamed upload route,
/// whose path carries an upload token the origin checks; any other route
/// refuses it.
pub fn sign_unsigned_payload(key: &Key, req: &Request<'_>, timestamp: i64, nonce: &str) -> String {
    let mac = key.mac(Version::V2, Payload::Unsigned, req, timestamp, nonce);
    format!(
        "{UNSIGNED_PAYLOAD_LABEL} kid={} ts={} nonce={} mac={}",
        key.id,
        timestamp,
        nonce,
        hex::encode(mac)
    )
}

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The scheme version it names.
    pub version: Version,
    /// Whether it covers the body ([`Payload::Unsigned`] only with `v2u`).
    pub payload: Payload,
    /// Id of the key it claims.
    pub key_id: String,
    /// Unix seconds at signing.
    pub timestamp: i64,
    /// The signer's nonce.
    pub nonce: String,
    /// The MAC.
    pub mac: [u8; 32],
}

/// Why a signature was refused. The texts are safe to show to a client:
/// they say which check failed, never a key or a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// Not a `v1 kid=… ts=… nonce=… mac=…` (or `v2 …`) header.
    Malformed,
    /// Made with a scheme version older than the verifier accepts.
    RetiredVersion,
    /// Signed with a key that is neither the current nor the previous one.
    UnknownKey,
    /// Signed with the previous key after its expiry.
    ExpiredKey,
    /// The timestamp is more than `MAX_SKEW_SECS` away from now.
    Stale,
    /// The MAC does not match: some field differs from what was signed.
    BadMac,
    /// An unsigned-payload signature where the body must be covered, or a
    /// hashed one where the unsigned-payload mode was expected.
    WrongPayloadMode,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "malformed signature header",
            SignatureError::RetiredVersion => {
                "signature made with a retired version of the signing scheme"
            }
            SignatureError::UnknownKey => "signature made with an unknown key",
            SignatureError::ExpiredKey => "signature made with a previous key past its expiry",
            SignatureError::Stale => "signature timestamp outside the accepted window",
            SignatureError::BadMac => "signature does not match the request",
            SignatureError::WrongPayloadMode => {
                "signature's payload mode is not the one this route accepts"
            }
        })
    }
}

impl std::error::Error for SignatureError {}

impl Signature {
    /// Parses a header value: the version (`v1` or `v2`), then the four
    /// fields in order, once each.
    pub fn parse(header: &str) -> Result<Signature, SignatureError> {
        let mut parts = header.trim().split(' ').filter(|p| !p.is_empty());
        let (version, payload) = match parts.next() {
            Some(UNSIGNED_PAYLOAD_LABEL) => (Version::V2, Payload::Unsigned),
            label => (
                label
                    .and_then(|label| Version::ALL.into_iter().find(|v| v.label() == label))
                    .ok_or(SignatureError::Malformed)?,
                Payload::Hashed,
            ),
        };
        let mut field = |name: &str| -> Result<&str, SignatureError> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .ok_or(SignatureError::Malformed)
        };
        let key_id = field("kid")?;
        let timestamp = field("ts")?;
        let nonce = field("nonce")?;
        let mac = field("mac")?;
        if parts.next().is_some() {
            return Err(SignatureError::Malformed);
        }
        if key_id.is_empty() || key_id.len() > 64 || !valid_nonce(nonce) {
            return Err(SignatureError::Malformed);
        }
        let timestamp = timestamp
            .parse::<i64>()
            .map_err(|_| SignatureError::Malformed)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(mac, &mut bytes).map_err(|_| SignatureError::Malformed)?;
        Ok(Signature {
            version,
            payload,
            key_id: key_id.to_string(),
            timestamp,
            nonce: nonce.to_string(),
            mac: bytes,
        })
    }
}

/// The keys a verifier accepts: the current one and, during a rotation,
/// the previous one until its expiry; and the oldest scheme version it
/// accepts.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// The key signers use now.
    pub current: Key,
    /// The key they used before the last rotation.
    pub previous: Option<Key>,
    /// Unix seconds from which a signature by `previous` is refused (none:
    /// accepted for as long as it is configured). A rotation is over once
    /// every signer has the new key; the expiry makes sure an old key that
    /// nobody removed stops working anyway.
    pub previous_expires: Option<i64>,
    /// The oldest scheme version accepted: [`Version::V1`] while signers
    /// may still make it (a rolling upgrade), [`Version::V2`] once none
    /// does.
    pub min_version: Version,
}

impl Keyring {
    /// Only `current`, no previous key, every version accepted.
    pub fn new(current: Key) -> Keyring {
        Keyring {
            current,
            previous: None,
            previous_expires: None,
            min_version: Version::V1,
        }
    }

    /// With `previous` accepted too, until `expires` (unix seconds) if
    /// given.
    pub fn with_previous(mut self, previous: Key, expires: Option<i64>) -> Keyring {
        self.previous = Some(previous);
        self.previous_expires = expires;
        self
    }

    /// With versions older than `min` refused.
    pub fn with_min_version(mut self, min: Version) -> Keyring {
        self.min_version = min;
        self
    }

    /// Checks `header` against `req` at time `now` (unix seconds): shape,
    /// key id, clock skew, then the MAC in constant time. Returns the parsed
    /// signature so that the caller can refuse a nonce it has seen.
    pub fn verify(
        &self,
        header: &str,
        req: &Request<'_>,
        now: i64,
    ) -> Result<Signature, SignatureError> {
        self.admit(header, now)?.check(req)
    }

    /// The checks that need nothing of the request: shape, version, key
    /// id (and the previous key's expiry) and clock skew. A verifier runs
    /// these before it reads a body, so that a request without a current
    /// signature costs it no buffering; the MAC is then checked with
    /// [`Admitted::check`].
    pub fn admit(&self, header: &str, now: i64) -> Result<Admitted<'_>, SignatureError> {
        let sig = Signature::parse(header)?;
        if sig.version < self.min_version {
            return Err(SignatureError::RetiredVersion);
        }
        let key = if self.current.id == sig.key_id {
            &self.current
        } else {
            match &self.previous {
                Some(previous) if previous.id == sig.key_id => {
                    if self.previous_expires.is_some_and(|at| now >= at) {
                        return Err(SignatureError::ExpiredKey);
                    }
                    previous
                }
                _ => return Err(SignatureError::UnknownKey),
            }
        };
        if now.abs_diff(sig.timestamp) > MAX_SKEW_SECS as u64 {
            return Err(SignatureError::Stale);
        }
        Ok(Admitted { sig, key })
    }
}

/// A signature whose shape, key and time passed ([`Keyring::admit`]); its
/// MAC is not checked yet.
#[derive(Debug)]
pub struct Admitted<'k> {
    sig: Signature,
    key: &'k Key,
}

impl Admitted<'_> {
    /// The mode the signature claims (a verifier that is not on the upload
    /// route need not look: [`Admitted::check`] refuses the unsigned one).
    pub fn payload(&self) -> Payload {
        self.sig.payload
    }

    /// Checks the MAC over `req` in constant time; the signature, for the
    /// caller to refuse a nonce it has seen. An unsigned-payload signature
    /// is refused ([`SignatureError::WrongPayloadMode`]).
    pub fn check(self, req: &Request<'_>) -> Result<Signature, SignatureError> {
        self.check_mode(Payload::Hashed, req)
    }

    /// Checks an unsigned-payload signature over `req` (whose body hash is
    /// ignored). Only for the streamed upload route, after the caller has
    /// made sure it is that route; a hashed signature is refused.
    pub fn check_unsigned_payload(self, req: &Request<'_>) -> Result<Signature, SignatureError> {
        self.check_mode(Payload::Unsigned, req)
    }

    fn check_mode(self, mode: Payload, req: &Request<'_>) -> Result<Signature, SignatureError> {
        let Admitted { sig, key } = self;
        if sig.payload != mode {
            return Err(SignatureError::WrongPayloadMode);
        }
        let expected = key.mac(sig.version, sig.payload, req, sig.timestamp, &sig.nonce);
        let diff = expected
            .iter()
            .zip(sig.mac.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(SignatureError::BadMac);
        }
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &[u8]) -> Request<'_> {
        Request {
            method: "POST",
            host: "boston.cityboard.localhost",
            path_and_query: "/post?x=1",
            client_ip: "203.0.113.7",
            city: "boston",
            body_sha256: body_sha256(body),
            content_type: "application/json",
        }
    }

    const NONCE: &str = "0123456789abcdef0123";

    #[test]
    fn a_key_shorter_than_32_bytes_is_refused() {
        let err = Key::strong("FORWARD_KEY", vec![7u8; 31]).unwrap_err();
        assert!(
            err.contains("FORWARD_KEY") && err.contains("31 bytes"),
            "{err}"
        );
        assert_eq!(
            Key::strong("FORWARD_KEY", vec![7u8; 32]).unwrap().id,
            Key::new(vec![7u8; 32]).id
        );
    }

    #[test]
    fn a_signature_verifies_and_any_changed_field_breaks_it() {
        let key = Key::new(b"secret key bytes".to_vec());
        let ring = Keyring::new(key.clone());
        let h = sign(&key, &req(b"{}"), 1000, NONCE);
        assert!(h.starts_with("v2 "), "{h}");
        assert_eq!(ring.verify(&h, &req(b"{}"), 1010).unwrap().nonce, NONCE);
        // Case of method and host does not matter; everything else does.
        let mut r = req(b"{}");
        r.method = "post";
        r.host = "BOSTON.cityboard.localhost";
        assert!(ring.verify(&h, &r, 1000).is_ok());
        let tampered = [
            Request {
                method: "PUT",
                ..req(b"{}")
            },
            Request {
                host: "newyork.cityboard.localhost",
                ..req(b"{}")
            },
            Request {
                path_and_query: "/post?x=2",
                ..req(b"{}")
            },
            Request {
                client_ip: "203.0.113.8",
                ..req(b"{}")
            },
            Request {
                city: "newyork",
                ..req(b"{}")
            },
            req(b"{ }"),
            Request {
                content_type: "application/x-www-form-urlencoded",
                ..req(b"{}")
            },
            Request {
                content_type: "",
                ..req(b"{}")
            },
            Request {
                content_type: "Application/JSON",
                ..req(b"{}")
            },
        ];
        for t in tampered {
            assert_eq!(ring.verify(&h, &t, 1000), Err(SignatureError::BadMac));
        }
    }

    #[test]
    fn stale_unknown_and_malformed_are_told_apart() {
        let key = Key::new(b"k1 secret".to_vec());
        let old = Key::new(b"k0 secret".to_vec());
        let ring = Keyring::new(key.clone()).with_previous(old.clone(), None);
        let r = req(b"");
        assert!(ring.verify(&sign(&old, &r, 0, NONCE), &r, 0).is_ok());
        let other = Key::new(b"k9 secret".to_vec());
        assert_eq!(
            ring.verify(&sign(&other, &r, 0, NONCE), &r, 0),
            Err(SignatureError::UnknownKey)
        );
        let h = sign(&key, &r, 0, NONCE);
        assert_eq!(ring.verify(&h, &r, 31), Err(SignatureError::Stale));
        assert_eq!(ring.verify(&h, &r, -31), Err(SignatureError::Stale));
        assert!(ring.verify(&h, &r, 30).is_ok());
        for bad in [
            "",
            "v2 kid=a ts=0 nonce=0123456789abcdef mac=00",
            &h.replacen("v2", "v3", 1),
            &h.replacen("v2", "V2", 1),
            &h.replace("nonce=", "nonce=!"),
            &h.replace(" mac=", " mac=zz"),
            &format!("{h} extra=1"),
            &h.replace("ts=0", "ts=zero"),
        ] {
            assert_eq!(ring.verify(bad, &r, 0), Err(SignatureError::Malformed));
        }
    }

    #[test]
    fn length_prefixes_keep_neighbouring_fields_apart() {
        let a = Request {
            host: "a.b",
            path_and_query: "/c",
            ..req(b"")
        };
        let b = Request {
            host: "a.b/",
            path_and_query: "c",
            ..req(b"")
        };
        for v in Version::ALL {
            assert_ne!(
                canonical(v, "k", &a, 0, NONCE),
                canonical(v, "k", &b, 0, NONCE)
            );
        }
    }

    #[test]
    fn version_1_ignores_the_content_type_and_still_verifies_until_retired() {
        let key = Key::new(b"secret key bytes".to_vec());
        let ring = Keyring::new(key.clone());
        let r = req(b"{}");
        let v1 = sign_with(Version::V1, &key, &r, 0, NONCE);
        assert!(v1.starts_with("v1 "), "{v1}");
        let sig = ring.verify(&v1, &r, 0).unwrap();
        assert_eq!(sig.version, Version::V1);
        // Version 1 never covered it: another Content-Type still verifies.
        let other = Request {
            content_type: "text/plain",
            ..r
        };
        assert!(ring.verify(&v1, &other, 0).is_ok());
        // The two versions never share a MAC, whatever the fields.
        let v2 = sign(&key, &r, 0, NONCE);
        assert_ne!(v1[3..], v2[3..]);
        assert_eq!(
            ring.verify(&v1.replacen("v1", "v2", 1), &r, 0),
            Err(SignatureError::BadMac)
        );
        assert_eq!(
            ring.verify(&v2.replacen("v2", "v1", 1), &r, 0),
            Err(SignatureError::BadMac)
        );
        // Retired: refused before its MAC is looked at; version 2 passes.
        let strict = ring.clone().with_min_version(Version::V2);
        assert_eq!(
            strict.verify(&v1, &r, 0),
            Err(SignatureError::RetiredVersion)
        );
        assert_eq!(strict.verify(&v2, &r, 0).unwrap().version, Version::V2);
    }

    #[test]
    fn the_content_type_is_compared_exactly_but_for_surrounding_whitespace() {
        assert_eq!(
            content_type(" \tapplication/json; charset=utf-8\t "),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type(""), "");
        let key = Key::new(b"secret key bytes".to_vec());
        let ring = Keyring::new(key.clone());
        let h = sign(&key, &req(b"{}"), 0, NONCE);
        let padded = Request {
            content_type: "  application/json\t",
            ..req(b"{}")
        };
        assert!(ring.verify(&h, &padded, 0).is_ok());
        let inner = Request {
            content_type: "application/ json",
            ..req(b"{}")
        };
        assert_eq!(ring.verify(&h, &inner, 0), Err(SignatureError::BadMac));
    }

    #[test]
    fn the_previous_key_is_refused_from_its_expiry_on() {
        let key = Key::new(b"k1 secret".to_vec());
        let old = Key::new(b"k0 secret".to_vec());
        let ring = Keyring::new(key.clone()).with_previous(old.clone(), Some(1000));
        let r = req(b"");
        assert!(ring.verify(&sign(&old, &r, 999, NONCE), &r, 999).is_ok());
        assert_eq!(
            ring.verify(&sign(&old, &r, 1000, NONCE), &r, 1000),
            Err(SignatureError::ExpiredKey)
        );
        // Signed just before the expiry, checked after it: refused too.
        assert_eq!(
            ring.verify(&sign(&old, &r, 999, NONCE), &r, 1001),
            Err(SignatureError::ExpiredKey)
        );
        // The current key is not affected.
        assert!(ring.verify(&sign(&key, &r, 5000, NONCE), &r, 5000).is_ok());
    }

    #[test]
    fn the_unsigned_payload_mode_never_verifies_the_hashed_one_nor_the_reverse() {
        let key = Key::new(b"secret key bytes".to_vec());
        let ring = Keyring::new(key.clone());
        let r = Request {
            path_and_query: "/post/7/photos?token=abc",
            content_type: "multipart/form-data; boundary=x",
            ..req(b"")
        };
        let u = sign_unsigned_payload(&key, &r, 0, NONCE);
        assert!(u.starts_with("v2u "), "{u}");
        // The body is not covered: any body hash verifies.
        let other_body = Request {
            body_sha256: body_sha256(b"anything at all"),
            ..r
        };
        let sig = ring
            .admit(&u, 0)
            .unwrap()
            .check_unsigned_payload(&other_body)
            .unwrap();
        assert_eq!(sig.payload, Payload::Unsigned);
        assert_eq!(sig.version, Version::V2);
        // Everything else is.
        for t in [
            Request {
                path_and_query: "/post/7/photos?token=abd",
                ..r
            },
            Request {
                content_type: "multipart/form-data; boundary=y",
                ..r
            },
            Request {
                client_ip: "203.0.113.8",
                ..r
            },
            Request { city: "paris", ..r },
        ] {
            assert_eq!(
                ring.admit(&u, 0).unwrap().check_unsigned_payload(&t),
                Err(SignatureError::BadMac)
            );
        }
        // The plain check (every other route) refuses the mode outright.
        assert_eq!(
            ring.verify(&u, &r, 0),
            Err(SignatureError::WrongPayloadMode)
        );
        // A hashed signature is refused where the unsigned mode is asked...
        let h = sign(&key, &r, 0, NONCE);
        assert_eq!(
            ring.admit(&h, 0).unwrap().check_unsigned_payload(&r),
            Err(SignatureError::WrongPayloadMode)
        );
        // ...and relabelled either way its MAC does not match: the modes
        // have their own tags.
        assert_eq!(
            ring.admit(&h.replacen("v2", "v2u", 1), 0)
                .unwrap()
                .check_unsigned_payload(&r),
            Err(SignatureError::BadMac)
        );
        assert_eq!(
            ring.verify(&u.replacen("v2u", "v2", 1), &r, 0),
            Err(SignatureError::BadMac)
        );
        assert_ne!(
            canonical_mode(Version::V2, Payload::Unsigned, "k", &r, 0, NONCE),
            canonical(Version::V2, "k", &r, 0, NONCE)
        );
        // Retiring version 1 leaves the mode (a version 2 one) accepted.
        let strict = ring.with_min_version(Version::V2);
        assert!(
            strict
                .admit(&u, 0)
                .unwrap()
                .check_unsigned_payload(&r)
                .is_ok()
        );
    }

    #[test]
    fn versions_parse_from_flags() {
        for (text, v) in [
            ("1", Version::V1),
            ("v2", Version::V2),
            (" 2 ", Version::V2),
        ] {
            assert_eq!(text.parse::<Version>(), Ok(v));
        }
        for bad in ["0", "3", "v", "two", ""] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
        assert_eq!(Version::CURRENT, Version::V2);
        assert_eq!(Version::V1.to_string(), "v1");
    }
}
