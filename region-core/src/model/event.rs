//! Events: what happened to a city's data, written to the outbox in the same
//! transaction as the change. Consumers are idempotent by (post id, version).

use serde::{Deserialize, Serialize};

use crate::model::{Id, Post, RequestId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A post was created or changed and is visible: the full row, so the
    /// publisher renders the page from the event alone.
    /// (Boxed: a post with its photos is far larger than the other
    /// variant, and batches hold many events.)
    PostChanged {
        command_id: Id,
        /// The request the command came from (`Command::request_id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        post: Box<Post>,
    },
    /// A post was deleted, hidden or expired: the edge writes a tombstone.
    PostGone {
        command_id: Id,
        /// The request the command came from (`Command::request_id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
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
    /// The request whose write made this event, if a request did.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            Event::PostChanged { request_id, .. } | Event::PostGone { request_id, .. } => {
                request_id.as_ref()
            }
        }
    }

    pub fn city(&self) -> &str {
        match self {
            Event::PostChanged { post, .. } => &post.city,
            Event::PostGone { city, .. } => city,
        }
    }
}
