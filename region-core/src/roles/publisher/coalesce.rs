//! Per-key write coalescing and the "never an older version" guard.
//!
//! Cloudflare KV takes one write per second per key (design §3), and a post
//! edited three times in a second only needs its last version at the edge.
//! So each key has at most one write in flight and at most one pending: a
//! newer version replaces the pending one (its offsets come along, so the
//! commit cannot pass them before the write that covers them happened), and
//! a pending write is due only a full interval after the key's last write.
//!
//! The last version written per key is remembered, so an event older than
//! it (a replay after a crash, a re-send after a producer rebuild) writes
//! nothing. The map is bounded: past `max_keys`, keys idle for a while are
//! forgotten, oldest first. A forgotten key's replay may reach the sink
//! again; the edge's bulk route refuses it there too (`kv::replaces`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cityboard_protocol::kv::{BulkWrite, PostMeta, replaces};

/// A write the publisher wants to make: one event turned into a KV entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `post:{id}`.
    pub key: String,
    /// Version and kind (page or tombstone), for the comparisons.
    pub meta: PostMeta,
    /// The city whose Redis pages are invalidated once it is written.
    pub city: String,
    /// What goes to the sink.
    pub write: BulkWrite,
}

impl Entry {
    /// The same entry, its metadata naming the request whose write made
    /// it (`trail`), in the comparisons' copy and in what goes to KV.
    pub fn naming(mut self, request: Option<&str>) -> Entry {
        if request.is_some() {
            self.meta = self.meta.with_request(request);
            self.write.metadata = serde_json::to_value(&self.meta).ok();
        }
        self
    }
}

/// Where an event was read: `(partition, offset)`.
pub type At = (i32, i64);

/// A write taken for the sink, with every event it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub entry: Entry,
    pub covers: Vec<At>,
}

/// What `offer` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// A new pending write for its key.
    Queued,
    /// Replaced (or joined) the key's pending write.
    Coalesced,
    /// Not newer than what the key has or will have: nothing to write, and
    /// the event is finished at once.
    Stale,
}

/// Version and kind of what was last written to a key: all `replaces`
/// looks at, kept instead of the whole metadata to keep the map small.
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: i64,
    gone: bool,
    /// A page of the same version and another template replaces this one.
    template: Option<u32>,
}

impl Seen {
    fn of(meta: &PostMeta) -> Seen {
        Seen {
            version: meta.version,
            gone: meta.gone,
            template: meta.template,
        }
    }

    fn meta(self) -> PostMeta {
        PostMeta {
            version: self.version,
            city: None,
            expires_at: None,
            gone: self.gone,
            template: self.template,
            request: None,
        }
    }
}

#[derive(Debug, Default)]
struct Key {
    /// Last write that reached the sink, and when.
    written: Option<(Seen, Instant)>,
    /// Being written now.
    in_flight: Option<Seen>,
    pending: Option<Due>,
}

/// The coalescing state of every key the publisher has seen.
#[derive(Debug)]
pub struct Coalescer {
    keys: HashMap<String, Key>,
    /// Keys with a pending write.
    waiting: HashSet<String>,
    /// Shortest time between two writes of one key.
    interval: Duration,
    /// Keys remembered at most (see the module comment).
    max_keys: usize,
    /// When the coalescer was made: the due time of a key never written.
    epoch: Instant,
}

impl Coalescer {
    /// At most one write per key per `interval`; at most `max_keys` keys
    /// remembered.
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        Coalescer {
            keys: HashMap::new(),
            waiting: HashSet::new(),
            interval,
            max_keys: max_keys.max(1),
            epoch: Instant::now(),
        }
    }

    /// Keys with a write pending.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// An event's entry, read at `at`.
    pub fn offer(&mut self, entry: Entry, at: At) -> Offered {
        self.offer_from(entry, Some(at))
    }

    /// Offers a write that no event asked for (a page re-published after a
    /// template change): coalesced and ordered like the others, covering
    /// no offset.
    pub fn offer_republished(&mut self, entry: Entry) -> Offered {
        self.offer_from(entry, None)
    }

    /// An event the janitor's reconciler sent (`bus::REPAIR_HEADER`): KV
    /// was seen to differ from the shard, so the entry is written again
    /// even at the version this process last wrote (the entry was lost or
    /// overwritten since); it is stale only when what the key has or will
    /// have would replace it (a newer version, or a tombstone of its own
    /// version over a page).
    pub fn offer_repair(&mut self, entry: Entry, at: At) -> Offered {
        self.offer_checked(entry, Some(at), true)
    }

    fn offer_from(&mut self, entry: Entry, at: Option<At>) -> Offered {
        self.offer_checked(entry, at, false)
    }

    fn offer_checked(&mut self, entry: Entry, at: Option<At>, repair: bool) -> Offered {
        let key = self.keys.entry(entry.key.clone()).or_default();
        let newest = key
            .pending
            .as_ref()
            .map(|p| Seen::of(&p.entry.meta))
            .or(key.in_flight)
            .or(key.written.map(|(s, _)| s));
        let stale = match newest {
            Some(n) if repair => replaces(Some(&entry.meta), &n.meta()),
            Some(n) => !replaces(Some(&n.meta()), &entry.meta),
            None => false,
        };
        if stale {
            return Offered::Stale;
        }
        match &mut key.pending {
            Some(p) => {
                p.entry = entry;
                p.covers.extend(at);
                Offered::Coalesced
            }
            None => {
                self.waiting.insert(entry.key.clone());
                key.pending = Some(Due {
                    entry,
                    covers: at.into_iter().collect(),
                });
                Offered::Queued
            }
        }
    }

    fn due_at(&self, key: &Key) -> Option<Instant> {
        if key.in_flight.is_some() || key.pending.is_none() {
            return None;
        }
        Some(match key.written {
            Some((_, at)) => at + self.interval,
            // Never written by this process: at once.
            None => self.epoch,
        })
    }

    /// When the next pending write falls due (none: nothing pending, or
    /// everything pending waits on a write in flight).
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|k| self.keys.get(k).and_then(|key| self.due_at(key)))
            .min()
    }

    /// Takes up to `max` writes that are due at `now`; each key taken is in
    /// flight until `written`.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<Due> {
        let ready: Vec<String> = self
            .waiting
            .iter()
            .filter(|k| {
                self.keys
                    .get(*k)
                    .and_then(|key| self.due_at(key))
                    .is_some_and(|at| at <= now)
            })
            .take(max)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for k in ready {
            self.waiting.remove(&k);
            if let Some(key) = self.keys.get_mut(&k)
                && let Some(due) = key.pending.take()
            {
                key.in_flight = Some(Seen::of(&due.entry.meta));
                out.push(due);
            }
        }
        out
    }

    /// The sink has `keys` (written, or refused as older than what it
    /// holds: either way the key is settled at that version).
    pub fn written<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>, now: Instant) {
        for k in keys {
            if let Some(key) = self.keys.get_mut(k)
                && let Some(seen) = key.in_flight.take()
            {
                key.written = Some((seen, now));
            }
        }
        self.prune(now);
    }

    /// Past `max_keys`, forgets the keys idle longest (nothing pending or
    /// in flight, last written more than an interval ago).
    fn prune(&mut self, now: Instant) {
        if self.keys.len() <= self.max_keys {
            return;
        }
        let mut idle: Vec<(Instant, String)> = self
            .keys
            .iter()
            .filter_map(|(k, key)| match key {
                Key {
                    written: Some((_, at)),
                    in_flight: None,
                    pending: None,
                } if now.saturating_duration_since(*at) > self.interval => Some((*at, k.clone())),
                _ => None,
            })
            .collect();
        idle.sort();
        // Down to 90 % so that pruning does not run at every write.
        let excess = self.keys.len() - self.max_keys * 9 / 10;
        for (_, k) in idle.into_iter().take(excess) {
            self.keys.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: u64, version: i64) -> Entry {
        let meta = PostMeta::page("boston", version, 0);
        Entry {
            key: format!("post:{id}"),
            city: "boston".into(),
            write: BulkWrite {
                key: format!("post:{id}"),
                value: format!("v{version}"),
                metadata: Some(serde_json::to_value(&meta).unwrap()),
                expiration_ttl: None,
            },
            meta,
        }
    }

    fn gone(id: u64, version: i64) -> Entry {
        Entry {
            meta: PostMeta::tombstone(version),
            ..page(id, version)
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn versions_within_the_interval_make_one_write_of_the_last() {
        let mut c = Coalescer::new(SEC, 100);
        let t0 = Instant::now();
        assert_eq!(c.offer(page(1, 1), (0, 10)), Offered::Queued);
        let first = c.take_due(t0, 10);
        assert_eq!(first.len(), 1);
        c.written(["post:1"], t0);
        assert_eq!(c.offer(page(1, 2), (0, 11)), Offered::Queued);
        assert_eq!(c.offer(page(1, 3), (0, 12)), Offered::Coalesced);
        assert_eq!(c.offer(page(1, 4), (0, 13)), Offered::Coalesced);
        assert!(c.take_due(t0 + SEC / 2, 10).is_empty(), "written < 1 s ago");
        assert_eq!(c.next_due(), Some(t0 + SEC));
        let due = c.take_due(t0 + SEC, 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].entry.meta.version, 4);
        assert_eq!(due[0].covers, vec![(0, 11), (0, 12), (0, 13)]);
    }

    #[test]
    fn an_older_version_after_a_newer_one_is_stale() {
        let mut c = Coalescer::new(SEC, 100);
        let t0 = Instant::now();
        c.offer(page(1, 5), (0, 1));
        assert_eq!(c.offer(page(1, 4), (0, 2)), Offered::Stale, "vs pending");
        let _ = c.take_due(t0, 10);
        assert_eq!(c.offer(page(1, 5), (0, 3)), Offered::Stale, "vs in flight");
        c.written(["post:1"], t0);
        assert_eq!(c.offer(page(1, 3), (0, 4)), Offered::Stale, "vs written");
        // A tombstone at the same version wins over the page; not the reverse.
        assert_eq!(c.offer(gone(1, 5), (0, 5)), Offered::Queued);
        assert_eq!(c.offer(page(1, 5), (0, 6)), Offered::Stale);
    }

    #[test]
    fn a_repair_rewrites_the_version_written_but_never_an_older_one() {
        let mut c = Coalescer::new(SEC, 100);
        let t0 = Instant::now();
        c.offer(gone(1, 5), (0, 1));
        let _ = c.take_due(t0, 10);
        c.written(["post:1"], t0);
        assert_eq!(c.offer(gone(1, 5), (0, 2)), Offered::Stale, "a replay");
        assert_eq!(c.offer_repair(gone(1, 5), (0, 3)), Offered::Queued);
        assert_eq!(c.take_due(t0 + SEC, 10).len(), 1);
        c.written(["post:1"], t0 + SEC);
        assert_eq!(c.offer_repair(gone(1, 4), (0, 4)), Offered::Stale, "older");
        assert_eq!(
            c.offer_repair(page(1, 5), (0, 5)),
            Offered::Stale,
            "a page under its own version's tombstone"
        );
        assert_eq!(c.offer_repair(page(1, 6), (0, 6)), Offered::Queued);
    }

    #[test]
    fn a_key_in_flight_waits_and_others_go() {
        let mut c = Coalescer::new(SEC, 100);
        let t0 = Instant::now();
        c.offer(page(1, 1), (0, 1));
        assert_eq!(c.take_due(t0, 10).len(), 1);
        c.offer(page(1, 2), (0, 2));
        c.offer(page(2, 1), (1, 1));
        let due = c.take_due(t0, 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].entry.key, "post:2");
        assert_eq!(c.pending(), 1, "post:1 v2 waits for v1's write");
        c.written(["post:1", "post:2"], t0);
        assert!(c.take_due(t0, 10).is_empty());
        assert_eq!(c.take_due(t0 + SEC, 10).len(), 1);
    }

    #[test]
    fn idle_keys_are_forgotten_past_the_bound() {
        let mut c = Coalescer::new(SEC, 10);
        let t0 = Instant::now();
        for id in 0..10 {
            c.offer(page(id, 1), (0, id as i64));
        }
        let keys: Vec<String> = c
            .take_due(t0, 100)
            .into_iter()
            .map(|d| d.entry.key)
            .collect();
        c.written(keys.iter().map(String::as_str), t0);
        c.offer(page(99, 1), (0, 99));
        let later = t0 + 2 * SEC;
        let keys: Vec<String> = c
            .take_due(later, 100)
            .into_iter()
            .map(|d| d.entry.key)
            .collect();
        c.written(keys.iter().map(String::as_str), later);
        assert!(c.keys.len() <= 10, "{}", c.keys.len());
        assert!(c.keys.contains_key("post:99"), "the key just written stays");
    }
}
