//! Which consumer offset each partition may commit.
//!
//! Offsets are committed only up to just before the oldest message whose
//! command is not finished (applied or rejected in a shard, or copied to the
//! dead-letter topic). A frozen city's commands, or those of a shard that is
//! down, stay behind that mark while later messages of the same partition
//! are applied; a crash then replays from the mark, re-applying what came
//! after, and `applied_commands` makes that replay harmless. Committing past
//! an unfinished command instead would lose it in a crash.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
struct Partition {
    /// Offsets read and not finished.
    pending: BTreeSet<i64>,
    /// One past the highest offset read.
    next: i64,
    /// Last offset committed (Kafka's "next offset to read").
    committed: Option<i64>,
}

/// Per-partition bookkeeping of one topic.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: BTreeMap<i32, Partition>,
}

impl Offsets {
    /// A message was read.
    pub fn read(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        if offset < p.next {
            // Read again after a rebalance or a seek: the offsets before it
            // will be read again too, and a commit must not pass them.
            p.pending.retain(|o| *o < offset);
            p.committed = p.committed.map(|c| c.min(offset));
        }
        p.pending.insert(offset);
        p.next = offset + 1;
    }

    /// A message's command is finished.
    pub fn finished(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.pending.remove(&offset);
        }
    }

    /// The partition was revoked: forget it (its next owner starts from
    /// the last commit).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Offsets to commit now: per partition, the oldest unfinished offset
    /// (or one past the last read), where that moved since the last commit.
    pub fn to_commit(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, p)| {
                let mark = p.pending.first().copied().unwrap_or(p.next);
                (p.committed.is_none_or(|c| mark > c) && mark > 0).then_some((*partition, mark))
            })
            .collect()
    }

    /// Records that `offsets` were committed.
    pub fn committed(&mut self, offsets: &[(i32, i64)]) {
        for (partition, offset) in offsets {
            if let Some(p) = self.partitions.get_mut(partition) {
                p.committed = Some(*offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_stops_before_the_oldest_unfinished_message() {
        let mut o = Offsets::default();
        for off in 10..15 {
            o.read(0, off);
        }
        o.read(1, 3);
        o.finished(0, 10);
        o.finished(0, 12); // 11 is held
        o.finished(0, 13);
        assert_eq!(o.to_commit(), vec![(0, 11), (1, 3)]);
        o.committed(&[(0, 11), (1, 3)]);
        assert_eq!(o.to_commit(), vec![], "nothing moved");
        o.finished(0, 11);
        o.finished(0, 14);
        o.finished(1, 3);
        assert_eq!(o.to_commit(), vec![(0, 15), (1, 4)]);
    }

    #[test]
    fn a_message_read_again_pulls_the_mark_back() {
        let mut o = Offsets::default();
        o.read(0, 5);
        o.read(0, 6);
        o.finished(0, 5);
        o.committed(&[(0, 6)]);
        o.read(0, 6); // replayed after a rebalance
        assert_eq!(o.to_commit(), vec![], "6 is not finished; 6 is committed");
        o.finished(0, 6);
        assert_eq!(o.to_commit(), vec![(0, 7)]);
        o.forget(0);
        assert_eq!(o.to_commit(), vec![]);
    }
}
