//! Account commands (key `@account`, design §4 "Accounts"): a revoked
//! session or a deleted account, sent by the user's home region to every
//! region's commands topic.
//!
//! The writer records them in its region's catalog and turns an account
//! deletion into one `delete_user` command per city of the region, produced
//! back onto the commands topic keyed by city: each is then applied like
//! any other command, in order with that city's writes, on the shard the
//! map names (a frozen city holds it like the rest). The per-city commands
//! reuse the account command's id, so the replay a crash causes is
//! absorbed by `applied_commands` (keyed by city and id).
//!
//! Nothing here blocks the loop: a command whose catalog or broker is
//! unreachable waits in `Pending` and is tried again on a later turn, and
//! its offset stays unfinished until then.

use std::time::{Duration, Instant};

use backon::ExponentialBackoff;

use crate::backoff::doubling;
use crate::catalog::accounts;
use crate::model::{AccountCommand, AccountKind, Command, CommandKind};
use crate::roles::writer::WriterParts;

/// An account command read and not carried out yet.
#[derive(Debug)]
pub(super) struct Pending {
    pub command: AccountCommand,
    pub partition: i32,
    pub offset: i64,
    /// Not before this.
    pub due: Instant,
    /// The waits after its failures, one a failure.
    pub waits: ExponentialBackoff,
}

/// Wait after an account command's first failure; doubles with each
/// failure that follows (the waits were 100 ms × 2^failures).
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest wait between two attempts of an account command.
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Pending {
    pub fn new(command: AccountCommand, partition: i32, offset: i64) -> Pending {
        Pending {
            command,
            partition,
            offset,
            due: Instant::now(),
            waits: doubling(FIRST_RETRY, RETRY_MAX),
        }
    }

    /// After a failure: 200 ms, doubling up to 5 s.
    pub fn failed(&mut self, now: Instant) {
        self.due = now + self.waits.next().unwrap_or(RETRY_MAX);
    }
}

/// Carries out one account command for `region`; returns how many
/// per-city commands it produced.
pub(super) async fn carry_out(
    parts: &WriterParts,
    region: &str,
    commands_topic: &str,
    command: &AccountCommand,
) -> anyhow::Result<usize> {
    accounts::apply(&parts.catalog, command).await?;
    let AccountKind::DeleteAccount { user_id, .. } = &command.kind else {
        return Ok(0);
    };
    let map = parts.router.map.get();
    let mut cities: Vec<_> = map.cities.values().filter(|r| r.region == region).collect();
    cities.sort_by(|a, b| a.city.cmp(&b.city));
    let mut payloads = Vec::with_capacity(cities.len());
    for route in &cities {
        let per_city = Command {
            id: command.id,
            city: route.city.clone(),
            created_at: command.created_at,
            epoch: route.epoch,
            request_id: None,
            kind: CommandKind::DeleteUser { user_id: *user_id },
        };
        payloads.push((route.city.clone(), serde_json::to_vec(&per_city)?));
    }
    let sends = payloads
        .iter()
        .map(|(city, payload)| parts.producer.produce(commands_topic, city, payload, &[]));
    for result in futures_util::future::join_all(sends).await {
        result?;
    }
    Ok(payloads.len())
}
