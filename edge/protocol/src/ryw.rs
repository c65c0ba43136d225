//! The read-your-writes cookie (design §4): what a client that just wrote
//! carries so that neither a lagging replica nor an older KV page shows it
//! data older than its own write. It names the post, so that the edge can
//! tell whether the KV page it holds is older than the cookie's version.
//!
//! Cookie values (no characters that need quoting in a cookie):
//! - applied: `a.<epoch>.<shard>.<lsn hex>.<post>.<version>`
//! - pending (a 202): `p.<command id>.<post>`

use std::fmt;
use std::str::FromStr;

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

/// Whether a KV page of `post_id` at `kv_version` is older than what the
/// cookie (if any, and well-formed) says its bearer wrote: then the edge
/// must ask the origin instead. A malformed cookie is ignored.
pub fn kv_page_is_stale(cookie_value: Option<&str>, post_id: u64, kv_version: i64) -> bool {
    let Some(ryw) = cookie_value.and_then(|v| v.parse::<ReadYourWrites>().ok()) else {
        return false;
    };
    if ryw.post() != Some(post_id) {
        return false;
    }
    match ryw {
        ReadYourWrites::Applied { version, .. } => version > kv_version,
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
        let c = "a.1.shard-1.10.42.5";
        assert!(kv_page_is_stale(Some(c), 42, 4));
        assert!(!kv_page_is_stale(Some(c), 42, 5));
        assert!(!kv_page_is_stale(Some(c), 43, 1));
        assert!(kv_page_is_stale(Some("p.9.42"), 42, 100));
        assert!(!kv_page_is_stale(Some("p.9.0"), 42, 1));
        assert!(!kv_page_is_stale(Some("garbage"), 42, 1));
        assert!(!kv_page_is_stale(None, 42, 1));
    }
}
