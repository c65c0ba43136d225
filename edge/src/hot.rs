//! KV's answers for post pages, kept in the isolate for a moment.
//!
//! A KV read is a subrequest: in local workerd an HTTP round trip to the KV
//! service, on Cloudflare a lookup in the colo's KV cache. A page that many
//! visitors open at once (the hot posts of a city) is read from KV once per
//! `PAGE_CACHE_MS` per isolate instead of once per visitor. This widens no
//! guarantee KV gives: KV itself serves cached reads up to 60 s stale, a
//! visitor's read-your-writes cookie is still checked against the kept
//! version on every request ([`crate::post`]), and the bulk route forgets
//! the keys it writes in its own isolate.
//!
//! Kept are pages and tombstones, as JS bytes with their metadata and the
//! 200's headers (a `Response` made from them copies both, so one entry
//! serves any number of requests). Misses are not kept: a page published a
//! moment later must show on the next request. The keep is bounded in bytes; the oldest
//! entries go first.
//!
//! A KV read and a bulk write of the same key can interleave in one isolate:
//! the read is answered with the old page, the write lands and forgets the
//! key, and then the read's answer would be kept, serving the old page for
//! another `PAGE_CACHE_MS` after KV holds the new one. So a read notes the
//! [`WriteFence`] before it starts ([`read_started`]) and its answer is kept
//! only when no write ran or finished since.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use cityboard_protocol::kv::PostMeta;
use js_sys::Uint8Array;

/// Default of `PAGE_CACHE_MS`.
pub const DEFAULT_PAGE_CACHE_MS: u32 = 1000;
/// Longest `PAGE_CACHE_MS` accepted: KV's own staleness bound.
pub const MAX_PAGE_CACHE_MS: u32 = 60_000;
/// Bytes of pages one isolate keeps at most (isolates have 128 MB).
const BUDGET_BYTES: usize = 16 << 20;
/// Pages bigger than this are read from KV on every request, never kept.
pub const MAX_ENTRY_BYTES: usize = 512 << 10;

/// One kept answer.
#[derive(Clone)]
pub struct Kept {
    /// The page's bytes (empty for a tombstone).
    pub bytes: Uint8Array,
    /// Its metadata, as KV returned it.
    pub meta: PostMeta,
    /// The headers of a 200 with this page (ETag, type, caching), built
    /// once; a response copies them.
    pub headers: web_sys::Headers,
}

struct Entry {
    kept: Kept,
    size: usize,
    at_ms: f64,
}

#[derive(Default)]
struct Keep {
    entries: HashMap<u64, Entry>,
    /// Ids in the order they were kept (an id may appear again after a
    /// re-keep; stale positions are skipped when evicting).
    order: VecDeque<(u64, f64)>,
    bytes: usize,
}

thread_local! {
    static KEEP: RefCell<Keep> = RefCell::new(Keep::default());
    static FENCE: RefCell<WriteFence> = RefCell::new(WriteFence::default());
}

/// The bulk writes of this isolate, as far as keeping needs them: how many
/// are in flight and how many have started or finished so far.
#[derive(Default, Debug)]
pub struct WriteFence {
    in_flight: u32,
    generation: u64,
}

/// What a KV read saw of the fence when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStart(u64);

impl WriteFence {
    fn read_started(&self) -> ReadStart {
        ReadStart(self.generation)
    }

    /// Whether a read that started at `start` may keep its answer: no write
    /// is in flight (it may have been read half-applied) and none started or
    /// finished since (it may have been read before the put).
    fn may_keep(&self, start: ReadStart) -> bool {
        self.in_flight == 0 && self.generation == start.0
    }

    fn write_started(&mut self) {
        self.in_flight += 1;
        self.generation += 1;
    }

    fn write_finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.generation += 1;
    }
}

/// Notes the start of a KV read whose answer may be kept.
pub fn read_started() -> ReadStart {
    FENCE.with(|f| f.borrow().read_started())
}

/// A bulk write of post `id` in flight in this isolate; dropping it (on
/// success or error) ends it. The kept page is forgotten at both ends, so
/// neither the old page nor a read that raced the write is served after it.
pub struct Writing(u64);

impl Writing {
    /// Starts a write of post `id`.
    pub fn start(id: u64) -> Self {
        FENCE.with(|f| f.borrow_mut().write_started());
        forget(id);
        Writing(id)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        FENCE.with(|f| f.borrow_mut().write_finished());
        forget(self.0);
    }
}

/// The kept answer for post `id`, if it is younger than `ttl_ms`.
pub fn get(id: u64, ttl_ms: u32, now_ms: f64) -> Option<Kept> {
    KEEP.with(|k| {
        let mut keep = k.borrow_mut();
        let entry = keep.entries.get(&id)?;
        let age_ms = now_ms - entry.at_ms;
        if (0.0..f64::from(ttl_ms)).contains(&age_ms) {
            return Some(entry.kept.clone());
        }
        keep.remove(id);
        None
    })
}

/// Keeps KV's answer for post `id`, read at `now_ms` by a read that
/// started at `start`, unless a bulk write overlapped that read.
pub fn keep(id: u64, kept: Kept, now_ms: f64, start: ReadStart) {
    let size = kept.bytes.length() as usize;
    if size > MAX_ENTRY_BYTES || !FENCE.with(|f| f.borrow().may_keep(start)) {
        return;
    }
    KEEP.with(|k| {
        let mut keep = k.borrow_mut();
        keep.remove(id);
        while keep.bytes + size > BUDGET_BYTES {
            let Some((old, at)) = keep.order.pop_front() else {
                break;
            };
            if keep.entries.get(&old).is_some_and(|e| e.at_ms == at) {
                keep.remove(old);
            }
        }
        keep.bytes += size;
        keep.order.push_back((id, now_ms));
        keep.entries.insert(
            id,
            Entry {
                kept,
                size,
                at_ms: now_ms,
            },
        );
        // Positions of removed or re-kept ids pile up in `order` when the
        // budget is never reached; drop them once they outnumber the entries.
        if keep.order.len() > 2 * keep.entries.len() + 64 {
            let Keep { entries, order, .. } = &mut *keep;
            order.retain(|(id, at)| entries.get(id).is_some_and(|e| e.at_ms == *at));
        }
    });
}

/// Forgets post `id` (its page is being written through this isolate).
fn forget(id: u64) {
    KEEP.with(|k| k.borrow_mut().remove(id));
}

impl Keep {
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            self.bytes -= e.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_with_no_write_beside_it_is_kept() {
        let fence = WriteFence::default();
        let start = fence.read_started();
        assert!(fence.may_keep(start));
    }

    #[test]
    fn a_read_that_started_before_a_finished_write_is_not_kept() {
        let mut fence = WriteFence::default();
        let start = fence.read_started();
        fence.write_started();
        fence.write_finished();
        assert!(!fence.may_keep(start));
    }

    #[test]
    fn a_read_during_a_write_is_not_kept_even_when_it_started_after_it() {
        let mut fence = WriteFence::default();
        fence.write_started();
        let start = fence.read_started();
        assert!(!fence.may_keep(start));
        fence.write_finished();
        assert!(!fence.may_keep(start));
    }

    #[test]
    fn a_read_after_the_writes_is_kept_again() {
        let mut fence = WriteFence::default();
        fence.write_started();
        fence.write_started();
        fence.write_finished();
        fence.write_finished();
        let start = fence.read_started();
        assert!(fence.may_keep(start));
    }
}
