//! Events the janitor's reconciler sent (`bus::REPAIR_HEADER`): the state of
//! a post read from the shard because edge KV was seen to differ from it.
//! They are offered with `Coalescer::offer_repair`, which writes them even at
//! the version the publisher remembers having written, never over a newer.

use rdkafka::Message;
use rdkafka::message::Headers;

use super::coalesce::{At, Coalescer, Entry, Offered};
use crate::bus::REPAIR_HEADER;

/// Whether `m` carries the reconciler's header.
pub fn is_repair(m: &impl Message) -> bool {
    m.headers()
        .is_some_and(|h| h.iter().any(|h| h.key == REPAIR_HEADER))
}

/// Offers `entry`, read from `m` at `at`: as a repair when `m` is one.
pub fn offer(coalescer: &mut Coalescer, m: &impl Message, entry: Entry, at: At) -> Offered {
    if is_repair(m) {
        coalescer.offer_repair(entry, at)
    } else {
        coalescer.offer(entry, at)
    }
}
