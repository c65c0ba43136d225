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

/// Keeps KV's answer for post `id`, read at `now_ms`.
pub fn keep(id: u64, kept: Kept, now_ms: f64) {
    let size = kept.bytes.length() as usize;
    if size > MAX_ENTRY_BYTES {
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

/// Forgets post `id` (its page was just written through this isolate).
pub fn forget(id: u64) {
    KEEP.with(|k| k.borrow_mut().remove(id));
}

impl Keep {
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            self.bytes -= e.size;
        }
    }
}
