//! The stack description the supervisor writes (`state.json`), and the
//! secrets directory it fills: what `region-core setup` and `serve` are
//! given instead of a config file of their own, so that the supervisor is the
//! one place that knows addresses.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::catalog::{RegionTopology, ShardTopology};

/// The parts of `state.json` region-core reads; unknown fields are ignored
/// so the supervisor can grow the file freely.
#[derive(Debug, Clone, Deserialize)]
pub struct StackFile {
    /// Apex of every city's host name: `<city>.<apex>`.
    pub apex: String,
    /// Regions in topology order: the index is the region's number in ids.
    pub regions: Vec<RegionEntry>,
}

/// One region of the stack. Its `Debug` masks the passwords of its URLs
/// (the Redis ones carry one).
#[derive(Clone, Deserialize)]
pub struct RegionEntry {
    /// Region name, e.g. `us-east`.
    pub name: String,
    /// The region's catalog database.
    pub catalog_url: String,
    /// Redis with `allkeys-lru`: listing and search pages.
    pub redis_cache_url: String,
    /// Redis with `noeviction`: what must not be lost (idempotency keys).
    pub redis_store_url: String,
    /// Port the supervisor gives the api role.
    pub api_port: u16,
    /// Shards in order.
    pub shards: Vec<ShardEntry>,
}

impl std::fmt::Debug for RegionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionEntry")
            .field("name", &self.name)
            .field("catalog_url", &crate::redact::url(&self.catalog_url))
            .field(
                "redis_cache_url",
                &crate::redact::url(&self.redis_cache_url),
            )
            .field(
                "redis_store_url",
                &crate::redact::url(&self.redis_store_url),
            )
            .field("api_port", &self.api_port)
            .field("shards", &self.shards)
            .finish()
    }
}

/// One shard of a region.
#[derive(Debug, Clone, Deserialize)]
pub struct ShardEntry {
    /// `shard-N`.
    pub name: String,
    /// Primary database.
    pub primary_url: String,
    /// Streaming replicas.
    #[serde(default)]
    pub replica_urls: Vec<String>,
    /// City slugs placed on this shard at first start.
    #[serde(default)]
    pub cities: Vec<String>,
}

impl StackFile {
    /// Reads and parses `path`, naming the file in every error.
    pub fn read(path: &Path) -> anyhow::Result<StackFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the stack description {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a stack description", path.display()))
    }

    /// The region called `name` and its number (its index in `regions`).
    pub fn region(&self, name: &str) -> anyhow::Result<(u16, &RegionEntry)> {
        let Some(index) = self.regions.iter().position(|r| r.name == name) else {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            bail!("no region {name:?} in the stack description (it has: {known:?})");
        };
        let number = u16::try_from(index).context("region index")?;
        Ok((number, &self.regions[index]))
    }
}

impl RegionEntry {
    /// The topology `catalog::seed` registers.
    pub fn topology(&self, number: u16) -> RegionTopology {
        RegionTopology {
            name: self.name.clone(),
            number,
            shards: self
                .shards
                .iter()
                .map(|s| ShardTopology {
                    name: s.name.clone(),
                    primary_url: s.primary_url.clone(),
                    replica_urls: s.replica_urls.clone(),
                    cities: s.cities.clone(),
                })
                .collect(),
        }
    }
}

/// The keys the api uses, each for one purpose only (design §4: forwarded
/// requests, the KV route and session tokens never share a key).
#[derive(Clone)]
pub struct Secrets {
    /// Signs session access tokens; shared by every region so any region
    /// verifies a session on its own.
    pub session: Vec<u8>,
    /// Signs the internal KV route.
    pub kv_route: Vec<u8>,
    /// Current key of edge-forwarded request signatures.
    pub edge_forward: Vec<u8>,
    /// The previous key with its expiry, during a rotation only.
    pub edge_forward_previous: Option<PreviousKey>,
    /// Bearer token of operator endpoints.
    pub operator_token: Vec<u8>,
}

/// The forwarding key of before a rotation: accepted beside the current
/// one until `expires`, so that edges still signing with it are not
/// refused while the new key reaches them, and refused from then on, so
/// that an old key nobody removed does not stay valid forever.
#[derive(Clone)]
pub struct PreviousKey {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// From this time on its signatures are refused.
    pub expires: chrono::DateTime<chrono::Utc>,
}

/// Secret file of the previous forwarding key (optional).
pub const PREVIOUS_KEY_FILE: &str = "edge-forward.previous.key";
/// Secret file of its expiry: one RFC 3339 time, e.g.
/// `2026-01-31T12:00:00Z`. Required beside the key; alone, it is ignored.
pub const PREVIOUS_EXPIRES_FILE: &str = "edge-forward.previous.expires";

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// Reads the four required files of `dir`, and the previous forwarding
    /// key with its expiry when `edge-forward.previous.key` exists (absent:
    /// no rotation is under way). Their content is opaque bytes;
    /// surrounding whitespace (a trailing newline) is not part of the key.
    /// A key shorter than 32 bytes, or a previous key without a readable
    /// expiry, is an error: better not to start than to accept signatures
    /// under a weak key or an old key forever.
    pub fn read(dir: &Path) -> anyhow::Result<Secrets> {
        let read = |name: &str| -> anyhow::Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading secret {}", path.display()))?;
            let key = bytes.trim_ascii().to_vec();
            let min = cityboard_protocol::sign::MIN_SECRET_BYTES;
            if key.len() < min {
                bail!(
                    "secret {} is too short ({} bytes; at least {min} expected)",
                    path.display(),
                    key.len()
                );
            }
            Ok(key)
        };
        let edge_forward_previous = if dir.join(PREVIOUS_KEY_FILE).exists() {
            Some(PreviousKey {
                key: read(PREVIOUS_KEY_FILE)?,
                expires: read_expiry(&dir.join(PREVIOUS_EXPIRES_FILE))?,
            })
        } else {
            None
        };
        Ok(Secrets {
            session: read("session.key")?,
            kv_route: read("kv-route.key")?,
            edge_forward: read("edge-forward.key")?,
            edge_forward_previous,
            operator_token: read("operator.token")?,
        })
    }

    /// A key for `purpose` derived from the session key, so that a cursor or
    /// CSRF token can never be replayed as a session token (and the reverse).
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256>>::new_from_slice(&self.session)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(b"cityboard derive\0");
        m.update(purpose.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
}

/// The expiry of the previous forwarding key: an RFC 3339 time, trimmed.
fn read_expiry(path: &Path) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (the previous forwarding key needs an expiry: an RFC 3339 time \
             such as 2026-01-31T12:00:00Z; delete {PREVIOUS_KEY_FILE} if no rotation is \
             under way)",
            path.display()
        )
    })?;
    let at = chrono::DateTime::parse_from_rfc3339(text.trim()).with_context(|| {
        format!(
            "{} holds {:?}, not an RFC 3339 time such as 2026-01-31T12:00:00Z",
            path.display(),
            text.trim()
        )
    })?;
    Ok(at.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory holding the four secrets `Secrets::read`
    /// requires, each 38 bytes and newline-terminated.
    fn dir_of_required_secrets(prefix: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "session.key",
            "kv-route.key",
            "edge-forward.key",
            "operator.token",
        ] {
            std::fs::write(dir.join(f), format!("{f}-0123456789abcdef0123456789\n")).unwrap();
        }
        dir
    }

    #[test]
    fn a_region_prints_without_its_passwords() {
        let region: RegionEntry = serde_json::from_str(
            r#"{"name":"r","catalog_url":"postgres://127.0.0.1:1/c",
            "redis_cache_url":"redis://:hunter2@127.0.0.1:2/","redis_store_url":"redis://:hunter2@127.0.0.1:3/",
            "api_port":4,"shards":[]}"#,
        )
        .expect("json");
        let printed = format!("{region:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("127.0.0.1:2"),
            "{printed}"
        );
    }

    #[test]
    fn reads_the_supervisors_state_file_ignoring_unknown_fields() {
        let json = r#"{"phase":"running","apex":"cityboard.test","broker":"x",
            "regions":[{"name":"us-east","catalog_url":"postgres://c","redis_cache_url":"redis://a",
            "redis_store_url":"redis://b","api_port":7000,"extra":1,
            "shards":[{"name":"shard-1","primary_url":"postgres://p","replica_urls":["postgres://r"],
            "cities":["boston"]}]},{"name":"eu-west","catalog_url":"","redis_cache_url":"",
            "redis_store_url":"","api_port":7001,"shards":[]}],"components":[]}"#;
        let s: StackFile = serde_json::from_str(json).unwrap();
        let (n, r) = s.region("eu-west").unwrap();
        assert_eq!((n, r.api_port), (1, 7001));
        let (n, r) = s.region("us-east").unwrap();
        assert_eq!(n, 0);
        assert_eq!(r.topology(n).shards[0].cities, ["boston"]);
        assert!(s.region("ap-south").is_err());
    }

    #[test]
    fn secrets_are_trimmed_and_derived_keys_differ_by_purpose() {
        let dir = dir_of_required_secrets("rc-secrets");
        let s = Secrets::read(&dir).unwrap();
        assert_eq!(s.session, b"session.key-0123456789abcdef0123456789");
        assert_ne!(s.derive("cursor"), s.derive("csrf"));
        // No previous key: none, even with an expiry file left over.
        assert!(s.edge_forward_previous.is_none());
        std::fs::write(dir.join(PREVIOUS_EXPIRES_FILE), "2026-01-31T12:00:00Z\n").unwrap();
        assert!(Secrets::read(&dir).unwrap().edge_forward_previous.is_none());
        // 31 bytes: one short of a key.
        std::fs::write(dir.join("operator.token"), "x".repeat(31)).unwrap();
        let err = Secrets::read(&dir).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_previous_key_needs_32_bytes_and_an_expiry() {
        let dir = dir_of_required_secrets("rc-previous");
        let previous = dir.join(PREVIOUS_KEY_FILE);
        let expires = dir.join(PREVIOUS_EXPIRES_FILE);
        std::fs::write(&previous, "previous-0123456789abcdef0123456789\n").unwrap();
        let err = format!("{:#}", Secrets::read(&dir).unwrap_err());
        assert!(err.contains("needs an expiry"), "{err}");
        std::fs::write(&expires, "next tuesday").unwrap();
        let err = format!("{:#}", Secrets::read(&dir).unwrap_err());
        assert!(err.contains("not an RFC 3339 time"), "{err}");
        std::fs::write(&expires, " 2026-01-31T13:00:00+01:00\n").unwrap();
        let p = Secrets::read(&dir).unwrap().edge_forward_previous.unwrap();
        assert_eq!(p.key, b"previous-0123456789abcdef0123456789");
        assert_eq!(p.expires.to_rfc3339(), "2026-01-31T12:00:00+00:00");
        std::fs::write(&previous, "short").unwrap();
        let err = format!("{:#}", Secrets::read(&dir).unwrap_err());
        assert!(err.contains("too short"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
