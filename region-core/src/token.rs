//! The read-your-writes token (design §4): what a client that just wrote
//! carries so that its next reads never see data older than its write.
//!
//! The cookie's format belongs to `cityboard_protocol::ryw`, because the
//! edge reads it too (to skip a KV page older than the version in it); this
//! module converts between it and region-core's own types (`Lsn`, `Id`) and
//! says what a read must do with it (`Consistency`).

use std::fmt;
use std::str::FromStr;

use cityboard_protocol::ryw::{self, ReadYourWrites};
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;
use crate::model::Id;

pub use cityboard_protocol::ryw::RYW_COOKIE;

/// Produced by `apply` for each applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteToken {
    /// The city's shard-map epoch at the write: after a move the token's
    /// LSN means nothing on the new shard.
    pub epoch: i64,
    pub shard: String,
    /// A WAL position at or after the commit of the write, on `shard`.
    pub lsn: Lsn,
    /// The post the write changed (`Id(0)` when it changed none), so that
    /// the edge can tell an older KV page of it.
    pub post: Id,
    /// The post version the write produced (0 when it changed no post).
    pub version: i64,
}

/// How fresh a read must be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any replica within the lag bound.
    #[default]
    Any,
    /// Nothing older than this write.
    AtLeast(WriteToken),
    /// A write accepted (202) but not applied yet: read from the primary
    /// until it is. A read of `post` itself first waits a little for the
    /// outcome (`http::posts::read_post`).
    Pending {
        /// The command not applied yet.
        command: Id,
        /// The post it is about.
        post: Id,
    },
}

/// The keys read-your-writes cookies are sealed with
/// (`cityboard_protocol::ryw::seal`): derived from the forwarding keys,
/// which the edge holds too, so both sides can tell a cookie this origin
/// issued from one a client made up.
#[derive(Clone)]
pub struct RywKeys {
    /// The current key first (it seals), then the previous one (during a
    /// rotation, it still opens).
    keys: Vec<[u8; 32]>,
}

impl fmt::Debug for RywKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RywKeys(..)")
    }
}

impl RywKeys {
    /// Keys from the current forwarding key's secret and the previous one.
    pub fn new(current_forward: &[u8], previous_forward: Option<&[u8]>) -> RywKeys {
        let mut keys = vec![ryw::cookie_key(current_forward)];
        keys.extend(previous_forward.map(ryw::cookie_key));
        RywKeys { keys }
    }

    /// The cookie value of `ryw`, sealed at `now` (unix seconds).
    pub fn seal(&self, ryw: &ReadYourWrites, now: i64) -> String {
        ryw::seal(ryw, &self.keys[0], now)
    }
}

impl Consistency {
    /// What a read-your-writes cookie asks for, if it opens under `keys` at
    /// `now`. A malformed, forged or expired cookie asks for nothing (the
    /// read is then merely eventually consistent): it is never an error,
    /// since the client cannot fix it and the data is not at risk.
    pub fn from_cookie(value: Option<&str>, keys: &RywKeys, now: i64) -> Consistency {
        let Some(ryw) = value.and_then(|v| ryw::open(v, &keys.keys, now)) else {
            return Consistency::Any;
        };
        match ryw {
            ReadYourWrites::Pending { command, post } => {
                match (i64::try_from(command), i64::try_from(post)) {
                    (Ok(command), Ok(post)) => Consistency::Pending {
                        command: Id(command),
                        post: Id(post),
                    },
                    _ => Consistency::Any,
                }
            }
            applied => WriteToken::try_from(applied)
                .map(Consistency::AtLeast)
                .unwrap_or_default(),
        }
    }
}

impl Consistency {
    /// Whether this read carries a write made at a newer epoch of its city
    /// than `epoch` (the cached shard map's): the city moved and this
    /// process has not heard yet, so the map must be reloaded before the
    /// read picks a shard, or it would read the shard the city left and
    /// miss the write.
    pub fn newer_epoch_than(&self, epoch: i64) -> bool {
        matches!(self, Consistency::AtLeast(t) if t.epoch > epoch)
    }
}

/// The protocol's cookie content of a pending write (a 202): reads go to
/// the primary until command `command` is applied; the edge skips KV pages
/// of `post` meanwhile.
pub fn pending(command: Id, post: Id) -> ReadYourWrites {
    ReadYourWrites::Pending {
        command: u64::try_from(command.0).unwrap_or(0),
        post: u64::try_from(post.0).unwrap_or(0),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed read-your-writes token")]
pub struct BadToken;

impl From<&WriteToken> for ReadYourWrites {
    fn from(t: &WriteToken) -> Self {
        ReadYourWrites::Applied {
            epoch: t.epoch,
            shard: t.shard.clone(),
            lsn: t.lsn.0,
            // Ids are positive (the sign bit is never set).
            post: u64::try_from(t.post.0).unwrap_or(0),
            version: t.version,
        }
    }
}

impl TryFrom<ReadYourWrites> for WriteToken {
    type Error = BadToken;
    fn try_from(r: ReadYourWrites) -> Result<Self, BadToken> {
        match r {
            ReadYourWrites::Applied {
                epoch,
                shard,
                lsn,
                post,
                version,
            } => Ok(WriteToken {
                epoch,
                shard,
                lsn: Lsn(lsn),
                post: Id(i64::try_from(post).map_err(|_| BadToken)?),
                version,
            }),
            ReadYourWrites::Pending { .. } => Err(BadToken),
        }
    }
}

/// The cookie value (`cityboard_protocol::ryw`'s applied form).
impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ReadYourWrites::from(self).fmt(f)
    }
}

impl FromStr for WriteToken {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<ReadYourWrites>()
            .map_err(|_| BadToken)?
            .try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> WriteToken {
        WriteToken {
            epoch: 3,
            shard: "shard-1".into(),
            lsn: Lsn(0x1_0000_00FF),
            post: Id(42),
            version: 7,
        }
    }

    #[test]
    fn only_a_token_from_a_later_epoch_is_newer() {
        let t = Consistency::AtLeast(token());
        assert!(t.newer_epoch_than(2));
        assert!(!t.newer_epoch_than(3));
        assert!(!t.newer_epoch_than(4));
        assert!(!Consistency::Any.newer_epoch_than(0));
        assert!(
            !Consistency::Pending {
                command: Id(1),
                post: Id(2)
            }
            .newer_epoch_than(0)
        );
    }

    #[test]
    fn cookie_form_is_the_protocols_and_round_trips() {
        let t = token();
        assert_eq!(t.to_string(), "a.3.shard-1.1000000FF.42.7");
        assert_eq!(t.to_string().parse::<WriteToken>().unwrap(), t);
        assert!("a.3.shard-1.1000000FF.42".parse::<WriteToken>().is_err());
        assert!("a.3..1.42.7".parse::<WriteToken>().is_err());
        assert!("p.9.42".parse::<WriteToken>().is_err());
        // What the edge decides from the same value.
        assert!(cityboard_protocol::ryw::kv_page_is_stale(
            Some(&ReadYourWrites::from(&t)),
            42,
            6
        ));
    }

    #[test]
    fn a_cookie_asks_for_a_token_a_primary_or_nothing() {
        let keys = RywKeys::new(b"current forward key, 32 bytes long", Some(b"previous"));
        let now = 1_800_000_000;
        let sealed = |r: &ReadYourWrites| keys.seal(r, now);
        let from = |v: Option<&str>| Consistency::from_cookie(v, &keys, now);
        assert_eq!(
            from(Some(&sealed(&ReadYourWrites::from(&token())))),
            Consistency::AtLeast(token())
        );
        assert_eq!(
            from(Some(&sealed(&pending(Id(9), Id(42))))),
            Consistency::Pending {
                command: Id(9),
                post: Id(42)
            }
        );
        // Unsealed, malformed, or sealed with a key this origin lacks.
        let stranger = RywKeys::new(b"a forwarding key of somebody else", None);
        let forged = stranger.seal(&pending(Id(1), Id(0)), now);
        for ignored in [
            None,
            Some(""),
            Some("p.1.0"),
            Some("3.shard-1.1/FF.7"),
            Some(forged.as_str()),
        ] {
            assert_eq!(from(ignored), Consistency::Any, "{ignored:?}");
        }
        // A cookie sealed under the previous key still opens.
        let previous = RywKeys::new(b"previous", None);
        let old = previous.seal(&pending(Id(9), Id(42)), now);
        assert_eq!(
            from(Some(&old)),
            Consistency::Pending {
                command: Id(9),
                post: Id(42)
            }
        );
        // An id past i64 cannot be ours: ignored, not wrapped.
        let huge = format!("a.1.shard-1.1.{}.1", u64::MAX)
            .parse::<ReadYourWrites>()
            .unwrap();
        assert_eq!(from(Some(&sealed(&huge))), Consistency::Any);
    }
}
