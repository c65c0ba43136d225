//! Cutover and rollback: one switch of the city's owner, in either
//! direction, from the side that owns it (`from`) to the other (`to`),
//! while the city's changes flow `from` → `to`.
//!
//! 1. Preflight, refused with zero freeze time: the live direction caught
//!    up, same schema on both sides, replicable tables, REPLICATION, room
//!    for the reverse direction, which is then made (publication on `to`,
//!    slot on `to`, a disabled subscription on `from`).
//! 2. Freeze: `from`'s fence becomes `frozen` until a deadline, and a mark
//!    is written in the same transaction. Writers hold the city's commands
//!    in the log; apply treats the fence as active again past the
//!    deadline.
//! 3. Wait for the mark on `to`: everything `from` committed is there.
//! 4. Flip: `from`'s fence `gone` at epoch + 1, refused past the deadline
//!    (then: abort, epoch unchanged, fence active). `to`'s WAL position
//!    is noted, `to`'s fence becomes `active` at epoch + 1, then the
//!    catalog's shard map (whose NOTIFY wakes the writers).
//! 5. The forward subscription and its slot are dropped, the reverse slot
//!    is advanced to the noted position (Postgres 15 has no `origin =
//!    none`: without this the copied changes would bounce back), and the
//!    reverse subscription is enabled. Never both directions at once.
//!
//! Every step is recorded in the job row before it is taken and can be
//! taken again, so `resume` finishes a switch a crash interrupted: forward
//! once `from`'s fence is gone, else back to `from`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

use super::copy::wait_mark;
use super::job::{self, Pause, Side, Switch};
use super::preflight::{self, Problems};
use super::replication::{self, Start};
use super::{Mover, crash_point, names};

/// How a switch runs.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// The longest freeze: past it the switch aborts and the city takes
    /// writes where it was.
    pub max_pause: Duration,
    /// The live direction must be at most this many bytes behind.
    pub max_lag: i64,
    /// The receiving side's replicas must be at most this many bytes
    /// behind.
    pub max_replica_lag: i64,
    /// Longest wait for the reverse slot's creation.
    pub slot_wait: Duration,
}

/// How long the preflight's mark may take to reach the other shard.
const DELIVERY: Duration = Duration::from_secs(15);

/// The name of a switch from `from`, for messages.
fn what(from: Side) -> &'static str {
    match from {
        Side::Source => "cutover",
        Side::Target => "rollback",
    }
}

/// The stable phase with the city on `owner`.
fn settled(owner: Side) -> &'static str {
    match owner {
        Side::Source => job::READY,
        Side::Target => job::CUT_OVER,
    }
}

/// `cutover` (`from` = source) or `rollback` (`from` = target).
pub async fn run(m: &mut Mover, from: Side, opts: &SwitchOptions) -> Result<()> {
    let step = what(from);
    let owner = m.job.progress.owner.unwrap_or(Side::Source);
    if m.job.finished || m.job.phase != settled(from) || owner != from {
        return Err(Error::Refused(format!(
            "job {} is {}{}: {step} starts from `{}`{}",
            m.job.id,
            m.job.phase,
            if m.job.finished { " (finished)" } else { "" },
            settled(from),
            match m.job.phase.as_str() {
                job::COPYING => "; `shard-tool resume` waits for the copy",
                job::FREEZING | job::FLIPPING => "; `shard-tool resume` finishes the switch",
                _ => "",
            }
        )));
    }
    let epoch = prepare(m, from, opts).await?;
    freeze_and_flip(m, from, epoch, opts.max_pause).await
}

/// Step 1: the preflight, then the reverse direction, made disabled.
/// Returns the epoch the switch starts at.
async fn prepare(m: &mut Mover, from: Side, opts: &SwitchOptions) -> Result<i64> {
    let id = m.job.id;
    let city = m.job.city.clone();
    let to = from.other();
    let (f, t) = (m.shard(from).clone(), m.shard(to).clone());
    let mut found = Problems::default();

    // The fences and the catalog agree that `from` owns the city.
    let fence: Option<(i64, String)> =
        sqlx::query_as("SELECT epoch, state FROM city_fence WHERE city = $1")
            .bind(&city)
            .fetch_optional(&f.pool)
            .await
            .map_err(|e| Error::db(&f.what, e))?;
    let mapped: Option<(String, i64)> =
        sqlx::query_as("SELECT shard, epoch FROM shard_map WHERE city = $1")
            .bind(&city)
            .fetch_optional(&m.catalog)
            .await
            .map_err(|e| Error::db(format!("the catalog of {}", m.job.region), e))?;
    let epoch =
        match (&fence, &mapped) {
            (Some((e, s)), Some((shard, me))) if s == "active" && shard == &f.name && me == e => *e,
            _ => {
                found.add(format!(
                "{city}'s fence on {} ({}) and the catalog ({}) do not agree that it is there and \
                 active; `shard-tool doctor {id}` looks into it",
                f.name,
                fence.as_ref().map_or("none".into(), |(e, s)| format!("{s} at epoch {e}")),
                mapped
                    .as_ref()
                    .map_or("none".into(), |(s, e)| format!("{s} at epoch {e}")),
            ));
                0
            }
        };

    // The live direction is caught up.
    let live = replication::subscription(&t, id).await?;
    match live {
        None => found.add(format!(
            "the subscription {} on {} is missing",
            names::subscription(id),
            t.name
        )),
        Some(s) if !s.enabled => found.add(format!(
            "the subscription {} on {} is disabled (an error stopped it, or a copy is throttled)",
            names::subscription(id),
            t.name
        )),
        Some(_) => {}
    }
    match preflight::slot_lag(&f, &names::slot(id, &t.name)).await? {
        None => found.add(format!(
            "the replication slot {} on {} is missing",
            names::slot(id, &t.name),
            f.name
        )),
        Some(lag) if lag > opts.max_lag => found.add(format!(
            "{} is {lag} bytes behind {} (the bound is {}): not caught up yet",
            t.name, f.name, opts.max_lag
        )),
        Some(_) => {}
    }
    let replica_lag = preflight::replica_lag(&t).await?;
    if replica_lag > opts.max_replica_lag {
        found.add(format!(
            "a replica of {} is {replica_lag} bytes behind (the bound is {})",
            t.name, opts.max_replica_lag
        ));
    }

    // The schema: same on both sides, every city-keyed table published.
    let moved = crate::tables::city_keyed_tables(&f.pool)
        .await
        .map_err(|e| Error::db(&f.what, e))?;
    let names_of: Vec<String> = moved.iter().map(|t| t.name.clone()).collect();
    preflight::same_schema(&f, &t, &names_of, &mut found).await?;
    preflight::replicable(&f, &moved, &mut found).await?;
    preflight::replicable(&t, &moved, &mut found).await?;
    let published = replication::published_tables(&f.pool, id)
        .await
        .map_err(|e| Error::db(&f.what, e))?;
    for name in names_of.iter().filter(|n| !published.contains(n)) {
        found.add(format!(
            "table {name} is keyed by city but not in publication {} on {}: it was added after \
             the move started; cancel the move and start it again",
            names::publication(id),
            f.name
        ));
    }

    // Room for the reverse direction, and the right to stream it.
    let role = m
        .job
        .progress
        .replication_role
        .clone()
        .unwrap_or_else(|| names::connecting_user(&t.url));
    preflight::replication_role(&t, &role, &mut found).await?;
    let reverse_slot = names::slot(id, &f.name);
    if preflight::slot_lag(&t, &reverse_slot).await?.is_none() {
        preflight::room_to_send(&t, 1, &mut found).await?;
    }
    if replication::subscription(&f, id).await?.is_none() {
        preflight::room_to_receive(&f, 1, &mut found).await?;
    }
    found.verdict(what(from))?;

    // The live direction delivers: a mark written now must reach `to`
    // within the bound, or nothing is frozen. (A subscription enabled a
    // moment ago may not have its worker yet: Postgres starts apply
    // workers at most once per wal_retrieve_retry_interval.)
    let seq = super::copy::mark(&f.pool, &city, id, "preflight")
        .await
        .map_err(|e| Error::db(&f.what, e))?;
    let until = Instant::now() + DELIVERY;
    if !wait_mark(&t, &city, id, seq, Some(until)).await? {
        let mut late = Problems::default();
        late.add(format!(
            "{} did not receive a mark from {} within {}s: the live direction is not caught up \
             or its worker is not running (`shard-tool status {id}`)",
            t.name,
            f.name,
            DELIVERY.as_secs()
        ));
        late.verdict(what(from))?;
    }

    // The reverse direction, disabled: made now, so a cutover never waits
    // for a slot while the city is frozen.
    replication::ensure_publication(&t, id, &city, &moved).await?;
    replication::ensure_slot(&t, &reverse_slot, opts.slot_wait).await?;
    replication::ensure_subscription(&f, &t, id, &reverse_slot, Some(&role), Start::Disabled)
        .await?;
    crash_point("reverse-prepared");
    Ok(epoch)
}

/// Steps 2 to 5.
async fn freeze_and_flip(m: &mut Mover, from: Side, epoch: i64, max_pause: Duration) -> Result<()> {
    let id = m.job.id;
    let city = m.job.city.clone();
    let f = m.shard(from).clone();
    let pause_ms = i64::try_from(max_pause.as_millis()).unwrap_or(i64::MAX);
    let (deadline, seq): (DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT clock_timestamp() + $1 * interval '1 millisecond',
                (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
    )
    .bind(pause_ms as f64)
    .fetch_one(&f.pool)
    .await
    .map_err(|e| Error::db(&f.what, e))?;
    m.job.progress.switch = Some(Switch {
        from,
        epoch,
        deadline,
        mark: seq,
        applied_upto: None,
    });
    m.phase(job::FREEZING).await?;

    // The freeze and its mark, in one transaction.
    let mut tx = f.pool.begin().await.map_err(|e| Error::db(&f.what, e))?;
    let frozen: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE city_fence SET state = 'frozen', frozen_until = $3, updated_at = clock_timestamp()
          WHERE city = $1 AND epoch = $2 AND state = 'active' AND clock_timestamp() < $3
         RETURNING updated_at, clock_timestamp()",
    )
    .bind(&city)
    .bind(epoch)
    .bind(deadline)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| Error::db(&f.what, e))?;
    let Some((frozen_at, db_now)) = frozen else {
        drop(tx);
        m.job.progress.switch = None;
        m.phase(settled(from)).await?;
        return Err(Error::Refused(format!(
            "{city}'s fence on {} changed before the freeze (no longer active at epoch {epoch}); \
             nothing was frozen",
            f.name
        )));
    };
    sqlx::query(
        "INSERT INTO move_marks (city, job, seq, purpose) VALUES ($1, $2, $3, 'freeze')
         ON CONFLICT DO NOTHING",
    )
    .bind(&city)
    .bind(id)
    .bind(seq)
    .execute(&mut *tx)
    .await
    .map_err(|e| Error::db(&f.what, e))?;
    tx.commit().await.map_err(|e| Error::db(&f.what, e))?;
    crash_point("frozen");
    let left = (deadline - db_now).to_std().unwrap_or_default();
    let until = Instant::now() + left;
    flip(m, from, frozen_at, until).await
}

/// Steps 3 and 4 from a freeze in place (also `resume`'s way in), then 5.
async fn flip(m: &mut Mover, from: Side, frozen_at: DateTime<Utc>, until: Instant) -> Result<()> {
    let id = m.job.id;
    let city = m.job.city.clone();
    let (f, t) = (m.shard(from).clone(), m.shard(from.other()).clone());
    let Some(sw) = m.job.progress.switch.clone() else {
        return Err(Error::db(
            format!("job {id}"),
            anyhow::anyhow!("phase {} without a switch in its progress", m.job.phase),
        ));
    };
    let arrived = wait_mark(&t, &city, id, sw.mark, Some(until)).await?;
    let flipped = if arrived {
        flip_fence(&f, &city, sw.epoch)
            .await
            .map_err(|e| Error::db(&f.what, e))?
    } else {
        None
    };
    let Some(flipped_at) = flipped else {
        return abort(m, from, frozen_at, arrived).await;
    };
    let ms = (flipped_at - frozen_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    m.job.progress.pauses.push(Pause {
        what: what(from).into(),
        ms,
        outcome: "flipped".into(),
    });
    crash_point("flipped-fence");
    m.phase(job::FLIPPING).await?;
    m.report.step(
        id,
        job::FLIPPING,
        &format!("{city} frozen {ms:.1} ms, flipped on {}", f.name),
    )?;
    finish(m).await
}

/// The flip of the old owner's fence: `gone` at epoch + 1, unless the
/// deadline has passed. The row is locked first (`FOR UPDATE` waits for
/// every apply transaction holding it `FOR SHARE`), and only then is the
/// deadline compared with the clock: an UPDATE that waited for the lock
/// would not evaluate its WHERE again, and could flip a fence apply had
/// meanwhile treated as active past its deadline (and written under).
async fn flip_fence(
    f: &super::Shard,
    city: &str,
    epoch: i64,
) -> std::result::Result<Option<DateTime<Utc>>, sqlx::Error> {
    let mut tx = f.pool.begin().await?;
    sqlx::query("SELECT 1 FROM city_fence WHERE city = $1 FOR UPDATE")
        .bind(city)
        .execute(&mut *tx)
        .await?;
    let flipped = sqlx::query_scalar(
        "UPDATE city_fence SET state = 'gone', epoch = epoch + 1, frozen_until = NULL,
                updated_at = clock_timestamp()
          WHERE city = $1 AND epoch = $2 AND state = 'frozen'
            AND frozen_until > clock_timestamp()
         RETURNING updated_at",
    )
    .bind(city)
    .bind(epoch)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(flipped)
}

/// The deadline passed (or the mark never came): the fence goes back to
/// `active` at its epoch, the catalog's row is touched so writers wake.
async fn abort(m: &mut Mover, from: Side, frozen_at: DateTime<Utc>, arrived: bool) -> Result<()> {
    let city = m.job.city.clone();
    let f = m.shard(from).clone();
    let Some(sw) = m.job.progress.switch.clone() else {
        return Ok(());
    };
    let reopened: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE city_fence SET state = 'active', frozen_until = NULL, updated_at = clock_timestamp()
          WHERE city = $1 AND epoch = $2 AND state = 'frozen'
         RETURNING updated_at",
    )
    .bind(&city)
    .bind(sw.epoch)
    .fetch_optional(&f.pool)
    .await
    .map_err(|e| Error::db(&f.what, e))?;
    touch_map(m).await?;
    let ms = reopened.map_or(0.0, |r| {
        (r - frozen_at).num_microseconds().unwrap_or(0) as f64 / 1000.0
    });
    m.job.progress.pauses.push(Pause {
        what: what(from).into(),
        ms,
        outcome: "aborted".into(),
    });
    m.job.progress.switch = None;
    m.phase(settled(from)).await?;
    let why = if arrived {
        "the deadline passed before the flip"
    } else {
        "the other shard did not have the freeze's mark by the deadline"
    };
    let text = format!(
        "{} of {city} aborted: {why}; {city} stayed on {} at epoch {} and takes writes again",
        what(from),
        f.name,
        sw.epoch
    );
    m.job.record_error(&m.catalog, &text).await;
    Err(Error::Aborted(text))
}

/// Touches the city's shard-map row: its trigger bumps the map's version
/// and NOTIFYs, and every writer holding the city's commands tries again
/// at once.
async fn touch_map(m: &Mover) -> Result<()> {
    sqlx::query("UPDATE shard_map SET updated_at = now() WHERE city = $1")
        .bind(&m.job.city)
        .execute(&m.catalog)
        .await
        .map_err(|e| Error::db(format!("the catalog of {}", m.job.region), e))?;
    Ok(())
}

/// Step 5 and the end of 4, from `flipping`: each part idempotent.
pub async fn finish(m: &mut Mover) -> Result<()> {
    let id = m.job.id;
    let city = m.job.city.clone();
    let Some(sw) = m.job.progress.switch.clone() else {
        return Err(Error::db(
            format!("job {id}"),
            anyhow::anyhow!("phase flipping without a switch in its progress"),
        ));
    };
    let (from, to) = (sw.from, sw.from.other());
    let (f, t) = (m.shard(from).clone(), m.shard(to).clone());
    let next = sw.epoch + 1;
    // Where `to` stands now: every change the live direction applied is
    // before it (the mark came last), every write of the new owner after.
    // The insert position, not the write position: a subscription's apply
    // worker commits asynchronously (its synchronous_commit is off), so the
    // mark's commit record can be visible and not yet written out.
    let upto = match sw.applied_upto.clone() {
        Some(l) => l,
        None => {
            let l: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
                .fetch_one(&t.pool)
                .await
                .map_err(|e| Error::db(&t.what, e))?;
            if let Some(s) = m.job.progress.switch.as_mut() {
                s.applied_upto = Some(l.clone());
            }
            m.save().await?;
            l
        }
    };
    crash_point("noted-position");
    sqlx::query(
        "INSERT INTO city_fence (city, epoch, state) VALUES ($1, $2, 'active')
         ON CONFLICT (city) DO UPDATE SET epoch = excluded.epoch, state = 'active',
                frozen_until = NULL, updated_at = clock_timestamp()
          WHERE city_fence.epoch < excluded.epoch
             OR (city_fence.epoch = excluded.epoch AND city_fence.state <> 'active')",
    )
    .bind(&city)
    .bind(next)
    .execute(&t.pool)
    .await
    .map_err(|e| Error::db(&t.what, e))?;
    crash_point("target-active");
    sqlx::query(
        "UPDATE shard_map SET shard = $2, epoch = $3, state = 'active', updated_at = now()
          WHERE city = $1 AND epoch < $3",
    )
    .bind(&city)
    .bind(&t.name)
    .bind(next)
    .execute(&m.catalog)
    .await
    .map_err(|e| Error::db(format!("the catalog of {}", m.job.region), e))?;
    m.job.progress.owner = Some(to);
    m.save().await?;
    crash_point("catalog");
    // The city writes on `to` now; turn the replication around.
    replication::drop_subscription(&t, &f, id).await?;
    crash_point("forward-dropped");
    replication::advance_slot(&t, &names::slot(id, &f.name), &upto).await?;
    replication::set_enabled(&f, id, true).await?;
    crash_point("reverse-enabled");
    m.job.progress.switch = None;
    m.phase(settled(to)).await?;
    m.report.step(
        id,
        settled(to),
        &format!(
            "{city} is on {} at epoch {next}; its changes flow back to {} until `shard-tool cleanup {id}`",
            t.name, f.name
        ),
    )?;
    Ok(())
}

/// `resume` of a job in `freezing` or `flipping`: forward when the old
/// owner's fence is gone, else on with the wait while the freeze lasts,
/// else back (abort).
pub async fn resume(m: &mut Mover) -> Result<()> {
    if m.job.phase == job::FLIPPING {
        return finish(m).await;
    }
    let Some(sw) = m.job.progress.switch.clone() else {
        return Err(Error::db(
            format!("job {}", m.job.id),
            anyhow::anyhow!("phase freezing without a switch in its progress"),
        ));
    };
    let f = m.shard(sw.from).clone();
    /// epoch, state, deadline, last change, the shard's clock now.
    type Fence = (
        i64,
        String,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let fence: Option<Fence> = sqlx::query_as(
        "SELECT epoch, state, frozen_until, updated_at, clock_timestamp()
               FROM city_fence WHERE city = $1",
    )
    .bind(&m.job.city)
    .fetch_optional(&f.pool)
    .await
    .map_err(|e| Error::db(&f.what, e))?;
    match fence {
        Some((e, state, _, _, _)) if state == "gone" && e == sw.epoch + 1 => {
            m.phase(job::FLIPPING).await?;
            finish(m).await
        }
        Some((e, state, Some(until), frozen_at, now))
            if state == "frozen" && e == sw.epoch && until > now =>
        {
            let left = (until - now).to_std().unwrap_or_default();
            flip(m, sw.from, frozen_at, Instant::now() + left).await
        }
        // Never frozen (killed before the freeze committed), or the freeze
        // is over (apply already writes again): the switch ends where the
        // city is, which is what resuming it means; said, not an error.
        fence => {
            let frozen_at = match fence {
                Some((_, state, _, at, _)) if state == "frozen" => at,
                _ => Utc::now(),
            };
            match abort(m, sw.from, frozen_at, false).await {
                Err(Error::Aborted(text)) => {
                    let phase = m.job.phase.clone();
                    m.report.step(m.job.id, &phase, &text)?;
                    Ok(())
                }
                other => other,
            }
        }
    }
}
