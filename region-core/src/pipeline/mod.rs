//! The back half of the write path (design §4): the writer role applies
//! `<region>.commands` to the shards in batches, the relay moves each shard's
//! outbox to `<region>.events`, and both share one producer wrapper.
//!
//! What makes it lose nothing: offsets are committed only past commands
//! whose outcome is durable (applied or rejected in the shard, or copied to
//! the dead-letter topic), outbox rows are deleted only after the broker
//! acknowledged them, and every consumer downstream is idempotent
//! (`applied_commands` for commands, `(post id, version)` for events), so
//! the replays a crash causes are harmless.

pub mod dead_letter;
pub mod failpoint;
pub mod metrics;
pub mod notify;
pub mod producer;
pub mod publisher;
pub mod relay;
pub mod roles;
pub mod writer;

use std::path::Path;

use anyhow::Context;

pub use producer::{ProduceError, Producer, ProducerConfig};

/// Header naming why a message is on the dead-letter topic.
pub const REASON_HEADER: &str = "cityboard-reason";
/// Header with the command id of a dead letter, when it had a readable one.
pub const COMMAND_ID_HEADER: &str = "cityboard-command-id";
/// Header with `topic/partition/offset` the dead letter was read from.
pub const SOURCE_HEADER: &str = "cityboard-source";
/// Header of an event: the post it is about (decimal id).
pub const POST_ID_HEADER: &str = "cityboard-post-id";
/// Header of an event: the post version it carries (decimal).
pub const VERSION_HEADER: &str = "cityboard-version";
/// Header of an event: its `type` (`post_changed`, `post_gone`).
pub const EVENT_TYPE_HEADER: &str = "cityboard-event-type";

/// The topic names of a region, as `cityboard up` creates them. Tests run a
/// writer or relay of their own on topics of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Commands in, keyed by city.
    pub commands: String,
    /// Events out, keyed by city.
    pub events: String,
    /// Commands that could not be applied, with their reason.
    pub dead_letters: String,
}

impl Topics {
    /// `<region>.commands`, `<region>.events`, `<region>.dead-letters`.
    pub fn of_region(region: &str) -> Topics {
        Topics {
            commands: format!("{region}.commands"),
            events: format!("{region}.events"),
            dead_letters: format!("{region}.dead-letters"),
        }
    }
}

/// The broker address (`host:port`) the supervisor wrote into `state.json`.
/// Read here rather than through `stack::StackFile` so that only the roles
/// that talk to the broker need the field.
pub fn broker_from_state(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the stack description {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stack description", path.display()))?;
    value
        .get("broker")
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{} names no broker", path.display()))
}
