//! The copy: the objects that start it, the wait until every table is
//! copied and the target has caught up, with honest progress, throttled
//! when the target's replicas fall behind; and the marks that tell when
//! one shard has everything another committed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::report::Figures;
use crate::tables;

use super::job::{self, Side};
use super::replication::{self, Start};
use super::{Mover, Shard, crash_point, names, preflight};

/// How the copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Longest wait for the slot's creation (transactions running on the
    /// source).
    pub slot_wait: Duration,
    /// The copy pauses while a replica of the target is this many bytes
    /// behind, and goes on below half of it.
    pub max_replica_lag: i64,
}

/// The city's rows per moved table on `shard`.
pub async fn city_rows(
    shard: &Shard,
    city: &str,
    tables: &[String],
) -> Result<BTreeMap<String, i64>> {
    let all = tables::city_keyed_tables(&shard.pool)
        .await
        .map_err(|e| Error::db(&shard.what, e))?;
    let mut out = BTreeMap::new();
    for t in all.iter().filter(|t| tables.contains(&t.name)) {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE city = $1",
            t.sql_name
        ))
        .bind(city)
        .fetch_one(&shard.pool)
        .await
        .map_err(|e| Error::db(&shard.what, e))?;
        out.insert(t.name.clone(), n);
    }
    Ok(out)
}

/// Makes the target's fence (`moving`: it owns nothing yet), the
/// publication, the slot and the subscription, each unless it exists,
/// with a crash point after each.
pub async fn start(m: &mut Mover, opts: &CopyOptions) -> Result<()> {
    let id = m.job.id;
    let city = m.job.city.clone();
    let epoch = m.job.progress.epoch.unwrap_or(1);
    let moved = tables::city_keyed_tables(&m.source.pool)
        .await
        .map_err(|e| Error::db(&m.source.what, e))?;
    m.job.progress.tables = moved.iter().map(|t| t.name.clone()).collect();
    // A fence row of the target that says `moving`: apply there refuses
    // (and re-routes) the city, and the relay there sends none of its
    // replicated outbox rows, until the cutover makes it `active`.
    sqlx::query(
        "INSERT INTO city_fence (city, epoch, state) VALUES ($1, $2, 'moving')
         ON CONFLICT (city) DO UPDATE SET state = 'moving', epoch = excluded.epoch,
                frozen_until = NULL, updated_at = now()
          WHERE city_fence.state IN ('gone', 'moving')",
    )
    .bind(&city)
    .bind(epoch)
    .execute(&m.target.pool)
    .await
    .map_err(|e| Error::db(&m.target.what, e))?;
    crash_point("target-fence");
    replication::ensure_publication(&m.source, id, &city, &moved).await?;
    crash_point("publication");
    let slot = names::slot(id, &m.target.name);
    replication::ensure_slot(&m.source, &slot, opts.slot_wait).await?;
    crash_point("slot");
    if m.job.progress.rows_total.is_none() {
        let rows = city_rows(&m.source, &city, &m.job.progress.tables).await?;
        m.job.progress.rows_total = Some(rows.values().sum());
        m.job.progress.rows_copied = Some(0);
    }
    let role = m.job.progress.replication_role.clone();
    replication::ensure_subscription(
        &m.target,
        &m.source,
        id,
        &slot,
        role.as_deref(),
        Start::Copy,
    )
    .await?;
    if m.job.progress.copy_started_at.is_none() {
        m.job.progress.copy_started_at = Some(Utc::now());
    }
    m.job.progress.owner = Some(Side::Source);
    m.save().await?;
    m.report.step(
        id,
        job::COPYING,
        &format!("copying {city} from {} to {}", m.source.name, m.target.name),
    )?;
    crash_point("subscription");
    Ok(())
}

/// One table of the subscription as the target sees it.
#[derive(Debug, sqlx::FromRow)]
struct TableState {
    name: String,
    /// `i` init, `d` copying, `f` copied, `s` synced, `r` ready.
    state: String,
    /// Rows the running COPY has written, when one runs.
    copying: i64,
}

async fn table_states(target: &Shard, job_id: i64) -> Result<Vec<TableState>> {
    sqlx::query_as(
        "SELECT c.relname::text AS name, r.srsubstate::text AS state,
                coalesce((SELECT max(p.tuples_processed) FROM pg_stat_progress_copy p
                           WHERE p.relid = r.srrelid AND p.command = 'COPY FROM'), 0)::int8
                  AS copying
           FROM pg_subscription s
           JOIN pg_subscription_rel r ON r.srsubid = s.oid
           JOIN pg_class c ON c.oid = r.srrelid
          WHERE s.subname = $1
            AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY 1",
    )
    .bind(names::subscription(job_id))
    .fetch_all(&target.pool)
    .await
    .map_err(|e| Error::db(&target.what, e))
}

/// Why a subscription stopped: its error counters (the message itself is
/// in the receiving server's log).
async fn stopped_why(receiver: &Shard, job_id: i64) -> String {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats
          WHERE subname = $1",
    )
    .bind(names::subscription(job_id))
    .fetch_optional(&receiver.pool)
    .await
    .ok()
    .flatten();
    match row {
        Some((apply, sync)) => format!(
            "subscription {} on {} was disabled by an error ({apply} apply and {sync} copy \
             errors; the message is in that server's log); fix its cause, then `ALTER \
             SUBSCRIPTION … ENABLE` and `shard-tool resume {job_id}`, or `shard-tool cancel {job_id}`",
            names::subscription(job_id),
            receiver.name
        ),
        None => format!(
            "subscription {} on {} is disabled",
            names::subscription(job_id),
            receiver.name
        ),
    }
}

/// Waits until every table is copied and the target has caught up, then
/// records `ready`. Shows and saves progress about once a second.
pub async fn wait(m: &mut Mover, opts: &CopyOptions) -> Result<()> {
    let id = m.job.id;
    let totals = city_rows(&m.source, &m.job.city, &m.job.progress.tables).await?;
    let total: i64 = m
        .job
        .progress
        .rows_total
        .unwrap_or_else(|| totals.values().sum());
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    // A copy killed while paused left its subscription disabled on purpose.
    let mut throttled_since: Option<Instant> = m.job.progress.throttled.then(Instant::now);
    let mut last_save = Instant::now();
    loop {
        let sub = replication::subscription(&m.target, id)
            .await?
            .ok_or_else(|| {
                Error::db(
                    &m.target.what,
                    anyhow::anyhow!(
                        "subscription {} is missing: `shard-tool resume {id}` makes it again",
                        names::subscription(id)
                    ),
                )
            })?;
        if !sub.enabled && throttled_since.is_none() {
            let why = stopped_why(&m.target, id).await;
            m.job.record_error(&m.catalog, &why).await;
            m.report.end_progress();
            return Err(Error::db(&m.target.what, anyhow::anyhow!(why)));
        }
        let states = table_states(&m.target, id).await?;
        let ready = states
            .iter()
            .filter(|t| matches!(t.state.as_str(), "r" | "s"))
            .count();
        let copied: i64 = states
            .iter()
            .map(|t| match t.state.as_str() {
                "r" | "s" | "f" => totals.get(&t.name).copied().unwrap_or(0),
                _ => t.copying,
            })
            .sum();
        let now = Instant::now();
        samples.push_back((now, copied));
        while samples.len() > 2 && now.duration_since(samples[0].0) > RATE_WINDOW {
            samples.pop_front();
        }
        let rate = rate(&samples);
        let done = !states.is_empty() && ready == states.len();
        let p = &mut m.job.progress;
        p.rows_copied = Some(copied.min(total));
        p.rows_total = Some(total);
        p.rows_per_second = rate;
        let eta = rate
            .filter(|r| *r > 0.0)
            .map(|r| (total - copied).max(0) as f64 / r);
        m.report.progress(&Figures {
            job: id,
            phase: job::COPYING.to_string(),
            rows_copied: copied.min(total),
            rows_total: total,
            rows_per_second: rate,
            eta_seconds: eta,
            tables_ready: ready,
            tables: states.len(),
            throttled: throttled_since.is_some(),
        })?;
        if done {
            break;
        }
        // Throttle: the copy's WAL must not leave the target's replicas
        // (which serve reads) behind.
        let lag = preflight::replica_lag(&m.target).await?;
        match throttled_since {
            None if lag > opts.max_replica_lag => {
                m.job.progress.throttled = true;
                m.save().await?;
                replication::set_enabled(&m.target, id, false).await?;
                throttled_since = Some(now);
            }
            Some(since) if lag <= opts.max_replica_lag / 2 => {
                replication::set_enabled(&m.target, id, true).await?;
                let p = &mut m.job.progress;
                p.throttled = false;
                p.throttled_seconds =
                    Some(p.throttled_seconds.unwrap_or(0.0) + since.elapsed().as_secs_f64());
                throttled_since = None;
            }
            _ => {}
        }
        if last_save.elapsed() >= SAVE_EVERY {
            m.save().await?;
            last_save = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    if throttled_since.is_some() {
        replication::set_enabled(&m.target, id, true).await?;
        m.job.progress.throttled = false;
    }
    m.report.end_progress();
    m.job.progress.rows_copied = Some(total);
    m.job.progress.copy_finished_at.get_or_insert_with(Utc::now);
    m.save().await?;
    crash_point("copied");
    // Caught up: a mark written on the source now is on the target once
    // everything committed before it is.
    let seq = mark(&m.source.pool, &m.job.city, id, "catch-up")
        .await
        .map_err(|e| Error::db(&m.source.what, e))?;
    let until = Instant::now() + CATCH_UP;
    if !wait_mark(&m.target, &m.job.city, id, seq, Some(until)).await? {
        return Err(Error::db(
            &m.target.what,
            anyhow::anyhow!(
                "every table is copied but the target has not caught up within {}s; `shard-tool \
                 resume {id}` waits again (`shard-tool status {id}` shows the slot's lag)",
                CATCH_UP.as_secs()
            ),
        ));
    }
    m.phase(job::READY).await?;
    m.report.step(
        id,
        job::READY,
        &format!(
            "{} copied and caught up; next: `shard-tool verify {id}`, then `shard-tool cutover {id}`",
            m.job.city
        ),
    )?;
    Ok(())
}

/// The longest wait for the catch-up mark once every table is copied.
const CATCH_UP: Duration = Duration::from_secs(300);

/// Samples of the last this long make the rate.
const RATE_WINDOW: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Rows a second over the samples' span; none before two samples a
/// tenth of a second apart.
fn rate(samples: &VecDeque<(Instant, i64)>) -> Option<f64> {
    let (t0, r0) = samples.front()?;
    let (t1, r1) = samples.back()?;
    let dt = t1.duration_since(*t0).as_secs_f64();
    (dt >= 0.1).then(|| (r1 - r0).max(0) as f64 / dt)
}

/// Writes a mark of `job` for `city` on `owner`; returns its `seq`.
pub async fn mark(owner: &PgPool, city: &str, job: i64, purpose: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO move_marks (city, job, seq, purpose)
         VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000000)::int8, $3)
         RETURNING seq",
    )
    .bind(city)
    .bind(job)
    .bind(purpose)
    .fetch_one(owner)
    .await
}

/// Waits until mark `seq` is on `other`; `false` if `until` passed first
/// (no bound when none).
pub async fn wait_mark(
    other: &Shard,
    city: &str,
    job: i64,
    seq: i64,
    until: Option<Instant>,
) -> Result<bool> {
    loop {
        let there: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM move_marks WHERE city = $1 AND job = $2 AND seq = $3)",
        )
        .bind(city)
        .bind(job)
        .bind(seq)
        .fetch_one(&other.pool)
        .await
        .map_err(|e| Error::db(&other.what, e))?;
        if there {
            return Ok(true);
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(false);
        }
        tokio::time::sleep(MARK_POLL).await;
    }
}

/// How often the other shard is asked for a mark: the freeze lasts until
/// it is seen, so this is part of every cutover's pause.
const MARK_POLL: Duration = Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_window_and_never_guessed() {
        let t0 = Instant::now();
        let mut s = VecDeque::new();
        s.push_back((t0, 0));
        assert_eq!(rate(&s), None);
        s.push_back((t0 + Duration::from_secs(2), 1000));
        assert_eq!(rate(&s), Some(500.0));
    }
}
