//! The properties the chaos test proves once the pipeline is quiet, from
//! the writes' outcomes (the ledger), the shard primaries and KV:
//!
//! - every acknowledged create exists exactly once, on its city's shard;
//! - each post has the content of its last acknowledged write, or of an
//!   unknown-outcome write sent after it (which may have applied);
//! - its version counts every applied change once: at least its
//!   acknowledged writes, at most those plus the unknown ones;
//! - its KV entry is at the row's version: a page with its title when
//!   live, a tombstone (`gone`) when deleted;
//! - an unacknowledged create is either wholly there (row and KV page at
//!   its version) or not at all, and KV holds nothing without a row.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cityboard_deploy::edge_kv;
use cityboard_tests::StackState;

use super::load::{Kind, Outcome, Write};
use super::observe::{self, KvEntry, Row};

/// What a post should look like after one of its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Live { title: String, price: i64 },
    Deleted,
}

fn expected(w: &Write) -> Expected {
    match w.kind {
        Kind::Create | Kind::Edit => Expected::Live {
            title: w.title.clone(),
            price: w.price,
        },
        Kind::Delete => Expected::Deleted,
    }
}

fn matches(row: &Row, e: &Expected) -> bool {
    match e {
        Expected::Live { title, price } => {
            row.status == "live" && &row.title == title && row.price == Some(*price)
        }
        Expected::Deleted => row.status == "deleted",
    }
}

/// The row and KV agree for every post, and nothing waits in an outbox.
pub fn quiet(rows: &[Row], kv: &HashMap<u64, KvEntry>, outbox: i64) -> bool {
    outbox == 0
        && rows.iter().all(|r| {
            kv.get(&r.id)
                .is_some_and(|e| e.meta.version == r.version && e.meta.gone == (r.status != "live"))
        })
}

/// Every violation found; empty when the run was correct.
pub fn violations(
    writes: &[Write],
    rows: &[Row],
    kv: &HashMap<u64, KvEntry>,
    kv_ids: &[u64],
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut by_id: HashMap<u64, Vec<&Row>> = HashMap::new();
    for r in rows {
        by_id.entry(r.id).or_default().push(r);
    }
    let mut per_post: HashMap<u64, Vec<&Write>> = HashMap::new();
    for w in writes {
        if let Some(id) = w.post {
            per_post.entry(id).or_default().push(w);
        }
        match &w.outcome {
            Outcome::Acked { version: None, .. } => bad.push(format!(
                "acknowledged {:?} {:?} never said applied at its status URL",
                w.kind, w.title
            )),
            Outcome::Rejected(why) if w.kind == Kind::Create && why.starts_with("202") => bad.push(
                format!("acknowledged create {:?} was rejected: {why}", w.title),
            ),
            _ => {}
        }
    }

    for (id, ws) in &per_post {
        let found = by_id.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let acked_create = ws.iter().any(|w| w.kind == Kind::Create && w.is_acked());
        if !acked_create {
            continue; // an id only an answer names is an acknowledged create's
        }
        if found.len() != 1 {
            bad.push(format!("post {id}: {} rows, want exactly 1", found.len()));
            continue;
        }
        let row = found[0];
        if ws[0].city != row.city {
            bad.push(format!(
                "post {id}: on {} but written to {}",
                row.city, ws[0].city
            ));
        }
        let acked = ws.iter().filter(|w| w.is_acked()).count() as i64;
        let unknown = ws.iter().filter(|w| w.is_unknown()).count() as i64;
        if row.version < acked || row.version > acked + unknown {
            bad.push(format!(
                "post {id}: version {} for {acked} acknowledged and {unknown} unknown changes",
                row.version
            ));
        }
        if let Some(v) = ws.iter().filter_map(|w| w.acked_version()).max()
            && row.version < v
        {
            bad.push(format!(
                "post {id}: version {} below acknowledged {v}",
                row.version
            ));
        }
        let last = ws.iter().rposition(|w| w.is_acked()).expect("the create");
        let allowed: Vec<Expected> = std::iter::once(ws[last])
            .chain(ws[last + 1..].iter().copied().filter(|w| w.is_unknown()))
            .map(expected)
            .collect();
        if !allowed.iter().any(|e| matches(row, e)) {
            bad.push(format!(
                "post {id}: {} {:?} {:?}, want one of {allowed:?}",
                row.status, row.title, row.price
            ));
        }
        check_kv(&mut bad, row, kv.get(id));
    }

    // Rows no acknowledged create names: unknown creates, wholly there.
    let mut unknown_titles: HashSet<&str> = writes
        .iter()
        .filter(|w| w.kind == Kind::Create && w.post.is_none())
        .map(|w| w.title.as_str())
        .collect();
    let acked_ids: HashSet<u64> = per_post
        .iter()
        .filter(|(_, ws)| ws.iter().any(|w| w.kind == Kind::Create && w.is_acked()))
        .map(|(id, _)| *id)
        .collect();
    for (id, found) in &by_id {
        if acked_ids.contains(id) {
            continue;
        }
        let row = found[0];
        if found.len() != 1 || !unknown_titles.remove(row.title.as_str()) {
            bad.push(format!(
                "post {id} ({:?}, {} rows) is no write's of this run",
                row.title,
                found.len()
            ));
            continue;
        }
        if row.status != "live" || row.version != 1 {
            bad.push(format!(
                "unacknowledged create {id}: {} at version {}, want live at 1",
                row.status, row.version
            ));
        }
        check_kv(&mut bad, row, kv.get(id));
    }
    for id in kv_ids {
        if !by_id.contains_key(id) {
            bad.push(format!(
                "KV holds post {id}, which no shard has (half there)"
            ));
        }
    }
    bad
}

fn check_kv(bad: &mut Vec<String>, row: &Row, entry: Option<&KvEntry>) {
    let id = row.id;
    let Some(e) = entry else {
        bad.push(format!(
            "post {id}: no KV entry (row at version {})",
            row.version
        ));
        return;
    };
    if e.meta.version != row.version {
        bad.push(format!(
            "post {id}: KV at version {}, row at {}",
            e.meta.version, row.version
        ));
    }
    match (row.status.as_str(), e.meta.gone) {
        ("live", false) => {
            if !e.page.contains(&row.title) {
                bad.push(format!(
                    "post {id}: KV page lacks its title {:?}",
                    row.title
                ));
            }
        }
        ("live", true) => bad.push(format!("post {id}: live, but KV holds a tombstone")),
        (_, false) => bad.push(format!("post {id}: {}, but KV serves a page", row.status)),
        (_, true) => {}
    }
}

/// Waits (at most `limit`) until the pipeline is quiet for the posts
/// `keep` selects (see `check::quiet`), and returns them with their KV
/// entries as last read.
pub async fn until_quiet(
    state: &StackState,
    kv: &edge_kv::Client,
    limit: Duration,
    keep: impl Fn(&Row) -> bool,
) -> (Vec<Row>, HashMap<u64, KvEntry>) {
    let deadline = Instant::now() + limit;
    loop {
        let mut found = observe::rows(state).await;
        found.retain(|r| keep(r));
        let ids: Vec<u64> = found.iter().map(|r| r.id).collect();
        let kv = observe::kv_entries(kv, &ids).await;
        let outbox = observe::outbox_len(state).await;
        if quiet(&found, &kv, outbox) || Instant::now() > deadline {
            return (found, kv);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
