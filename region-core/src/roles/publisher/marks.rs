//! "Never older" across restarts, rebalances and sinks that write
//! unconditionally: a durable high-water mark per KV key (`kv_marks` in the
//! region's catalog).
//!
//! Cloudflare KV has no conditional write: its bulk API applies the last
//! write it receives, and its reads may be up to ~60 s stale, so reading KV
//! before writing could not decide anything either. The publisher's
//! in-memory map (`coalesce`) is lost at a restart and is per process, and
//! a duplicate `post_changed` replayed after a restart would otherwise
//! write a page over the post's tombstone. So before every bulk write the
//! publisher *claims* its keys here, in one transaction: it locks their
//! marks (in key order, so two publishers cannot deadlock), keeps only the
//! writes that `kv::replaces` lets replace the mark, and raises the marks
//! of those before it writes. The KV rule is the edge's own, so renewing an
//! expired post and restoring a hidden one (a newer version) still replace
//! the tombstone, and a template change still re-publishes a page.
//!
//! Claimed before the write, not after: a mark raised after the write would
//! lag KV whenever a crash fell between the two, and a replay of an older
//! event could then go out. A write equal to its mark (same version, kind
//! and template) is let through, so a crash between the claim and the write
//! is repaired by the replay of the same event (its offset was never
//! committed) and nothing is lost.
//!
//! What it does not cover: a write already in flight when its partition
//! moves to another publisher, which that publisher's newer write can
//! precede (a window of one HTTP call). The janitor's reconciler, comparing
//! the shard with KV, repairs that.

use std::collections::HashSet;

use cityboard_protocol::kv::{PostMeta, replaces};
use sqlx::PgPool;

use super::coalesce::Entry;

/// Whether a write of `new` may go out when `mark` is the newest write
/// claimed for its key: what `kv::replaces` allows, or the same write again.
pub fn may_write(mark: Option<&PostMeta>, new: &PostMeta) -> bool {
    match mark {
        Some(m) if m.version == new.version && m.gone == new.gone && m.template == new.template => {
            true
        }
        _ => replaces(mark, new),
    }
}

/// The region catalog's `kv_marks`.
#[derive(Debug, Clone)]
pub struct Marks {
    catalog: PgPool,
}

/// A row of `kv_marks`.
type Row = (String, i64, bool, Option<i64>);

fn meta_of(version: i64, gone: bool, template: Option<i64>) -> PostMeta {
    PostMeta {
        version,
        city: None,
        expires_at: None,
        gone,
        template: template.and_then(|t| u32::try_from(t).ok()),
        request: None,
    }
}

impl Marks {
    /// Marks in the region catalog at `catalog`.
    pub fn new(catalog: PgPool) -> Marks {
        Marks { catalog }
    }

    /// Claims the keys of `entries` (one entry per key): returns the keys
    /// whose write must not go out (the mark is newer, or a tombstone of the
    /// same version), and raises the marks of the others.
    pub async fn claim(&self, entries: &[&Entry]) -> Result<HashSet<String>, sqlx::Error> {
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let mut tx = self.catalog.begin().await?;
        let marks: Vec<Row> = sqlx::query_as(
            "SELECT key, version, gone, template FROM kv_marks \
             WHERE key = ANY($1) ORDER BY key FOR UPDATE",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        let marks: std::collections::HashMap<String, PostMeta> = marks
            .into_iter()
            .map(|(k, v, g, t)| (k, meta_of(v, g, t)))
            .collect();
        let (mut refused, mut go) = (HashSet::new(), Vec::new());
        for e in entries {
            if may_write(marks.get(&e.key), &e.meta) {
                go.push(*e);
            } else {
                refused.insert(e.key.clone());
            }
        }
        if !go.is_empty() {
            let keys: Vec<&str> = go.iter().map(|e| e.key.as_str()).collect();
            let versions: Vec<i64> = go.iter().map(|e| e.meta.version).collect();
            let gone: Vec<bool> = go.iter().map(|e| e.meta.gone).collect();
            let templates: Vec<Option<i64>> =
                go.iter().map(|e| e.meta.template.map(i64::from)).collect();
            // The version guard is a second line: a key first claimed by
            // two publishers at once has no row to lock, and the later
            // insert must not lower the other's mark.
            sqlx::query(
                "INSERT INTO kv_marks (key, version, gone, template, updated_at) \
                 SELECT k, v, g, t, now() \
                 FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::bigint[]) AS m(k, v, g, t) \
                 ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, \
                   gone = EXCLUDED.gone, template = EXCLUDED.template, updated_at = now() \
                 WHERE kv_marks.version <= EXCLUDED.version",
            )
            .bind(&keys)
            .bind(&versions)
            .bind(&gone)
            .bind(&templates)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(refused)
    }

    /// The mark of `key`, if it was ever claimed.
    pub async fn of(&self, key: &str) -> Result<Option<PostMeta>, sqlx::Error> {
        let row: Option<Row> =
            sqlx::query_as("SELECT key, version, gone, template FROM kv_marks WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.catalog)
                .await?;
        Ok(row.map(|(_, v, g, t)| meta_of(v, g, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_refuses_what_the_kv_rule_refuses_and_lets_the_same_write_again() {
        let page = |v| PostMeta::page("boston", v, 0).with_template(3);
        let mark = |m: &PostMeta| meta_of(m.version, m.gone, m.template.map(i64::from));
        let gone = PostMeta::tombstone(2);
        assert!(may_write(None, &page(1)));
        assert!(
            !may_write(Some(&mark(&gone)), &page(1)),
            "a duplicate create"
        );
        assert!(!may_write(Some(&mark(&gone)), &page(2)), "same version");
        assert!(may_write(Some(&mark(&gone)), &page(3)), "restored, renewed");
        assert!(may_write(Some(&mark(&gone)), &gone), "the same write again");
        assert!(may_write(Some(&mark(&page(2))), &page(2)));
        assert!(!may_write(Some(&mark(&page(3))), &page(2)));
        assert!(may_write(Some(&mark(&page(2))), &gone));
        let other_template = PostMeta::page("boston", 2, 0).with_template(4);
        assert!(may_write(Some(&mark(&page(2))), &other_template));
    }
}
