//! CSRF tokens for forms that change state.
//!
//! A logged-in form carries a token derived from the session id, so it is
//! worthless to anyone who cannot read the victim's pages. The log-in and
//! sign-up forms, which have no session yet, use a signed double-submit
//! cookie: the form field must equal the `cb_csrf` cookie, which another
//! site can neither read nor set with a valid signature.
//!
//! JSON requests authenticated by an `Authorization` header need none: a
//! browser never adds that header by itself.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The cookie of the double-submit token of the log-in and sign-up forms.
pub const CSRF_COOKIE: &str = "cb_csrf";
/// The header a cookie-authenticated script request carries the token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Signs and checks CSRF tokens with a key of their own.
#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// Wraps a key derived for this purpose only.
    pub fn new(key: Vec<u8>) -> Self {
        CsrfKey(key)
    }

    fn mac(&self, kind: &str, value: &str) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(kind.as_bytes());
        m.update(&[0]);
        m.update(value.as_bytes());
        m
    }

    /// The token of a logged-in form, bound to the session id.
    pub fn for_session(&self, jti: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("session", jti).finalize().into_bytes())
    }

    /// Whether `token` is the one of session `jti` (constant time).
    pub fn check_session(&self, jti: &str, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|tag| self.mac("session", jti).verify_slice(&tag).is_ok())
    }

    /// A fresh double-submit token: `<nonce>.<mac>`.
    pub fn new_anonymous(&self) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let tag = URL_SAFE_NO_PAD.encode(self.mac("anonymous", &nonce).finalize().into_bytes());
        format!("{nonce}.{tag}")
    }

    /// Whether the form field equals the cookie and the cookie is ours.
    pub fn check_anonymous(&self, cookie: &str, field: &str) -> bool {
        if cookie.as_bytes() != field.as_bytes() {
            return false;
        }
        let Some((nonce, tag)) = cookie.split_once('.') else {
            return false;
        };
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|tag| self.mac("anonymous", nonce).verify_slice(&tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_bind_to_their_session() {
        let k = CsrfKey::new(b"k".to_vec());
        let t = k.for_session("abc");
        assert!(k.check_session("abc", &t));
        assert!(!k.check_session("abd", &t));
        assert!(!k.check_session("abc", ""));
        assert!(!CsrfKey::new(b"other".to_vec()).check_session("abc", &t));
    }

    #[test]
    fn double_submit_needs_equal_values_and_our_signature() {
        let k = CsrfKey::new(b"k".to_vec());
        let t = k.new_anonymous();
        assert!(k.check_anonymous(&t, &t));
        assert!(!k.check_anonymous(&t, "x"));
        let home_made = "00.AAAA";
        assert!(!k.check_anonymous(home_made, home_made));
    }
}
