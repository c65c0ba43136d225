//! Commands: what the api asks the writer to do to a city's data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Id, Photo, PostFields, RequestId};

/// One command, as produced to `<region>.commands` keyed by city.
///
/// `created_at` is set once by the api and travels here, so a replay writes
/// the same row; `epoch` is the city's shard-map epoch the api routed with,
/// checked again by the shard's fence when the command is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: Id,
    pub city: String,
    pub created_at: DateTime<Utc>,
    pub epoch: i64,
    /// The visitor's request that asked for it (none for the janitor's
    /// and the demo's commands, and in commands produced before it
    /// existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(flatten)]
    pub kind: CommandKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandKind {
    Create {
        post_id: Id,
        user_id: Id,
        post: PostFields,
    },
    Update {
        post_id: Id,
        user_id: Id,
        post: PostFields,
    },
    Delete {
        post_id: Id,
        user_id: Id,
    },
    Renew {
        post_id: Id,
        user_id: Id,
    },
    /// Moderation: an operator hides a post.
    Hide {
        post_id: Id,
        reason: String,
    },
    Report {
        post_id: Id,
        reporter_id: Id,
        reason: String,
    },
    /// Erase every post of a user in this command's city. The api fans an
    /// account deletion out as one such command per city (to every region),
    /// so each stays ordered with the city's other commands and its dedup
    /// key `(city, command_id)` moves with the city.
    DeleteUser {
        user_id: Id,
    },
    /// Photos uploaded by the poster, stored already (every size, in the
    /// photo store): appended to the post's, all or none. The post's
    /// `image_count` follows from its photos, never from what a client says.
    AddPhotos {
        post_id: Id,
        user_id: Id,
        photos: Vec<Photo>,
    },
    /// The janitor expires a post whose lifetime ended by `as_of` (its
    /// clock's time when it swept). Through the commands topic, not a
    /// direct UPDATE, so it is ordered with the city's renewals: a renewal
    /// applied first moves `expires_at` past `as_of` and the expiry is a
    /// no-op.
    Expire {
        post_id: Id,
        as_of: DateTime<Utc>,
    },
}

impl CommandKind {
    /// The post this command changes, if it is about one post.
    pub fn post_id(&self) -> Option<Id> {
        match self {
            CommandKind::Create { post_id, .. }
            | CommandKind::Update { post_id, .. }
            | CommandKind::Delete { post_id, .. }
            | CommandKind::Renew { post_id, .. }
            | CommandKind::Hide { post_id, .. }
            | CommandKind::Report { post_id, .. }
            | CommandKind::AddPhotos { post_id, .. }
            | CommandKind::Expire { post_id, .. } => Some(*post_id),
            CommandKind::DeleteUser { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_serialize_with_string_ids_and_a_type_tag() {
        let c = Command {
            id: Id(1),
            city: "boston".into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            epoch: 2,
            request_id: None,
            kind: CommandKind::Delete {
                post_id: Id(10),
                user_id: Id(20),
            },
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "delete");
        assert_eq!(v["post_id"], "10");
        assert_eq!(serde_json::from_value::<Command>(v).unwrap(), c);
    }
}
