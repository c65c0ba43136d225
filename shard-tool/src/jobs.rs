//! Reshard jobs as the catalog's `reshard_jobs` holds them, and what their
//! `progress` says about the copy.
//!
//! The job row is the one truth about a move (every step resumes from it),
//! so `status` reads it and nothing else: a figure shown here is a figure
//! the mover wrote, with the time it wrote it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The keys of `reshard_jobs.progress` that describe the copy. The move
/// command writes them; every key is optional, and a figure that cannot be
/// computed honestly is left out rather than guessed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CopyProgress {
    /// Rows copied so far, over every moved table.
    pub rows_copied: Option<i64>,
    /// Rows to copy in all (the source's count when the copy started).
    pub rows_total: Option<i64>,
    /// When the copy started.
    pub copy_started_at: Option<DateTime<Utc>>,
    /// The copy rate over the mover's recent window, rows a second; when
    /// absent, the average since `copy_started_at` is used.
    pub rows_per_second: Option<f64>,
}

/// A job as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// `reshard_jobs.id`.
    pub id: i64,
    /// The city it moves.
    pub city: String,
    /// `region/shard` it moves from.
    pub from: String,
    /// `region/shard` it moves to.
    pub to: String,
    /// The step it is at.
    pub phase: String,
    /// Seconds since the row last changed (`now() - updated_at`, both by
    /// the catalog's clock).
    pub seconds_in_phase: f64,
    /// When it ended (done, cancelled or rolled back for good).
    pub finished_at: Option<DateTime<Utc>>,
    /// The last error the job recorded.
    pub error: Option<String>,
    /// Rows copied, when the job says.
    pub rows_copied: Option<i64>,
    /// Rows to copy in all, when the job says.
    pub rows_total: Option<i64>,
    /// Rows a second (see [`CopyProgress::rows_per_second`]).
    pub rows_per_second: Option<f64>,
    /// Seconds left at that rate, while rows remain.
    pub eta_seconds: Option<f64>,
    /// The whole `progress` document, for what status does not interpret.
    pub progress: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    city: String,
    from_region: String,
    from_shard: String,
    to_region: String,
    to_shard: String,
    phase: String,
    progress: serde_json::Value,
    error: Option<String>,
    finished_at: Option<DateTime<Utc>>,
    seconds_in_phase: f64,
    now: DateTime<Utc>,
}

const SELECT: &str = "SELECT id, city, from_region, from_shard, to_region, to_shard, phase,
        progress, error, finished_at,
        extract(epoch FROM now() - updated_at)::float8 AS seconds_in_phase, now() AS now
   FROM reshard_jobs";

/// Open jobs, and jobs that finished in the last day (what an operator
/// checks after a night's move), oldest first.
pub async fn recent(catalog: &PgPool) -> Result<Vec<JobStatus>, sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE finished_at IS NULL OR finished_at > now() - interval '1 day' ORDER BY id"
    ))
    .fetch_all(catalog)
    .await?;
    Ok(rows.into_iter().map(JobStatus::from).collect())
}

/// The job `id`, finished or not.
pub async fn one(catalog: &PgPool, id: i64) -> Result<Option<JobStatus>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(&format!("{SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(catalog)
        .await?;
    Ok(row.map(JobStatus::from))
}

impl From<JobRow> for JobStatus {
    fn from(r: JobRow) -> JobStatus {
        // A progress document of another shape is shown raw, not an error:
        // status must work whatever a newer or older mover wrote.
        let p: CopyProgress = serde_json::from_value(r.progress.clone()).unwrap_or_default();
        let rate = rate(&p, r.now);
        JobStatus {
            id: r.id,
            city: r.city,
            from: format!("{}/{}", r.from_region, r.from_shard),
            to: format!("{}/{}", r.to_region, r.to_shard),
            phase: r.phase,
            seconds_in_phase: r.seconds_in_phase.max(0.0),
            finished_at: r.finished_at,
            error: r.error,
            rows_copied: p.rows_copied,
            rows_total: p.rows_total,
            rows_per_second: rate,
            eta_seconds: eta(&p, rate),
            progress: r.progress,
        }
    }
}

/// The mover's recent rate, else the average since the copy started.
fn rate(p: &CopyProgress, now: DateTime<Utc>) -> Option<f64> {
    if let Some(r) = p.rows_per_second.filter(|r| r.is_finite() && *r >= 0.0) {
        return Some(r);
    }
    let copied = p.rows_copied?;
    let elapsed = (now - p.copy_started_at?).num_milliseconds() as f64 / 1000.0;
    (elapsed > 0.0).then(|| copied as f64 / elapsed)
}

/// Rows left over the rate; none when either is unknown, the rate is zero
/// (a stalled copy has no honest ETA) or nothing is left.
fn eta(p: &CopyProgress, rate: Option<f64>) -> Option<f64> {
    let left = p.rows_total? - p.rows_copied?;
    let rate = rate.filter(|r| *r > 0.0)?;
    (left > 0).then(|| left as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(json: serde_json::Value) -> CopyProgress {
        serde_json::from_value(json).expect("progress")
    }

    #[test]
    fn rate_and_eta_come_from_the_jobs_own_figures() {
        let now: DateTime<Utc> = "2026-12-06T12:00:10Z".parse().expect("time");
        let p = progress(serde_json::json!({
            "rows_copied": 1000, "rows_total": 3000, "copy_started_at": "2026-12-06T12:00:00Z"
        }));
        let r = rate(&p, now);
        assert_eq!(r, Some(100.0));
        assert_eq!(eta(&p, r), Some(20.0));
        // The mover's recent rate wins over the average.
        let p = CopyProgress {
            rows_per_second: Some(400.0),
            ..p
        };
        assert_eq!(eta(&p, rate(&p, now)), Some(5.0));
    }

    #[test]
    fn no_figure_is_guessed() {
        let now = Utc::now();
        let p = progress(serde_json::json!({ "rows_copied": 10 }));
        assert_eq!(rate(&p, now), None);
        assert_eq!(eta(&p, Some(5.0)), None);
        let stalled = progress(serde_json::json!({ "rows_copied": 10, "rows_total": 20 }));
        assert_eq!(eta(&stalled, Some(0.0)), None);
        let done = progress(serde_json::json!({ "rows_copied": 20, "rows_total": 20 }));
        assert_eq!(eta(&done, Some(9.0)), None);
    }
}
