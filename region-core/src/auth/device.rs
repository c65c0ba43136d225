//! The device cookie: set on a browser when it logs in to an account, so
//! that later log-ins from it are exempt from that account's failed log-in
//! limit. An attacker guessing an account's password from elsewhere then
//! exhausts the account's budget for strangers, not for its owner's
//! browser (the per-IP limit still applies to everyone).
//!
//! Value: `<user id>.<issued unix s>.<HMAC-SHA256 hex, 128 bits>`, honoured
//! for `MAX_AGE`. It names the account it was earned on, so it exempts
//! nothing else.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Id;

type HmacSha256 = Hmac<Sha256>;

/// The device cookie's name.
pub const DEVICE_COOKIE: &str = "cb_device";

/// How long a device stays known after its last log-in.
pub const MAX_AGE_SECS: i64 = 180 * 24 * 3600;

/// Signs and opens device cookies with a key of their own.
#[derive(Clone)]
pub struct DeviceKey(Vec<u8>);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

impl DeviceKey {
    /// Wraps a key derived for this purpose only.
    pub fn new(key: Vec<u8>) -> Self {
        DeviceKey(key)
    }

    fn mac(&self, user: Id, issued: i64) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(format!("device\0{user}\0{issued}").as_bytes());
        m
    }

    /// The cookie value for a browser that logged in to `user` at `now`.
    pub fn issue(&self, user: Id, now: i64) -> String {
        let tag = self.mac(user, now).finalize().into_bytes();
        format!("{user}.{now}.{}", hex::encode(&tag[..16]))
    }

    /// The account `value` was issued for, if this key issued it and it is
    /// younger than `MAX_AGE_SECS` at `now` (constant-time check).
    pub fn open(&self, value: &str, now: i64) -> Option<Id> {
        let mut parts = value.splitn(3, '.');
        let user: Id = parts.next()?.parse().ok()?;
        let issued: i64 = parts.next()?.parse().ok()?;
        let tag = hex::decode(parts.next()?).ok()?;
        if issued > now + 60 || now - issued > MAX_AGE_SECS {
            return None;
        }
        self.mac(user, issued)
            .verify_truncated_left(&tag)
            .ok()
            .filter(|()| tag.len() == 16)
            .map(|()| user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_only_as_issued_and_while_young() {
        let k = DeviceKey::new(b"device key".to_vec());
        let now = 1_800_000_000;
        let v = k.issue(Id(42), now);
        assert_eq!(k.open(&v, now), Some(Id(42)));
        assert_eq!(k.open(&v, now + MAX_AGE_SECS), Some(Id(42)));
        assert_eq!(k.open(&v, now + MAX_AGE_SECS + 1), None);
        assert_eq!(DeviceKey::new(b"other".to_vec()).open(&v, now), None);
        let other_user = v.replacen("42.", "43.", 1);
        assert_eq!(k.open(&other_user, now), None);
        let short = &v[..v.len() - 2];
        assert_eq!(k.open(short, now), None);
        for junk in ["", "42", "42.1", "42.x.00", "a.b.c"] {
            assert_eq!(k.open(junk, now), None, "{junk}");
        }
    }
}
