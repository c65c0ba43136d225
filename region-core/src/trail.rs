//! The trail a write leaves in the logs: one line per role that handles
//! it, each naming the request id the edge made (`model::RequestId`), so
//! that `grep <id> logs/*` follows a post from its POST to its page.
//!
//! The lines have a target of their own, [`TARGET`], so that an operator
//! who does not want one line per write per role can turn them off
//! (`RUST_LOG=info,cityboard::trail=off`) without losing anything else.
//! A write without a request id (the janitor's expiry, the demo data)
//! leaves its lines too, with `request_id=-`.

use crate::apply::fold::Outcome;
use crate::model::{Command, Event, RequestId};

/// The tracing target of every trail line.
pub const TARGET: &str = "cityboard::trail";

fn id(request_id: Option<&RequestId>) -> &str {
    request_id.map_or("-", RequestId::as_str)
}

/// The api produced `command` to the commands topic.
pub fn produced(command: &Command) {
    tracing::info!(
        target: TARGET,
        request_id = id(command.request_id.as_ref()),
        command = %command.id,
        city = %command.city,
        post = ?command.kind.post_id().map(|p| p.0),
        "command produced"
    );
}

/// The writer applied `command` on `shard` (or found it applied before:
/// `fresh` false) with `outcome`.
pub fn applied(command: &Command, shard: &str, outcome: &Outcome, fresh: bool) {
    let (what, version) = match outcome {
        Outcome::Applied { version } => ("applied", *version),
        Outcome::Rejected(_) => ("rejected", None),
    };
    tracing::info!(
        target: TARGET,
        request_id = id(command.request_id.as_ref()),
        command = %command.id,
        city = %command.city,
        shard,
        version,
        fresh,
        "command {what}"
    );
}

/// The relay sent `event` from `shard`'s outbox to the events topic.
pub fn relayed(event: &Event, shard: &str) {
    let (post, version) = match event {
        Event::PostChanged { post, .. } => (post.id, post.version),
        Event::PostGone {
            post_id, version, ..
        } => (*post_id, *version),
    };
    tracing::info!(
        target: TARGET,
        request_id = id(event.request_id()),
        city = %event.city(),
        shard,
        post = post.0,
        version,
        "event relayed"
    );
}

/// The publisher's KV write of `key` at `version` succeeded.
pub fn published(request_id: Option<&str>, key: &str, version: i64, gone: bool) {
    tracing::info!(
        target: TARGET,
        request_id = request_id.unwrap_or("-"),
        key,
        version,
        gone,
        "page written to KV"
    );
}
