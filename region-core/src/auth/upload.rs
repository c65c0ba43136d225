//! Upload tokens: what the owner's `/post/{id}/photos` page puts in its
//! form's action, so that the upload itself needs nothing else to be let
//! in. A token names the city, the post, the user and how many photos the
//! post could still take when the page was made, and is good for
//! `VALIDITY_SECS`.
//!
//! Value: `<post>.<user>.<free slots>.<expires unix s>.<HMAC-SHA256 hex,
//! 128 bits>`, the city inside the MAC only (the host names it). Like the
//! device cookie, each field is plain text a handler can log; only the tag
//! is secret-derived.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Id;

type HmacSha256 = Hmac<Sha256>;

/// How long an upload form stays good: long enough to pick ten photos on a
/// phone, short enough that a leaked URL soon opens nothing.
pub const VALIDITY_SECS: i64 = 15 * 60;

/// What a valid token lets its bearer do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub post: Id,
    pub user: Id,
    /// Photos the post could still take when the token was issued (the
    /// upload checks the rows again: two forms open at once share them).
    pub free_slots: u8,
    /// Unix seconds.
    pub expires: i64,
}

/// Signs and opens upload tokens with a key of their own.
#[derive(Clone)]
pub struct UploadKey(Vec<u8>);

impl std::fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadKey(..)")
    }
}

impl UploadKey {
    /// Wraps a key derived for this purpose only.
    pub fn new(key: Vec<u8>) -> Self {
        UploadKey(key)
    }

    fn mac(&self, city: &str, u: &Upload) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(
            format!(
                "upload\0{city}\0{}\0{}\0{}\0{}",
                u.post, u.user, u.free_slots, u.expires
            )
            .as_bytes(),
        );
        m
    }

    /// A token for `user` to add up to `free_slots` photos to `post` of
    /// `city`, valid from `now` for `VALIDITY_SECS`.
    pub fn issue(&self, city: &str, post: Id, user: Id, free_slots: u8, now: i64) -> String {
        let u = Upload {
            post,
            user,
            free_slots,
            expires: now + VALIDITY_SECS,
        };
        let tag = self.mac(city, &u).finalize().into_bytes();
        format!(
            "{}.{}.{}.{}.{}",
            u.post,
            u.user,
            u.free_slots,
            u.expires,
            hex::encode(&tag[..16])
        )
    }

    /// What `token` allows in `city`, if this key issued it for that city
    /// and it has not expired at `now` (constant-time check).
    pub fn open(&self, city: &str, token: &str, now: i64) -> Option<Upload> {
        let mut parts = token.splitn(5, '.');
        let u = Upload {
            post: parts.next()?.parse().ok()?,
            user: parts.next()?.parse().ok()?,
            free_slots: parts.next()?.parse().ok()?,
            expires: parts.next()?.parse().ok()?,
        };
        let tag = hex::decode(parts.next()?).ok()?;
        if now > u.expires || u.expires - now > VALIDITY_SECS {
            return None;
        }
        self.mac(city, &u)
            .verify_truncated_left(&tag)
            .ok()
            .filter(|()| tag.len() == 16)
            .map(|()| u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_opens_for_its_city_until_it_expires() {
        let k = UploadKey::new(b"upload key".to_vec());
        let t = k.issue("boston", Id(7), Id(42), 3, NOW);
        let opened = k.open("boston", &t, NOW + 60).unwrap();
        assert_eq!(
            opened,
            Upload {
                post: Id(7),
                user: Id(42),
                free_slots: 3,
                expires: NOW + VALIDITY_SECS
            }
        );
        assert!(k.open("boston", &t, NOW + VALIDITY_SECS).is_some());
        assert_eq!(k.open("boston", &t, NOW + VALIDITY_SECS + 1), None);
        assert_eq!(k.open("chicago", &t, NOW), None);
        assert_eq!(
            UploadKey::new(b"other".to_vec()).open("boston", &t, NOW),
            None
        );
    }

    #[test]
    fn a_forged_token_opens_nothing() {
        let k = UploadKey::new(b"upload key".to_vec());
        let t = k.issue("boston", Id(7), Id(42), 3, NOW);
        // More slots, another post, another user, a later expiry.
        for forged in [
            t.replacen(".3.", ".9.", 1),
            t.replacen("7.", "8.", 1),
            t.replacen(".42.", ".43.", 1),
            t.replacen(
                &(NOW + VALIDITY_SECS).to_string(),
                &(NOW + 9_999).to_string(),
                1,
            ),
        ] {
            assert_ne!(forged, t);
            assert_eq!(k.open("boston", &forged, NOW), None, "{forged}");
        }
        // Made with a far expiry under the right key: still refused.
        let far = k.issue("boston", Id(7), Id(42), 3, NOW + 86_400);
        assert_eq!(k.open("boston", &far, NOW), None);
        for junk in [
            "",
            "7",
            "7.42.3.1",
            "7.42.3.x.00",
            "a.b.c.d.e",
            &t[..t.len() - 2],
        ] {
            assert_eq!(k.open("boston", junk, NOW), None, "{junk}");
        }
    }
}
