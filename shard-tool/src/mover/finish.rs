//! What ends a job: `cleanup` once the city is on the target, `cancel`
//! while it is on the source. Both drop every replication object of the
//! job on both shards first (subscriptions, their slots and tablesync
//! slots, publications), and only then delete the city's rows from the
//! shard that does not own it, in batches: a subscription still alive
//! would carry the deletes to the owner.

use crate::error::{Error, Result};

use super::job::{self, Side};
use super::replication;
use super::{Mover, crash_point, names};

/// Rows deleted per statement: short transactions, no long lock, and the
/// replicas keep up.
const DELETE_BATCH: i64 = 5000;

/// `cleanup JOB`: the city is on the target; the source gives it up.
pub async fn cleanup(m: &mut Mover) -> Result<()> {
    match m.job.phase.as_str() {
        job::CUT_OVER | job::CLEANING_UP if !m.job.finished => {}
        _ => {
            return Err(Error::Refused(format!(
                "job {} is {}: cleanup follows a cutover (phase `cut-over`){}",
                m.job.id,
                m.job.phase,
                if m.job.phase == job::READY || m.job.phase == job::COPYING {
                    "; the city is on the source: `cancel` undoes the move"
                } else {
                    ""
                }
            )));
        }
    }
    m.phase(job::CLEANING_UP).await?;
    teardown(m, Side::Target).await?;
    m.phase(job::DONE).await?;
    m.report.step(
        m.job.id,
        job::DONE,
        &format!(
            "{} moved to {}; {} holds nothing of it",
            m.job.city, m.target.name, m.source.name
        ),
    )?;
    Ok(())
}

/// `cancel JOB`: the city is on the source; the target gives up its copy.
pub async fn cancel(m: &mut Mover) -> Result<()> {
    let owner = m.job.progress.owner.unwrap_or(Side::Source);
    match m.job.phase.as_str() {
        job::COPYING | job::READY | job::CANCELLING if !m.job.finished && owner == Side::Source => {
        }
        _ => {
            return Err(Error::Refused(format!(
                "job {} is {}: cancel undoes a move whose city is on the source (phases \
                 `copying`, `ready`){}",
                m.job.id,
                m.job.phase,
                match m.job.phase.as_str() {
                    job::CUT_OVER => "; `rollback` brings the city back first",
                    job::FREEZING | job::FLIPPING => "; `resume` finishes the switch first",
                    _ => "",
                }
            )));
        }
    }
    m.phase(job::CANCELLING).await?;
    teardown(m, Side::Source).await?;
    m.phase(job::CANCELLED).await?;
    m.report.step(
        m.job.id,
        job::CANCELLED,
        &format!(
            "move of {} cancelled; it stays on {}, {} holds nothing of it",
            m.job.city, m.source.name, m.target.name
        ),
    )?;
    Ok(())
}

/// Drops the job's replication on both shards, then deletes the city
/// from the side that does not own it.
async fn teardown(m: &mut Mover, owner: Side) -> Result<()> {
    let id = m.job.id;
    let (s, t) = (m.source.clone(), m.target.clone());
    replication::drop_subscription(&t, &s, id).await?;
    replication::drop_subscription(&s, &t, id).await?;
    replication::drop_publication(&s, id).await?;
    replication::drop_publication(&t, id).await?;
    crash_point("replication-dropped");
    let (keeper, leaver) = (m.shard(owner).clone(), m.shard(owner.other()).clone());
    let tables = crate::tables::city_keyed_tables(&leaver.pool)
        .await
        .map_err(|e| Error::db(&leaver.what, e))?;
    let mut deleted = 0i64;
    for table in &tables {
        loop {
            let n = sqlx::query(&format!(
                "DELETE FROM {t} WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM {t} WHERE city = $1 LIMIT {DELETE_BATCH}))",
                t = table.sql_name
            ))
            .bind(&m.job.city)
            .execute(&leaver.pool)
            .await
            .map_err(|e| Error::db(&leaver.what, e))?
            .rows_affected();
            deleted += n as i64;
            if n == 0 {
                break;
            }
        }
    }
    crash_point("rows-deleted");
    // The target never owned the city after a cancel: its `moving` fence
    // row goes. A source that gave the city up keeps its `gone` row.
    sqlx::query("DELETE FROM city_fence WHERE city = $1 AND state = 'moving'")
        .bind(&m.job.city)
        .execute(&leaver.pool)
        .await
        .map_err(|e| Error::db(&leaver.what, e))?;
    sqlx::query("DELETE FROM move_marks WHERE city = $1 AND job = $2")
        .bind(&m.job.city)
        .bind(id)
        .execute(&keeper.pool)
        .await
        .map_err(|e| Error::db(&keeper.what, e))?;
    m.report.step(
        id,
        &m.job.phase.clone(),
        &format!(
            "dropped {} and its slots on both shards; deleted {deleted} rows of {} from {}",
            names::publication(id),
            m.job.city,
            leaver.name
        ),
    )?;
    Ok(())
}
