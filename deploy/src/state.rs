//! `state.json`: what the supervisor says about the stack it runs.
//!
//! It is the one place that other processes (`cityboard status`, `up`
//! waiting for readiness, the test suites) learn addresses, pids and health
//! from. The supervisor rewrites it atomically after every change.

use std::path::Path;

use anyhow::{Context, Result};
use region_core::redact;
use serde::{Deserialize, Serialize};

use crate::process::{ProcessId, write_atomic};

/// Where the stack as a whole is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Components are being started for the first time.
    Starting,
    /// Everything was started; the supervisor watches and restarts.
    Running,
    /// The first start failed; everything started was stopped again.
    Failed,
    /// `down` asked the supervisor to stop.
    Stopping,
    /// The supervisor stopped everything and exited.
    Stopped,
}

/// Where one component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not started yet.
    Pending,
    /// Started, readiness check not passed yet.
    Starting,
    /// Passed its readiness check.
    Healthy,
    /// Died; waiting for its backoff before a restart.
    Restarting,
    /// Stopped on purpose.
    Stopped,
    /// Could not be started.
    Failed,
}

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackState {
    /// Stack phase.
    pub phase: Phase,
    /// Why the phase is `failed`.
    pub error: Option<String>,
    /// The supervisor process.
    pub supervisor: Option<ProcessId>,
    /// When this file was written (RFC 3339).
    pub updated_at: String,
    /// Apex domain.
    pub apex: String,
    /// `host:port` of the Kafka-protocol broker.
    pub broker: String,
    /// The regions, in topology order.
    pub regions: Vec<RegionState>,
    /// Every process of the stack.
    pub components: Vec<ComponentState>,
    /// Generation of the arrangement ([`crate::arrangement`]) the
    /// supervisor applied last: a command that wrote a new one waits for it.
    #[serde(default)]
    pub arrangement: u64,
}

/// Addresses of one region. Its `Debug` masks the passwords its URLs
/// carry (`region_core::redact::url`).
#[derive(Clone, Serialize, Deserialize)]
pub struct RegionState {
    /// Region name.
    pub name: String,
    /// Catalog database URL.
    pub catalog_url: String,
    /// Redis with allkeys-lru.
    pub redis_cache_url: String,
    /// Redis with noeviction.
    pub redis_store_url: String,
    /// Port of the api role.
    pub api_port: u16,
    /// Port of the api role's operator listener (`/metrics`, `DELETE
    /// /old_posts`); the edge never forwards there.
    #[serde(default)]
    pub operator_port: u16,
    /// Shards in order.
    pub shards: Vec<ShardState>,
}

/// Addresses of one shard. Its `Debug` masks the passwords its URLs carry.
#[derive(Clone, Serialize, Deserialize)]
pub struct ShardState {
    /// `shard-N`.
    pub name: String,
    /// Primary database URL.
    pub primary_url: String,
    /// Replica database URLs, replica 1 first.
    pub replica_urls: Vec<String>,
    /// City slugs served by this shard.
    pub cities: Vec<String>,
}

impl std::fmt::Debug for RegionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionState")
            .field("name", &self.name)
            .field("catalog_url", &redact::url(&self.catalog_url))
            .field("redis_cache_url", &redact::url(&self.redis_cache_url))
            .field("redis_store_url", &redact::url(&self.redis_store_url))
            .field("api_port", &self.api_port)
            .field("operator_port", &self.operator_port)
            .field("shards", &self.shards)
            .finish()
    }
}

impl std::fmt::Debug for ShardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardState")
            .field("name", &self.name)
            .field("primary_url", &redact::url(&self.primary_url))
            .field("replica_urls", &redact::urls(&self.replica_urls))
            .field("cities", &self.cities)
            .finish()
    }
}

/// One supervised process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentState {
    /// Unique name, e.g. `us-east/shard-1/replica-1`.
    pub name: String,
    /// What it is: `postgres`, `redis`, `broker`, ...
    pub kind: String,
    /// Port it listens on.
    pub port: u16,
    /// Its process, while one runs.
    pub process: Option<ProcessId>,
    /// Health.
    pub health: Health,
    /// Restarts after a death, since the supervisor started.
    pub restarts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Its log file.
    pub log: String,
}

impl StackState {
    /// Reads the state file.
    pub fn read(path: &Path) -> Result<StackState> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the state file atomically.
    pub fn write(&mut self, path: &Path) -> Result<()> {
        self.updated_at = chrono::Utc::now().to_rfc3339();
        write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }

    /// The component with this name.
    pub fn component(&self, name: &str) -> Option<&ComponentState> {
        self.components.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regions_debug_shows_no_password() {
        let region = RegionState {
            name: "us-east".into(),
            catalog_url: "postgres://owner:cat4log@127.0.0.1:17100/cityboard".into(),
            redis_cache_url: "redis://:r3dis@127.0.0.1:17101/".into(),
            redis_store_url: "redis://:r3dis@127.0.0.1:17102/".into(),
            api_port: 17103,
            operator_port: 17108,
            shards: vec![ShardState {
                name: "shard-1".into(),
                primary_url: "postgres://writer:pr1mary@127.0.0.1:17110/cityboard".into(),
                replica_urls: vec!["postgres://reader:rep1ica@127.0.0.1:17111/cityboard".into()],
                cities: vec!["boston".into()],
            }],
        };
        let shown = format!("{region:?}");
        for secret in ["cat4log", "r3dis", "pr1mary", "rep1ica"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("redis://:***@127.0.0.1:17101/"), "{shown}");
        assert!(
            shown.contains("postgres://reader:***@127.0.0.1:17111/cityboard"),
            "{shown}"
        );
    }
}
