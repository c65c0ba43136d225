//! Apply notifications: the writer stores each finished command's status in
//! the non-evicting Redis (`cmd:{id}`, a day) and announces it on the
//! `cmd-applied` channel, so the api can wait for it after producing (201
//! instead of 202) and answer `GET /commands/{id}`.
//!
//! Written only after the apply transaction committed: a status in Redis
//! always describes a durable outcome. A crash between the commit and this
//! write loses nothing but the notification; the replay writes it then (a
//! replay never overwrites a status already there, since it knows less: the
//! replayed batch cannot tell the version the first apply produced).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lazy_redis::LazyRedis;
use crate::lsn::Lsn;
use crate::model::Id;

/// Redis channel on which the id of each finished command is published.
pub const APPLIED_CHANNEL: &str = "cmd-applied";

/// How long a status stays in Redis: as long as an `Idempotency-Key`, so a
/// client retrying within that time can still find its command.
pub const STATUS_TTL: Duration = Duration::from_secs(24 * 3600);

/// The Redis key of a command's status.
pub fn status_key(command: Id) -> String {
    format!("cmd:{command}")
}

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandState {
    /// Applied (or had been: a replay); the post changed, or nothing needed
    /// to (a repeated report).
    Applied,
    /// Never applied; `reason` says why. The message is on the dead-letter
    /// topic.
    Rejected,
}

/// The read-your-writes data of an applied command (the cookie's
/// `Applied { epoch, shard, lsn, post, version }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedAt {
    /// Shard the command was applied on.
    pub shard: String,
    /// The city's shard-map epoch the writer routed it with.
    pub epoch: i64,
    /// A WAL position at or after the commit on `shard`'s primary.
    pub lsn: Lsn,
    /// Post version the command produced; 0 when it changed no post, or
    /// when a replay could not tell (the status of the first apply, if it
    /// got to Redis, is kept).
    pub version: i64,
}

/// The value of `cmd:{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStatus {
    /// The command's id.
    pub command: Id,
    /// Its city, when the message named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Applied or rejected.
    pub state: CommandState,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The post the command is about (none for an account deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Id>,
    /// Where and when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedAt>,
}

/// A status to store, and whether it may replace one already stored.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The status.
    pub status: CommandStatus,
    /// False for replays: the first apply's status (if it was stored) knows
    /// more and stays.
    pub overwrite: bool,
}

/// Writes statuses to the store Redis; connects lazily and reconnects.
pub struct Notifier {
    redis: LazyRedis,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("url", &crate::redact::url(self.redis.url()))
            .finish()
    }
}

impl Notifier {
    /// A notifier for the Redis at `url` (the `noeviction` one: a status
    /// must not vanish under memory pressure while a client waits for it).
    pub fn new(url: &str) -> Notifier {
        Notifier {
            redis: LazyRedis::new(url),
        }
    }

    /// Stores every status and publishes every id, in one round trip.
    pub async fn publish(&self, notifications: &[Notification]) -> redis::RedisResult<()> {
        if notifications.is_empty() {
            return Ok(());
        }
        let mut conn = self.redis.connection(Duration::from_secs(2)).await?;
        let mut pipe = redis::pipe();
        for n in notifications {
            let value = serde_json::to_string(&n.status).map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::TypeError, "status JSON", e.to_string()))
            })?;
            let set = pipe
                .cmd("SET")
                .arg(status_key(n.status.command))
                .arg(value)
                .arg("EX")
                .arg(STATUS_TTL.as_secs());
            if !n.overwrite {
                set.arg("NX");
            }
            set.ignore();
            pipe.cmd("PUBLISH")
                .arg(APPLIED_CHANNEL)
                .arg(n.status.command.to_string())
                .ignore();
        }
        tokio::time::timeout(Duration::from_secs(5), pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timed out")))?
    }

    /// The stored status of `command`, if any (the api's `GET
    /// /commands/{id}` and its wait after producing read the same key).
    pub async fn status(&self, command: Id) -> redis::RedisResult<Option<CommandStatus>> {
        let mut conn = self.redis.connection(Duration::from_secs(2)).await?;
        let text: Option<String> = redis::cmd("GET")
            .arg(status_key(command))
            .query_async(&mut conn)
            .await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_ids_as_strings_and_skip_what_is_absent() {
        let s = CommandStatus {
            command: Id(7),
            city: Some("boston".into()),
            state: CommandState::Applied,
            reason: None,
            post: Some(Id(9)),
            applied: Some(AppliedAt {
                shard: "shard-1".into(),
                epoch: 2,
                lsn: Lsn(0x1_0000_0010),
                version: 3,
            }),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["command"], "7");
        assert_eq!(v["post"], "9");
        assert_eq!(v["state"], "applied");
        assert_eq!(v["applied"]["lsn"], "1/10");
        assert!(v.get("reason").is_none());
        assert_eq!(serde_json::from_value::<CommandStatus>(v).unwrap(), s);
        assert_eq!(status_key(Id(7)), "cmd:7");
    }
}
