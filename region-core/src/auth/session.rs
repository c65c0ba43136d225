//! Session access tokens: `v1.<claims>.<mac>`, claims as base64url JSON and
//! an HMAC-SHA256 over `v1.<claims>` with the shared session key.
//!
//! Not JWT: one algorithm, no header to negotiate it, so there is no `alg:
//! none` or key-confusion case to get wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::Id;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "v1.";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user; its region bits name the home region, where sessions are
    /// issued and renewed.
    pub sub: Id,
    /// Random token id: what a revocation names.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

/// Why a token was refused. Every variant is a 401 to the client; they are
/// told apart only in logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed session token")]
    Malformed,
    #[error("session token signature does not verify")]
    Forged,
    #[error("session token expired")]
    Expired,
    #[error("session token was revoked")]
    Revoked,
}

/// The key that signs and verifies session tokens.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// Wraps the shared `session.key` bytes.
    pub fn new(key: Vec<u8>) -> Self {
        SessionKey(key)
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }

    /// A new token for `user`, valid for `ttl` from `now`.
    pub fn issue(&self, user: Id, now: DateTime<Utc>, ttl: chrono::Duration) -> (String, Claims) {
        let claims = Claims {
            sub: user,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
        };
        (self.sign(&claims), claims)
    }

    /// The token for `claims` (tests forge expired ones with it).
    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body));
        let mut m = self.mac();
        m.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// Checks signature (in constant time) and expiry; revocation is the
    /// caller's, since it needs the catalog.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let body = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut m = self.mac();
        m.update(signed.as_bytes());
        m.verify_slice(&tag).map_err(|_| TokenError::Forged)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let now = Utc::now();
        let (token, claims) = key().issue(Id(42), now, chrono::Duration::minutes(15));
        assert_eq!(key().verify(&token, now), Ok(claims));
        assert_eq!(
            key().verify(&token, now + chrono::Duration::minutes(15)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let now = Utc::now();
        let (token, mut claims) = key().issue(Id(42), now, chrono::Duration::minutes(15));
        let other = SessionKey::new(b"another key, same length as the first".to_vec());
        assert_eq!(other.verify(&token, now), Err(TokenError::Forged));
        // Claims changed, signature kept.
        claims.sub = Id(1);
        let (_, tag) = token.rsplit_once('.').unwrap();
        let (changed, _) = key()
            .sign(&claims)
            .rsplit_once('.')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert_eq!(
            key().verify(&format!("{changed}.{tag}"), now),
            Err(TokenError::Forged)
        );
        for bad in ["", "v1.", "v2.abc.def", "v1.!!.??", "no dots"] {
            assert!(key().verify(bad, now).is_err(), "{bad}");
        }
    }
}
