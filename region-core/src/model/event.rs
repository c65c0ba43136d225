//! Events: what happened to a city's data, written to the outbox in the same
//! transaction as the change. Consumers are idempotent by (post id, version).

use serde::{Deserialize, Serialize};

use crate::model::{Id, Post};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A post was created or changed and is visible: the full row, so the
    /// publisher renders the page from the event alone.
    /// (Boxed: a post with its photos is far larger than the other
    /// variant, and batches hold many events.)
    PostChanged { command_id: Id, post: Box<Post> },
    /// A post was deleted, hidden or expired: the edge writes a tombstone.
    PostGone {
        command_id: Id,
        city: String,
        post_id: Id,
        version: i64,
        reason: GoneReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    Deleted,
    Hidden,
    Expired,
    UserDeleted,
}

impl Event {
    pub fn city(&self) -> &str {
        match self {
            Event::PostChanged { post, .. } => &post.city,
            Event::PostGone { city, .. } => city,
        }
    }
}
