//! The read-your-writes cookie (design §4): what a client that just wrote
//! carries so that neither a lagging replica nor an older KV page shows it
//! data older than its own write. It names the post, so that the edge can
//! tell whether the KV page it holds is older than the cookie's version.
//!
//! Cookie values (no characters that need quoting in a cookie):
//! - applied: `a.<epoch>.<shard>.<lsn hex>.<post>.<version>`
//! - pending (a 202): `p.<command id>.<post>`
//!
//! and, on the wire, sealed ([`seal`]): `<value>.<issued>.<mac>`, the unix
//! second it was issued and an HMAC over both. The cookie sends a read to
//! the shard primary and past every cache, so one a client made up (say
//! `p.1.0` on every request) would take the caches out of its path; a
//! cookie whose MAC or age is wrong is therefore ignored by both the edge
//! and the origin ([`open`]), as if there were none. Its key is derived
//! from the forwarding key, which both already hold.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the cookie.
pub const RYW_COOKIE: &str = "cb_ryw";

/// What the last write of a client left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadYourWrites {
    /// Applied: nothing older than this may be shown.
    Applied {
        /// The city's shard-map epoch at the write; after a move the LSN
        /// means nothing on the new shard.
        epoch: i64,
        /// The shard the write committed on (a DNS-like label, no dots).
        shard: String,
        /// A WAL position at or after the commit, on `shard`.
        lsn: u64,
        /// The post the write changed (0: none).
        post: u64,
        /// The version of that post the write produced.
        version: i64,
    },
    /// Accepted (202) but not applied yet: read from the primary until it is.
    Pending {
        /// The command's id.
        command: u64,
        /// The post it concerns (0: none).
        post: u64,
    },
}

impl fmt::Display for ReadYourWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadYourWrites::Applied {
                epoch,
                shard,
                lsn,
                post,
                version,
            } => write!(f, "a.{epoch}.{shard}.{lsn:X}.{post}.{version}"),
            ReadYourWrites::Pending { command, post } => write!(f, "p.{command}.{post}"),
        }
    }
}

/// A cookie value that is not one of the two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCookie;

impl fmt::Display for BadCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed read-your-writes cookie")
    }
}

impl std::error::Error for BadCookie {}

impl FromStr for ReadYourWrites {
    type Err = BadCookie;
    fn from_str(s: &str) -> Result<Self, BadCookie> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let num = |p: &str| p.parse::<u64>().map_err(|_| BadCookie);
        match parts.as_slice() {
            ["a", epoch, shard, lsn, post, version] => {
                let shard_ok = !shard.is_empty()
                    && shard.len() <= 63
                    && shard
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !shard_ok {
                    return Err(BadCookie);
                }
                Ok(ReadYourWrites::Applied {
                    epoch: epoch.parse().map_err(|_| BadCookie)?,
                    shard: shard.to_string(),
                    lsn: u64::from_str_radix(lsn, 16).map_err(|_| BadCookie)?,
                    post: num(post)?,
                    version: version.parse().map_err(|_| BadCookie)?,
                })
            }
            ["p", command, post] => Ok(ReadYourWrites::Pending {
                command: num(command)?,
                post: num(post)?,
            }),
            _ => Err(BadCookie),
        }
    }
}

impl ReadYourWrites {
    /// The post this write concerns, if any.
    pub fn post(&self) -> Option<u64> {
        let post = match self {
            ReadYourWrites::Applied { post, .. } | ReadYourWrites::Pending { post, .. } => *post,
        };
        (post != 0).then_some(post)
    }
}

/// How long a sealed cookie is honoured after it was issued: read your
/// writes matters for the seconds a replica or a KV page may lag, and a
/// cookie that lived on would keep its bearer's reads off the caches.
pub const MAX_AGE_SECS: i64 = 600;

/// How far in the future an issue time may be (clocks of the edge and the
/// origin differ a little).
const FUTURE_SKEW_SECS: i64 = 30;

/// Bytes of the MAC kept in the cookie (128 bits).
const MAC_BYTES: usize = 16;

/// The key cookies are sealed with, derived from the forwarding key's
/// secret under a label of its own, so that no cookie MAC is ever a request
/// signature or the other way round.
pub fn cookie_key(forward_secret: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256>>::new_from_slice(forward_secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"cityboard ryw cookie key");
    m.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], value: &str, issued: i64) -> String {
    let mut m = <Hmac<Sha256>>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"cityboard ryw\0");
    m.update(value.as_bytes());
    m.update(b"\0");
    m.update(issued.to_string().as_bytes());
    hex::encode(&m.finalize().into_bytes()[..MAC_BYTES])
}

/// The cookie value of `ryw`, issued at `issued` (unix seconds).
pub fn seal(ryw: &ReadYourWrites, key: &[u8; 32], issued: i64) -> String {
    let value = ryw.to_string();
    let mac = mac(key, &value, issued);
    format!("{value}.{issued}.{mac}")
}

/// What a sealed cookie value says, if its MAC is right under one of
/// `keys` (the current key, and the previous one during a rotation) and it
/// was issued within [`MAX_AGE_SECS`] before `now`; otherwise none, as if
/// there were no cookie.
pub fn open(cookie_value: &str, keys: &[[u8; 32]], now: i64) -> Option<ReadYourWrites> {
    let (rest, given) = cookie_value.trim().rsplit_once('.')?;
    let (value, issued) = rest.rsplit_once('.')?;
    let issued: i64 = issued.parse().ok()?;
    if issued > now + FUTURE_SKEW_SECS || now - issued > MAX_AGE_SECS {
        return None;
    }
    if given.len() != 2 * MAC_BYTES {
        return None;
    }
    let valid = keys.iter().any(|key| {
        let expected = mac(key, value, issued);
        // Constant time: the comparison tells nothing of how much matched.
        expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !valid {
        return None;
    }
    value.parse().ok()
}

/// Whether a KV page of `post_id` at `kv_version` is older than what the
/// (opened) cookie says its bearer wrote: then the edge must ask the
/// origin instead.
pub fn kv_page_is_stale(ryw: Option<&ReadYourWrites>, post_id: u64, kv_version: i64) -> bool {
    let Some(ryw) = ryw else {
        return false;
    };
    if ryw.post() != Some(post_id) {
        return false;
    }
    match ryw {
        ReadYourWrites::Applied { version, .. } => *version > kv_version,
        ReadYourWrites::Pending { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let a = ReadYourWrites::Applied {
            epoch: 3,
            shard: "shard-1".into(),
            lsn: 0x1_0000_00FF,
            post: 42,
            version: 7,
        };
        assert_eq!(a.to_string(), "a.3.shard-1.1000000FF.42.7");
        assert_eq!(a.to_string().parse::<ReadYourWrites>(), Ok(a));
        let p = ReadYourWrites::Pending {
            command: 9,
            post: 42,
        };
        assert_eq!(p.to_string(), "p.9.42");
        assert_eq!("p.9.42".parse::<ReadYourWrites>(), Ok(p));
        for bad in [
            "",
            "a.3..1.42.7",
            "a.3.s.1.42",
            "p.9",
            "x.1.2",
            "a.3.s/x.1.2.3",
            "p.-1.2",
        ] {
            assert!(bad.parse::<ReadYourWrites>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_newer_version_of_the_same_post_makes_a_page_stale() {
        let ryw = |s: &str| s.parse::<ReadYourWrites>().unwrap();
        let c = ryw("a.1.shard-1.10.42.5");
        assert!(kv_page_is_stale(Some(&c), 42, 4));
        assert!(!kv_page_is_stale(Some(&c), 42, 5));
        assert!(!kv_page_is_stale(Some(&c), 43, 1));
        assert!(kv_page_is_stale(Some(&ryw("p.9.42")), 42, 100));
        assert!(!kv_page_is_stale(Some(&ryw("p.9.0")), 42, 1));
        assert!(!kv_page_is_stale(None, 42, 1));
    }

    #[test]
    fn a_sealed_cookie_opens_only_with_its_key_within_its_age() {
        let key = cookie_key(b"forward key of this test, 32 bytes");
        let other = cookie_key(b"another forward key, 32 bytes long");
        let ryw = "a.1.shard-1.10.42.5".parse::<ReadYourWrites>().unwrap();
        let sealed = seal(&ryw, &key, 1_000_000);
        // Known answer, from Python's hmac and hashlib.
        assert_eq!(
            sealed,
            "a.1.shard-1.10.42.5.1000000.3fd8714cb85d206e5ab71b1528e107e3"
        );
        assert_eq!(open(&sealed, &[key], 1_000_000), Some(ryw.clone()));
        assert_eq!(open(&sealed, &[other, key], 1_000_600), Some(ryw.clone()));
        // Another key, too old, from the future, tampered with, unsealed.
        assert_eq!(open(&sealed, &[other], 1_000_000), None);
        assert_eq!(open(&sealed, &[key], 1_000_601), None);
        assert_eq!(open(&sealed, &[key], 999_969), None);
        let forged = sealed.replacen("42.5", "42.6", 1);
        assert_eq!(open(&forged, &[key], 1_000_000), None);
        let later = sealed.replacen(".1000000.", ".1000100.", 1);
        assert_eq!(open(&later, &[key], 1_000_100), None);
        for bad in ["p.1.0", "a.1.shard-1.10.42.5", "", "x.y", "p.1.0.5.zz"] {
            assert_eq!(open(bad, &[key], 1_000_000), None, "{bad:?}");
        }
    }
}
