//! The crate's one error type.
//!
//! Every fallible path of the library and the binaries ends here, so a caller
//! (the edge, `cityboard up`, a test) matches on one enum and every message
//! names the input that was wrong.

use std::net::IpAddr;

/// Everything geo-router can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A catalog row that cannot be used: wrong column count, bad number,
    /// coordinates out of range, duplicate slug.
    #[error("catalog line {line}: {reason}")]
    Catalog {
        /// 1-based line number in the catalog text.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The topology file does not parse or describes an unusable city.
    #[error("topology: {0}")]
    Topology(String),
    /// A served city that cannot be placed: bad slug, country or coordinates.
    #[error("served city {slug:?}: {reason}")]
    ServedCity {
        /// The slug as given.
        slug: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A MaxMind DB file that is corrupt, truncated or not in the expected
    /// shape (for example, a compact database without our record layout).
    #[error("mmdb: {0}")]
    Mmdb(String),
    /// A range table (see [`crate::range_table`]) that is corrupt,
    /// truncated or of another version, or ranges it cannot hold.
    #[error("range table: {0}")]
    RangeTable(String),
    /// A host name that is not a city host of the apex.
    #[error("host name {host:?}: {reason}")]
    HostName {
        /// The host as received (possibly with port).
        host: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An address the lookup refused to answer for (private, reserved, ...).
    #[error("address {0} is not a public address")]
    NotPublic(IpAddr),
    /// A DNS configuration problem (zone name, instance list, listen address).
    #[error("dns: {0}")]
    Dns(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl GeoError {
    /// Wraps an I/O error with the path it concerns, so the message says where.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        GeoError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<maxminddb::MaxMindDbError> for GeoError {
    fn from(e: maxminddb::MaxMindDbError) -> Self {
        GeoError::Mmdb(e.to_string())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = GeoError> = std::result::Result<T, E>;
