//! The contract between the region's processes (design §4): the topics and
//! their headers, the one producer and the one consumer (with its offsets)
//! every role uses, the apply notifications, dead letters and crash points.
//! The api sends commands, the writer applies them to the shards in
//! batches, the relay moves each shard's outbox to `<region>.events`, and
//! the publisher renders those; they meet only here.
//!
//! What makes it lose nothing: offsets are committed only past commands
//! whose outcome is durable (applied or rejected in the shard, or copied to
//! the dead-letter topic), outbox rows are deleted only after the broker
//! acknowledged them, and every consumer downstream is idempotent
//! (`applied_commands` for commands, `(post id, version)` for events), so
//! the replays a crash causes are harmless.

pub mod applied;
pub mod commands;
pub mod consumer;
pub mod dead_letter;
pub mod direct;
pub mod doze;
pub mod error;
pub mod failpoint;
pub mod letters;
pub mod notify;
pub mod offsets;
pub mod producer;
pub mod retention;
pub mod wake;
pub mod watermarks;

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
/// Header of an event the janitor's reconciler sent (value `1`): KV was seen
/// to differ from the shard, so the publisher writes the entry even when it
/// remembers having written that version (the entry was lost or
/// overwritten since); never over a newer one.
pub const REPAIR_HEADER: &str = "cityboard-repair";

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
