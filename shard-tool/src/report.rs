//! What a long command says while it works: steps as lines (or JSON
//! lines), and the copy's progress as a bar on a terminal.
//!
//! The bar shows the job's own figures (rows, the recent rate and the ETA
//! the job row carries, see [`crate::jobs`]), never indicatif's estimate,
//! so the terminal and `status` agree. It is drawn on stderr and only when
//! stderr is a terminal; `--json` prints a `progress` line every few
//! seconds instead.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::render;

/// Where steps and progress go.
pub struct Report {
    json: bool,
    bar: Option<ProgressBar>,
    last_json: Option<Instant>,
}

/// The copy's figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// The job.
    pub job: i64,
    /// Its phase.
    pub phase: String,
    /// Rows copied so far.
    pub rows_copied: i64,
    /// Rows to copy.
    pub rows_total: i64,
    /// Recent rows a second.
    pub rows_per_second: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Tables copied, of all.
    pub tables_ready: usize,
    /// Tables in all.
    pub tables: usize,
    /// The copy is paused because a replica lags.
    pub throttled: bool,
}

/// How often `--json` prints a progress line.
const JSON_EVERY: Duration = Duration::from_secs(2);

impl Report {
    /// Steps and progress for people (`json` false) or scripts.
    pub fn new(json: bool) -> Report {
        Report {
            json,
            bar: None,
            last_json: None,
        }
    }

    /// A step: `job N: message`, or `{"kind":"step",...}`.
    pub fn step(&mut self, job: i64, phase: &str, message: &str) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Step<'a> {
            job: i64,
            phase: &'a str,
            message: &'a str,
        }
        let line = Step {
            job,
            phase,
            message,
        };
        self.print(|out, json| {
            if json {
                render::json_line(out, "step", &line)
            } else {
                writeln!(out, "job {job}: {message}")
            }
        })
    }

    /// Any line: printed above the bar, if one is drawn.
    pub fn print(
        &mut self,
        f: impl FnOnce(&mut dyn Write, bool) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let json = self.json;
        let stdout = std::io::stdout();
        match &self.bar {
            Some(bar) => bar.suspend(|| f(&mut stdout.lock(), json)),
            None => f(&mut stdout.lock(), json),
        }
    }

    /// The copy's progress.
    pub fn progress(&mut self, f: &Figures) -> std::io::Result<()> {
        if self.json {
            let due = self.last_json.is_none_or(|t| t.elapsed() >= JSON_EVERY);
            if due {
                self.last_json = Some(Instant::now());
                let stdout = std::io::stdout();
                render::json_line(&mut stdout.lock(), "progress", f)?;
            }
            return Ok(());
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(
                Some(f.rows_total.max(0) as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        bar.set_prefix(format!("job {} {}", f.job, f.phase));
        bar.set_length(f.rows_total.max(f.rows_copied).max(0) as u64);
        bar.set_position(f.rows_copied.max(0) as u64);
        let rate = render::or_dash(f.rows_per_second, |r| {
            format!("{}/s", render::count(r.round() as i64))
        });
        let eta = render::or_dash(f.eta_seconds, render::duration);
        bar.set_message(format!(
            "{} / {} rows, {rate}, ETA {eta}, tables {}/{}{}",
            render::count(f.rows_copied),
            render::count(f.rows_total),
            f.tables_ready,
            f.tables,
            if f.throttled {
                ", paused: replica lag"
            } else {
                ""
            }
        ));
        Ok(())
    }

    /// Removes the bar (the copy is over).
    pub fn end_progress(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
