//! How long the broker keeps each topic's messages: an explicit
//! `retention.ms` per topic, set when the topic is created (`cityboard up`,
//! and the tests' own topics), never the broker's default.
//!
//! The commands topic's retention is the one that matters for the dedup
//! history: `applied_commands` must hold a row for as long as any copy of its
//! command can be read again, and a copy can be produced again for as long
//! as a client may retry with its `Idempotency-Key` (24 h, `STATUS_TTL`).
//! The janitor does not trust this number, though: it prunes a row only once
//! the broker's earliest offset of the row's partition has passed it
//! (`roles::janitor::prune`), so a broker that keeps more keeps the rows
//! longer, and one that dropped messages early cannot make a replay meet a
//! missing row.

use std::time::Duration;

use super::notify::STATUS_TTL;

/// Commands: a week, well past the `Idempotency-Key` window in which a
/// retry can produce a command again (checked below), and shorter than the
/// default age of `DELETE /old_posts` (30 days), which must outlast it.
pub const COMMANDS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Events: a week, like commands. The publisher dedups by (post, version),
/// which needs no history, so this only bounds how far back a replay goes.
pub const EVENTS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Dead letters: a month, for an operator to read and re-drive them.
pub const DEAD_LETTERS: Duration = Duration::from_secs(30 * 24 * 3600);

const _: () = assert!(COMMANDS.as_secs() > STATUS_TTL.as_secs());

/// The retention of a region topic by its name (`<region>.commands`,
/// `.events`, `.dead-letters`, as `Topics` names them); `None` for another.
pub fn of_topic(topic: &str) -> Option<Duration> {
    let (_, kind) = topic.rsplit_once('.')?;
    match kind {
        "commands" => Some(COMMANDS),
        "events" => Some(EVENTS),
        "dead-letters" => Some(DEAD_LETTERS),
        _ => None,
    }
}

/// The topic configuration to create `topic` with: delete past its
/// retention (none for a topic `of_topic` does not know).
pub fn topic_config(topic: &str) -> Vec<(&'static str, String)> {
    match of_topic(topic) {
        Some(keep) => vec![
            ("cleanup.policy", "delete".to_string()),
            ("retention.ms", keep.as_millis().to_string()),
        ],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Topics;

    #[test]
    fn every_region_topic_has_an_explicit_retention() {
        let t = Topics::of_region("us-east");
        for (topic, keep) in [
            (&t.commands, COMMANDS),
            (&t.events, EVENTS),
            (&t.dead_letters, DEAD_LETTERS),
        ] {
            assert_eq!(
                topic_config(topic),
                [
                    ("cleanup.policy", "delete".to_string()),
                    ("retention.ms", keep.as_millis().to_string())
                ]
            );
        }
        assert!(topic_config("us-east.other").is_empty());
        assert!(COMMANDS > STATUS_TTL, "a retry can meet a pruned dedup row");
    }
}
