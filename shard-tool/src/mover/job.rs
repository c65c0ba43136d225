//! The job row: the one truth about a move, written before each step and
//! read back by `resume`, `status` and `doctor`.
//!
//! Phases, in order (`status` shows them as they are):
//!
//! - `copying`: the publication, slot and subscription exist (or are being
//!   made); the target's tablesync workers copy the city; the city is on
//!   the source.
//! - `ready`: every table copied and the target caught up; the city is on
//!   the source, its changes flow to the target. `verify` and `cutover`
//!   start from here, and a rollback ends here.
//! - `freezing`: a cutover (or rollback) froze the owner's fence until
//!   `switch.deadline` and waits for its mark on the other shard.
//! - `flipping`: the old owner's fence is `gone`: the switch goes forward
//!   whatever happens (resume finishes it).
//! - `cut-over`: the city is on the target, its changes flow back to the
//!   source. `rollback` starts from here.
//! - `cleaning-up`, `cancelling`: removing what the job made.
//! - `done`, `cancelled`: finished (`finished_at` set).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::{Error, Result};

/// Copying the city to the target.
pub const COPYING: &str = "copying";
/// Copied and caught up; the city is on the source.
pub const READY: &str = "ready";
/// Frozen, waiting for the mark.
pub const FREEZING: &str = "freezing";
/// The old owner's fence is gone; finishing the switch.
pub const FLIPPING: &str = "flipping";
/// The city is on the target.
pub const CUT_OVER: &str = "cut-over";
/// Dropping replication and deleting the city from the shard it left.
pub const CLEANING_UP: &str = "cleaning-up";
/// Undoing a move that never cut over.
pub const CANCELLING: &str = "cancelling";
/// Finished: the city is on the target and the source holds nothing of it.
pub const DONE: &str = "done";
/// Finished: the move was undone.
pub const CANCELLED: &str = "cancelled";

/// Which shard owns the city (its fence is `active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The shard the city started on.
    Source,
    /// The shard it moves to.
    Target,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }
}

/// A cutover or rollback in progress: from which side to which, the
/// epoch it started at and the freeze's deadline (the source of truth is
/// the fence; this copy lets `resume` know what it was doing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// The side giving the city up.
    pub from: Side,
    /// The epoch before the switch; the switch ends at `epoch + 1`.
    pub epoch: i64,
    /// The freeze's deadline.
    pub deadline: DateTime<Utc>,
    /// The mark written with the freeze.
    pub mark: i64,
    /// The target's WAL position once the mark was there: the reverse
    /// slot is advanced to it (every change the forward direction applied
    /// is before it, every write of the new owner after it).
    #[serde(default)]
    pub applied_upto: Option<String>,
}

/// One measured freeze, for `status` and the bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// `cutover` or `rollback`.
    pub what: String,
    /// Freeze to flip, milliseconds, by the old owner's clock.
    pub ms: f64,
    /// `flipped` or `aborted`.
    pub outcome: String,
}

/// `reshard_jobs.progress`: what every step needs to resume. Unknown keys
/// (a newer shard-tool's) are kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The city's epoch when the job was made.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// Who owns the city now.
    #[serde(default)]
    pub owner: Option<Side>,
    /// The role the subscriptions connect as (REPLICATION).
    #[serde(default)]
    pub replication_role: Option<String>,
    /// The tables the publication lists.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Rows copied so far (see [`crate::jobs::CopyProgress`]).
    #[serde(default)]
    pub rows_copied: Option<i64>,
    /// Rows to copy in all.
    #[serde(default)]
    pub rows_total: Option<i64>,
    /// Subscription made, copy started.
    #[serde(default)]
    pub copy_started_at: Option<DateTime<Utc>>,
    /// Recent copy rate.
    #[serde(default)]
    pub rows_per_second: Option<f64>,
    /// Every table ready.
    #[serde(default)]
    pub copy_finished_at: Option<DateTime<Utc>>,
    /// Seconds the copy was paused because a replica lagged.
    #[serde(default)]
    pub throttled_seconds: Option<f64>,
    /// The copy is paused now (its subscription disabled by shard-tool,
    /// not by an error): a resumed copy enables it again.
    #[serde(default)]
    pub throttled: bool,
    /// The switch in progress.
    #[serde(default)]
    pub switch: Option<Switch>,
    /// Freezes so far.
    #[serde(default)]
    pub pauses: Vec<Pause>,
    /// `verify`'s place and findings.
    #[serde(default)]
    pub verify: Option<serde_json::Value>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A job row.
#[derive(Debug, Clone)]
pub struct Job {
    /// `reshard_jobs.id`.
    pub id: i64,
    /// The city it moves.
    pub city: String,
    /// The region of both shards (in-region moves).
    pub region: String,
    /// Where the city started.
    pub from_shard: String,
    /// Where it goes.
    pub to_shard: String,
    /// See the module doc.
    pub phase: String,
    /// See [`Progress`].
    pub progress: Progress,
    /// Finished (done or cancelled).
    pub finished: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    city: String,
    from_region: String,
    from_shard: String,
    to_region: String,
    to_shard: String,
    phase: String,
    progress: serde_json::Value,
    finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Reads job `id`.
    pub async fn load(catalog: &PgPool, region: &str, id: i64) -> Result<Option<Job>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, city, from_region, from_shard, to_region, to_shard, phase, progress,
                    finished_at
               FROM reshard_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(catalog)
        .await
        .map_err(|e| Error::db(format!("the catalog of {region}"), e))?;
        let Some(r) = row else { return Ok(None) };
        if r.from_region != r.to_region {
            return Err(Error::Refused(format!(
                "job {id} moves {} from {} to {}: a move across regions, which this shard-tool \
                 does not drive",
                r.city, r.from_region, r.to_region
            )));
        }
        let progress = serde_json::from_value(r.progress).map_err(|e| {
            Error::db(
                format!("job {id}"),
                anyhow::anyhow!("its progress document is not one this shard-tool reads: {e}"),
            )
        })?;
        Ok(Some(Job {
            id: r.id,
            city: r.city,
            region: r.from_region,
            from_shard: r.from_shard,
            to_shard: r.to_shard,
            phase: r.phase,
            progress,
            finished: r.finished_at.is_some(),
        }))
    }

    /// Inserts a new job; the catalog's unique index refuses a second open
    /// job of the city (reported with the open job's id).
    pub async fn create(
        catalog: &PgPool,
        region: &str,
        city: &str,
        from: &str,
        to: &str,
        progress: Progress,
    ) -> Result<Job> {
        let what = format!("the catalog of {region}");
        let doc = serde_json::to_value(&progress).map_err(|e| Error::db(&what, e))?;
        let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO reshard_jobs (id, city, from_region, from_shard, to_region, to_shard,
                                       phase, progress)
             SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $2, $4, $5, $6 FROM reshard_jobs
             RETURNING id",
        )
        .bind(city)
        .bind(region)
        .bind(from)
        .bind(to)
        .bind(COPYING)
        .bind(&doc)
        .fetch_one(catalog)
        .await;
        match inserted {
            Ok(id) => Ok(Job {
                id,
                city: city.to_string(),
                region: region.to_string(),
                from_shard: from.to_string(),
                to_shard: to.to_string(),
                phase: COPYING.to_string(),
                progress,
                finished: false,
            }),
            Err(sqlx::Error::Database(db))
                if db.constraint() == Some("reshard_jobs_one_open_per_city") =>
            {
                let open: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM reshard_jobs WHERE city = $1 AND finished_at IS NULL",
                )
                .bind(city)
                .fetch_optional(catalog)
                .await
                .map_err(|e| Error::db(&what, e))?;
                Err(Error::Refused(format!(
                    "{city} already has an open move (job {}); finish, cancel or resume it first",
                    open.map_or("?".to_string(), |id| id.to_string())
                )))
            }
            // Two movers took the same next id at once: the other one won.
            Err(sqlx::Error::Database(db)) if db.constraint() == Some("reshard_jobs_pkey") => {
                Err(Error::db(
                    &what,
                    anyhow::anyhow!("another job was created at the same moment; run it again"),
                ))
            }
            Err(e) => Err(Error::db(&what, e)),
        }
    }

    /// Records a new phase (and the progress with it). `updated_at` is the
    /// phase's start: `status` shows the time in phase from it.
    pub async fn set_phase(&mut self, catalog: &PgPool, phase: &str) -> Result<()> {
        let finished = matches!(phase, DONE | CANCELLED);
        let doc = serde_json::to_value(&self.progress)
            .map_err(|e| Error::db(format!("job {}", self.id), e))?;
        sqlx::query(
            "UPDATE reshard_jobs SET phase = $2, progress = $3, error = NULL, updated_at = now(),
                    finished_at = CASE WHEN $4 THEN now() END
              WHERE id = $1",
        )
        .bind(self.id)
        .bind(phase)
        .bind(&doc)
        .bind(finished)
        .execute(catalog)
        .await
        .map_err(|e| Error::db(format!("the catalog of {}", self.region), e))?;
        self.phase = phase.to_string();
        self.finished = finished;
        Ok(())
    }

    /// Saves the progress document without changing the phase (its time
    /// in phase goes on).
    pub async fn save(&self, catalog: &PgPool) -> Result<()> {
        let doc = serde_json::to_value(&self.progress)
            .map_err(|e| Error::db(format!("job {}", self.id), e))?;
        sqlx::query("UPDATE reshard_jobs SET progress = $2 WHERE id = $1")
            .bind(self.id)
            .bind(&doc)
            .execute(catalog)
            .await
            .map_err(|e| Error::db(format!("the catalog of {}", self.region), e))?;
        Ok(())
    }

    /// Records what stopped the job (it stays in its phase; `resume` or
    /// the operator decides what next).
    pub async fn record_error(&self, catalog: &PgPool, error: &str) {
        let _ = sqlx::query("UPDATE reshard_jobs SET error = $2 WHERE id = $1")
            .bind(self.id)
            .bind(error)
            .execute(catalog)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_keeps_what_it_does_not_know_and_reads_what_status_reads() {
        let doc = serde_json::json!({
            "owner": "source", "rows_copied": 5, "rows_total": 10,
            "copy_started_at": "2026-12-06T12:00:00Z", "from_the_future": [1, 2]
        });
        let p: Progress = serde_json::from_value(doc).expect("progress");
        assert_eq!(p.owner, Some(Side::Source));
        assert_eq!(
            p.other.get("from_the_future"),
            Some(&serde_json::json!([1, 2]))
        );
        let back = serde_json::to_value(&p).expect("json");
        let copy: crate::jobs::CopyProgress = serde_json::from_value(back.clone()).expect("copy");
        assert_eq!(copy.rows_copied, Some(5));
        assert_eq!(back["from_the_future"], serde_json::json!([1, 2]));
    }
}
