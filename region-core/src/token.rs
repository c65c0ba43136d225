//! The read-your-writes token (design §4): what a client that just wrote
//! carries so that its next reads never see data older than its write.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;
use crate::model::Id;

/// Produced by `apply` for each applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteToken {
    /// The city's shard-map epoch at the write: after a move the token's
    /// LSN means nothing on the new shard.
    pub epoch: i64,
    pub shard: String,
    /// A WAL position at or after the commit of the write, on `shard`.
    pub lsn: Lsn,
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
    /// until it is.
    Pending(Id),
}

/// Compact form for a cookie: `epoch.shard.lsn.version` (shard names have no
/// dots: they are DNS-like labels).
impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.epoch, self.shard, self.lsn, self.version
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed read-your-writes token")]
pub struct BadToken;

impl FromStr for WriteToken {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(epoch), Some(shard), Some(lsn), Some(version), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadToken);
        };
        if shard.is_empty() {
            return Err(BadToken);
        }
        Ok(WriteToken {
            epoch: epoch.parse().map_err(|_| BadToken)?,
            shard: shard.to_string(),
            lsn: lsn.parse().map_err(|_| BadToken)?,
            version: version.parse().map_err(|_| BadToken)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_form_round_trips() {
        let t = WriteToken {
            epoch: 3,
            shard: "shard-1".into(),
            lsn: Lsn(0x1_0000_00FF),
            version: 7,
        };
        assert_eq!(t.to_string(), "3.shard-1.1/FF.7");
        assert_eq!(t.to_string().parse::<WriteToken>().unwrap(), t);
        assert!("3.shard-1.1/FF".parse::<WriteToken>().is_err());
        assert!("3..1/FF.7".parse::<WriteToken>().is_err());
    }
}
