//! Account commands: what one region tells every region about a user, on
//! each region's commands topic under the key [`ACCOUNT_KEY`].
//!
//! Access tokens are verified by every region on its own (design §4), so a
//! log-out or an account deletion at the home region means nothing
//! elsewhere until it reaches the other regions' catalogs. The commands
//! topic is the one durable path into a region that already exists, and
//! its writer already commits offsets only past finished work: an account
//! command is as hard to lose as a post.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Id;

/// The message key of account commands. No city slug starts with `@`
/// (the topology refuses one), so the writer tells them apart by key
/// before reading the payload.
pub const ACCOUNT_KEY: &str = "@account";

/// One account command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCommand {
    /// Unique like every command id; the per-city `DeleteUser` commands an
    /// account deletion fans out to reuse it (dedup is by city and id).
    pub id: Id,
    /// When the home region accepted it.
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: AccountKind,
}

/// What happened to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountKind {
    /// One session token ended early (log-out, renewal).
    RevokeSession {
        /// The user.
        user_id: Id,
        /// The token's id.
        jti: String,
        /// When the token would have expired anyway: the revocation is
        /// kept until then.
        expires_at: DateTime<Utc>,
    },
    /// The account is gone: every session of it ends, and every post of it
    /// in every city of the region is erased (one `DeleteUser` command per
    /// city, ordered with that city's other commands).
    DeleteAccount {
        /// The user.
        user_id: Id,
        /// Until when a token of the user can still be unexpired.
        sessions_expire_by: DateTime<Utc>,
    },
}

impl AccountKind {
    /// The user the command is about.
    pub fn user_id(&self) -> Id {
        match self {
            AccountKind::RevokeSession { user_id, .. }
            | AccountKind::DeleteAccount { user_id, .. } => *user_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_commands_round_trip_with_a_type_tag_and_string_ids() {
        let c = AccountCommand {
            id: Id(7),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            kind: AccountKind::DeleteAccount {
                user_id: Id(9),
                sessions_expire_by: DateTime::from_timestamp(1_700_000_900, 0).unwrap(),
            },
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["type"], "delete_account");
        assert_eq!(json["user_id"], "9");
        assert_eq!(serde_json::from_value::<AccountCommand>(json).unwrap(), c);
    }
}
