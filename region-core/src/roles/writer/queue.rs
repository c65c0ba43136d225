//! The writer's commands in memory: one ordered queue per city, grouped per
//! shard into batches when due. Pure bookkeeping (no I/O), so every rule is
//! unit-tested.
//!
//! Order: a city has at most one batch in flight, and its commands leave the
//! queue only once finished, so they apply in log order whatever happens —
//! a fence that holds the city, a shard that is down, a reroute after a move.
//! Cities are independent: one that waits never delays another, unless the
//! bound of blocked commands is passed and their partitions pause.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use backon::ExponentialBackoff;

use crate::backoff::doubling;
use crate::model::{Command, Id};

/// A command read from the topic and not finished.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The command.
    pub command: Command,
    /// Where it was read, for the offset mark.
    pub partition: i32,
    /// Where it was read, for the offset mark.
    pub offset: i64,
    /// When it was read (the batch window counts from there).
    pub arrived: Instant,
    /// Single-command applies that failed with an error no retry cured.
    pub strikes: u32,
}

/// Batching and retry knobs.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Most commands in one apply.
    pub batch_max: usize,
    /// How long the first command of a shard waits for company.
    pub batch_window: Duration,
    /// First wait before a held (frozen) city, or one whose reroute did
    /// not settle, is tried again; doubles up to `retry_max`. Only a
    /// fallback: a cutover ends (flip or abort) with a shard map change,
    /// and [`Queue::wake_held`] lets such cities go at once.
    pub hold_retry: Duration,
    /// First wait before a failed shard is tried again; doubles up to
    /// `retry_max`.
    pub shard_retry: Duration,
    /// Longest wait between tries.
    pub retry_max: Duration,
}

#[derive(Debug, Default)]
struct CityQueue {
    commands: VecDeque<Queued>,
    /// The first `in_flight` commands are being applied.
    in_flight: usize,
    /// Held (frozen, or a reroute that did not settle) until then.
    not_before: Option<Instant>,
    /// The waits of consecutive holds; `None` until the first since the
    /// city last finished commands.
    hold_waits: Option<ExponentialBackoff>,
    /// The shard it was last sent to, to tell whether it waits on a shard
    /// that is down.
    shard: Option<String>,
    /// `Queue::map_changes` when its batch was sent: a map change while the
    /// batch was in flight found nothing to wake, so its hold is not
    /// waited out either.
    sent_at_change: u64,
}

#[derive(Debug, Default)]
struct ShardState {
    busy: bool,
    not_before: Option<Instant>,
    /// The waits of consecutive failures; `None` until the first since the
    /// shard's last success.
    failure_waits: Option<ExponentialBackoff>,
    /// Failures with errors that are not the shard being away (a data
    /// error?): past two, batches shrink to one command to find the culprit.
    suspect_failures: u32,
    /// Single-command batches left before normal batching resumes.
    isolate_left: u32,
}

/// A batch to apply on one shard: per city, its routed epoch and commands.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub shard: String,
    pub cities: Vec<(String, i64, Vec<Command>)>,
    /// `(command, partition, offset)` of each command of `cities`: where
    /// it was read, for its dedup row.
    pub read_at: Vec<(Id, i32, i64)>,
}

/// How an apply failed, for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The shard is away (connection refused, timed out, shutting down) or
    /// the transaction met a conflict a retry cures.
    Transient,
    /// Something else: perhaps one command makes the transaction fail.
    Suspect,
}

/// The next of `waits` (a shard's failures, a city's holds): [`doubling`]
/// from `first` to `max`, started at the first try since they were reset.
fn next_wait(waits: &mut Option<ExponentialBackoff>, first: Duration, max: Duration) -> Duration {
    waits
        .get_or_insert_with(|| doubling(first, max))
        .next()
        .unwrap_or(max)
}

/// All cities' queues and all shards' states.
#[derive(Debug)]
pub struct Queue {
    config: QueueConfig,
    cities: HashMap<String, CityQueue>,
    shards: HashMap<String, ShardState>,
    len: usize,
    /// Shard map changes seen (`wake_held` calls).
    map_changes: u64,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Self {
        Queue {
            config,
            cities: HashMap::new(),
            shards: HashMap::new(),
            len: 0,
            map_changes: 0,
        }
    }

    /// Commands in memory, not finished.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, q: Queued) {
        self.len += 1;
        self.cities
            .entry(q.command.city.clone())
            .or_default()
            .commands
            .push_back(q);
    }

    fn city_blocked(&self, c: &CityQueue, now: Instant) -> bool {
        c.not_before.is_some_and(|t| t > now)
            || c.shard.as_ref().is_some_and(|s| {
                self.shards
                    .get(s)
                    .is_some_and(|st| st.not_before.is_some_and(|t| t > now))
            })
    }

    /// Batches due now. `route` gives a city's shard and epoch, or `None`
    /// when the map does not place it in this region; such cities are
    /// returned in the second list for the caller to settle.
    pub fn due(
        &mut self,
        now: Instant,
        route: impl Fn(&str) -> Option<(String, i64)>,
    ) -> (Vec<Dispatch>, Vec<String>) {
        let mut per_shard: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let mut unroutable = Vec::new();
        for (city, q) in &self.cities {
            if q.commands.is_empty() || q.in_flight > 0 || q.not_before.is_some_and(|t| t > now) {
                continue;
            }
            match route(city) {
                Some((shard, epoch)) => per_shard
                    .entry(shard)
                    .or_default()
                    .push((city.clone(), epoch)),
                None => unroutable.push(city.clone()),
            }
        }
        let mut out = Vec::new();
        let map_changes = self.map_changes;
        for (shard, mut cities) in per_shard {
            let st = self.shards.entry(shard.clone()).or_default();
            if st.busy || st.not_before.is_some_and(|t| t > now) {
                continue;
            }
            // Oldest first, so a full batch serves the longest waiters.
            cities.sort_by_key(|(c, _)| self.cities[c].commands.front().map(|q| q.arrived));
            let waiting: usize = cities
                .iter()
                .map(|(c, _)| self.cities[c].commands.len())
                .sum();
            let oldest = cities
                .first()
                .and_then(|(c, _)| self.cities[c].commands.front())
                .map(|q| q.arrived);
            let window_over =
                oldest.is_some_and(|t| now.duration_since(t) >= self.config.batch_window);
            if waiting < self.config.batch_max && !window_over {
                continue;
            }
            let mut room = if st.isolate_left > 0 {
                1
            } else {
                self.config.batch_max
            };
            let mut batch = Vec::new();
            let mut read_at = Vec::new();
            for (city, epoch) in cities {
                if room == 0 {
                    break;
                }
                let Some(q) = self.cities.get_mut(&city) else {
                    continue;
                };
                let n = q.commands.len().min(room);
                room -= n;
                q.in_flight = n;
                q.shard = Some(shard.clone());
                q.sent_at_change = map_changes;
                let commands = q
                    .commands
                    .iter()
                    .take(n)
                    .map(|x| x.command.clone())
                    .collect();
                read_at.extend(
                    q.commands
                        .iter()
                        .take(n)
                        .map(|x| (x.command.id, x.partition, x.offset)),
                );
                batch.push((city, epoch, commands));
            }
            st.busy = true;
            out.push(Dispatch {
                shard,
                cities: batch,
                read_at,
            });
        }
        (out, unroutable)
    }

    /// When the next batch could become due without new input (a held city
    /// or a failed shard's retry, or a batch window ending).
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        for q in self.cities.values() {
            if q.in_flight > 0 {
                continue;
            }
            if let Some(front) = q.commands.front() {
                consider(front.arrived + self.config.batch_window);
                if let Some(t) = q.not_before {
                    consider(t);
                }
            }
        }
        for st in self.shards.values() {
            if let Some(t) = st.not_before {
                consider(t);
            }
        }
        wake
    }

    /// The apply of `shard` finished (whatever the result for each city).
    pub fn shard_done(&mut self, shard: &str, failure: Option<Failure>, now: Instant) {
        let st = self.shards.entry(shard.to_string()).or_default();
        st.busy = false;
        match failure {
            None => {
                st.failure_waits = None;
                st.not_before = None;
                st.suspect_failures = 0;
                st.isolate_left = st.isolate_left.saturating_sub(1);
            }
            Some(kind) => {
                let wait = next_wait(
                    &mut st.failure_waits,
                    self.config.shard_retry,
                    self.config.retry_max,
                );
                st.not_before = Some(now + wait);
                if kind == Failure::Suspect {
                    st.suspect_failures += 1;
                    if st.suspect_failures >= 2 && st.isolate_left == 0 {
                        st.isolate_left = 20;
                    }
                }
            }
        }
    }

    /// Whether `shard` sends one command at a time (looking for a command
    /// that makes every batch fail).
    pub fn isolating(&self, shard: &str) -> bool {
        self.shards.get(shard).is_some_and(|s| s.isolate_left > 0)
    }

    /// The first `n` commands of `city` are finished: they leave the queue.
    pub fn finish(&mut self, city: &str, n: usize) -> Vec<Queued> {
        let Some(q) = self.cities.get_mut(city) else {
            return Vec::new();
        };
        let n = n.min(q.commands.len());
        let done: Vec<Queued> = q.commands.drain(..n).collect();
        q.in_flight = 0;
        q.hold_waits = None;
        q.not_before = None;
        self.len -= done.len();
        if q.commands.is_empty() {
            self.cities.remove(city);
        }
        done
    }

    /// `city`'s batch was not applied and goes again, at once (`delay`
    /// false: a reroute after the map was reloaded) or after the hold
    /// backoff (a frozen city, or a reroute that did not settle). At once
    /// too when the shard map changed while the batch was in flight: the
    /// change may be the flip or abort the hold was waiting for.
    pub fn retry(&mut self, city: &str, delay: bool, now: Instant) {
        if let Some(q) = self.cities.get_mut(city) {
            q.in_flight = 0;
            if delay && q.sent_at_change == self.map_changes {
                let wait = next_wait(
                    &mut q.hold_waits,
                    self.config.hold_retry,
                    self.config.retry_max,
                );
                q.not_before = Some(now + wait);
            }
        }
    }

    /// The shard map changed: every city waiting out a hold or reroute
    /// backoff is due again now, since the change is most likely the end of
    /// the cutover that held it (the flip, or an abort that unfroze it).
    /// Its backoff keeps counting, so a city still frozen (the change was
    /// about another city) waits longer next time, not shorter. A city in
    /// flight, and a failed shard's wait, are left alone: neither is about
    /// the map; a city in flight that comes back held goes again at once
    /// (see `retry`). Returns how many cities were woken.
    pub fn wake_held(&mut self, now: Instant) -> usize {
        self.map_changes += 1;
        let mut woken = 0;
        for q in self.cities.values_mut() {
            if q.in_flight == 0 && q.not_before.is_some_and(|t| t > now) {
                q.not_before = None;
                woken += 1;
            }
        }
        woken
    }

    /// One more strike for the command at the front of `city` (it failed
    /// alone); returns the count.
    pub fn strike(&mut self, city: &str) -> u32 {
        let Some(q) = self.cities.get_mut(city) else {
            return 0;
        };
        q.in_flight = 0;
        match q.commands.front_mut() {
            Some(front) => {
                front.strikes += 1;
                front.strikes
            }
            None => 0,
        }
    }

    /// Commands waiting on a held city or a failed shard, and the partitions
    /// they were read from.
    pub fn blocked(&self, now: Instant) -> (usize, BTreeSet<i32>) {
        let mut n = 0;
        let mut partitions = BTreeSet::new();
        for q in self.cities.values() {
            if self.city_blocked(q, now) {
                n += q.commands.len();
                partitions.extend(q.commands.iter().map(|c| c.partition));
            }
        }
        (n, partitions)
    }

    /// Forgets the commands of `partitions` that are not in flight (the
    /// partitions were revoked: their next owner reads them again).
    pub fn drop_partitions(&mut self, partitions: &BTreeSet<i32>) {
        let mut removed = 0;
        for q in self.cities.values_mut() {
            let keep = q.in_flight;
            let before = q.commands.len();
            let mut i = 0;
            q.commands.retain(|c| {
                i += 1;
                i <= keep || !partitions.contains(&c.partition)
            });
            removed += before - q.commands.len();
        }
        self.cities.retain(|_, q| !q.commands.is_empty());
        self.len -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CommandKind, Id};

    fn config() -> QueueConfig {
        QueueConfig {
            batch_max: 3,
            batch_window: Duration::from_millis(20),
            hold_retry: Duration::from_millis(100),
            shard_retry: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
        }
    }

    fn queued(city: &str, id: i64, partition: i32, at: Instant) -> Queued {
        Queued {
            command: Command {
                id: Id(id),
                city: city.into(),
                created_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                epoch: 1,
                request_id: None,
                kind: CommandKind::DeleteUser { user_id: Id(1) },
            },
            partition,
            offset: id,
            arrived: at,
            strikes: 0,
        }
    }

    fn route(city: &str) -> Option<(String, i64)> {
        match city {
            "a" | "b" => Some(("s1".into(), 1)),
            "c" => Some(("s2".into(), 4)),
            _ => None,
        }
    }

    fn ids(d: &Dispatch) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<_> = d
            .cities
            .iter()
            .map(|(c, _, cmds)| (c.clone(), cmds.iter().map(|c| c.id.0).collect()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_shard_batch_waits_for_the_window_or_a_full_batch() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        q.push(queued("a", 1, 0, t0));
        q.push(queued("c", 2, 1, t0));
        assert!(
            q.due(t0, route).0.is_empty(),
            "window not over, batch not full"
        );
        q.push(queued("b", 3, 0, t0));
        q.push(queued("a", 4, 0, t0));
        let (d, _) = q.due(t0, route);
        assert_eq!(d.len(), 1, "s1 has a full batch");
        assert_eq!(
            ids(&d[0]),
            vec![("a".into(), vec![1, 4]), ("b".into(), vec![3])]
        );
        let (d, _) = q.due(t0 + Duration::from_millis(20), route);
        assert_eq!(d.len(), 1, "s2 after the window; s1 busy");
        assert_eq!(d[0].shard, "s2");
        assert_eq!(d[0].cities[0].1, 4, "the map's epoch");
    }

    #[test]
    fn a_held_city_keeps_its_order_while_others_go_on() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(50);
        let mut q = Queue::new(config());
        q.push(queued("a", 1, 0, t0));
        q.push(queued("b", 2, 0, t0));
        let (d, _) = q.due(later, route);
        assert_eq!(d.len(), 1);
        // The fence held a; b was applied.
        q.retry("a", true, later);
        assert_eq!(q.finish("b", 1).len(), 1);
        q.shard_done("s1", None, later);
        q.push(queued("a", 3, 0, later));
        q.push(queued("b", 4, 0, later));
        let (d, _) = q.due(later + Duration::from_millis(30), route);
        assert_eq!(ids(&d[0]), vec![("b".into(), vec![4])], "a is held");
        assert_eq!(
            q.blocked(later + Duration::from_millis(30)),
            (2, BTreeSet::from([0]))
        );
        q.finish("b", 1);
        q.shard_done("s1", None, later);
        let (d, _) = q.due(later + Duration::from_millis(100), route);
        assert_eq!(
            ids(&d[0]),
            vec![("a".into(), vec![1, 3])],
            "in order, together"
        );
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_failed_shard_backs_off_and_blocks_only_its_cities() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        q.push(queued("a", 1, 0, t0));
        q.push(queued("c", 2, 1, t0));
        let late = t0 + Duration::from_millis(25);
        let (d, _) = q.due(late, route);
        assert_eq!(d.len(), 2);
        q.retry("a", false, late);
        q.shard_done("s1", Some(Failure::Transient), late);
        q.finish("c", 1);
        q.shard_done("s2", None, late);
        assert_eq!(q.blocked(late), (1, BTreeSet::from([0])));
        assert!(q.due(late + Duration::from_millis(50), route).0.is_empty());
        assert_eq!(q.next_wake(late), Some(late + Duration::from_millis(100)));
        assert_eq!(q.due(late + Duration::from_millis(100), route).0.len(), 1);
    }

    /// Within a microsecond (backon doubles in `f32`).
    fn near(a: Option<Instant>, b: Instant) -> bool {
        a.is_some_and(|a| a.max(b) - a.min(b) < Duration::from_micros(1))
    }

    #[test]
    fn a_shard_waits_double_up_to_the_cap_and_start_again_after_a_success() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        let mut now = t0;
        for want in [100, 200, 400, 800, 1600, 2000, 2000] {
            q.shard_done("s1", Some(Failure::Transient), now);
            let wake = q.shards["s1"].not_before;
            assert!(near(wake, now + Duration::from_millis(want)), "{want} ms");
            now += Duration::from_secs(3);
        }
        q.shard_done("s1", None, now);
        q.shard_done("s1", Some(Failure::Transient), now);
        assert_eq!(
            q.shards["s1"].not_before,
            Some(now + Duration::from_millis(100))
        );
    }

    #[test]
    fn a_city_holds_double_and_start_again_once_it_finishes_commands() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        q.push(queued("a", 1, 0, t0));
        q.push(queued("a", 2, 0, t0));
        for want in [100, 200, 400] {
            q.retry("a", true, t0);
            assert!(near(
                q.cities["a"].not_before,
                t0 + Duration::from_millis(want)
            ));
        }
        q.retry("a", false, t0);
        assert!(
            near(q.cities["a"].not_before, t0 + Duration::from_millis(400)),
            "a retry without delay keeps the hold"
        );
        q.finish("a", 1);
        q.retry("a", true, t0);
        assert_eq!(
            q.cities["a"].not_before,
            Some(t0 + Duration::from_millis(100))
        );
    }

    #[test]
    fn a_map_change_wakes_held_and_rerouted_cities_but_not_failed_shards() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(25);
        let mut q = Queue::new(config());
        for (city, id) in [("a", 1), ("b", 2), ("c", 3)] {
            q.push(queued(city, id, 0, t0));
        }
        let (d, _) = q.due(later, route);
        assert_eq!(d.len(), 2);
        // a held by its fence, b re-routed without the map changing (both
        // back off), c's shard failed.
        q.retry("a", true, later);
        q.retry("a", true, later);
        q.retry("b", true, later);
        q.shard_done("s1", None, later);
        q.retry("c", false, later);
        q.shard_done("s2", Some(Failure::Transient), later);
        assert!(q.due(later, route).0.is_empty(), "all wait");

        assert_eq!(q.wake_held(later), 2);
        let (d, _) = q.due(later, route);
        assert_eq!(d.len(), 1, "s2 still backs off: {d:?}");
        assert_eq!(
            ids(&d[0]),
            vec![("a".into(), vec![1]), ("b".into(), vec![2])]
        );
        assert_eq!(q.wake_held(later), 0, "in flight: nothing to wake");

        // The map changed while a was in flight: held again, it goes again
        // at once, as the change may be the flip it waited for.
        q.retry("a", true, later);
        q.retry("b", true, later);
        q.shard_done("s1", None, later);
        assert_eq!(q.cities["a"].not_before, None);
        let (d, _) = q.due(later, route);
        assert_eq!(d.len(), 1);

        // Still frozen with no change since: the backoff goes on where it
        // was (a had waited 100 ms, then 200 ms: next 400 ms).
        q.retry("a", true, later);
        assert!(near(
            q.cities["a"].not_before,
            later + Duration::from_millis(400)
        ));
    }

    #[test]
    fn repeated_suspect_failures_isolate_single_commands() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        for i in 1..=3 {
            q.push(queued("a", i, 0, t0));
        }
        let mut now = t0;
        for _ in 0..2 {
            now += Duration::from_secs(3);
            let (d, _) = q.due(now, route);
            assert_eq!(d[0].cities[0].2.len(), 3);
            q.retry("a", false, now);
            q.shard_done("s1", Some(Failure::Suspect), now);
        }
        assert!(q.isolating("s1"));
        now += Duration::from_secs(3);
        let (d, _) = q.due(now, route);
        assert_eq!(ids(&d[0]), vec![("a".into(), vec![1])]);
        assert_eq!(q.strike("a"), 1);
    }

    #[test]
    fn unroutable_cities_are_handed_back_and_revoked_partitions_dropped() {
        let t0 = Instant::now();
        let mut q = Queue::new(config());
        q.push(queued("zz", 1, 0, t0));
        q.push(queued("a", 2, 2, t0));
        let (_, unroutable) = q.due(t0, route);
        assert_eq!(unroutable, vec!["zz".to_string()]);
        q.drop_partitions(&BTreeSet::from([2]));
        assert_eq!(q.len(), 1);
    }
}
