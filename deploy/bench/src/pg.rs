//! Raw Postgres figures with the standard tools, the baseline every write
//! and read scenario is compared with in the same run.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use cityboard_deploy::postgres;

/// Scratch database the baseline creates and drops; the stack's own
/// database is never touched.
pub const BENCH_DATABASE: &str = "cityboard_bench";
/// Rows COPYed and INSERTed.
const BULK_ROWS: usize = 200_000;
/// pgbench scale: 10 means 1 000 000 rows in pgbench_accounts.
const PGBENCH_SCALE: u32 = 10;
/// Concurrent pgbench clients for the point lookups.
pub const LOOKUP_CLIENTS: u32 = 16;
/// Seconds the point-lookup run lasts.
const LOOKUP_SECONDS: u32 = 10;

/// The baseline figures.
#[derive(Debug, Clone, Serialize)]
pub struct PgBaseline {
    /// Rows per second of one COPY of post-like rows.
    pub copy_rows_per_s: f64,
    /// Rows per second of 100-row INSERT statements, one client.
    pub insert100_rows_per_s: f64,
    /// pgbench -S transactions per second (one primary-key lookup each).
    pub lookup_tps: f64,
    /// Median lookup latency, ms.
    pub lookup_p50_ms: f64,
    /// 99th-percentile lookup latency, ms.
    pub lookup_p99_ms: f64,
    /// Concurrent clients of the lookup run.
    pub lookup_clients: u32,
}

impl PgBaseline {
    /// Prints the figures as a small table.
    pub fn print(&self) {
        println!(
            "  COPY                         {:>12.0} rows/s",
            self.copy_rows_per_s
        );
        println!(
            "  INSERT, 100 rows each        {:>12.0} rows/s",
            self.insert100_rows_per_s
        );
        println!(
            "  pgbench -S ({} clients, 1M)  {:>12.0} TPS   p50 {:.3} ms   p99 {:.3} ms",
            self.lookup_clients, self.lookup_tps, self.lookup_p50_ms, self.lookup_p99_ms
        );
    }
}

/// A connection as the libpq environment says (`cityboard bench` runs this
/// binary as the stack's superuser).
async fn connect(port: u16, database: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    Ok(sqlx::PgConnection::connect(&postgres::url(port, database)).await?)
}

/// Measures the baseline on the primary listening on `port`.
pub async fn baseline(port: u16) -> Result<PgBaseline> {
    let mut admin = connect(port, "postgres").await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {BENCH_DATABASE}"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {BENCH_DATABASE}"))
        .execute(&mut admin)
        .await?;
    let result = measure(port).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {BENCH_DATABASE}"))
        .execute(&mut admin)
        .await?;
    result
}

async fn measure(port: u16) -> Result<PgBaseline> {
    let mut conn = connect(port, BENCH_DATABASE).await?;
    sqlx::query(
        "CREATE TABLE bench_posts (city text, id bigint, title text, body text, price bigint, \
         created_at timestamptz, PRIMARY KEY (city, id))",
    )
    .execute(&mut conn)
    .await?;

    let mut data = String::with_capacity(BULK_ROWS * 120);
    for id in 0..BULK_ROWS {
        data.push_str(&format!(
            "boston\t{id}\tBike number {id}\tA sturdy bicycle, barely used, collect in person\t{}\t2026-11-01 12:00:00+00\n",
            id % 5000
        ));
    }
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY bench_posts FROM STDIN").await?;
    copy.send(data.as_bytes()).await?;
    let copied = copy.finish().await?;
    let copy_rows_per_s = copied as f64 / started.elapsed().as_secs_f64();

    sqlx::query("TRUNCATE bench_posts")
        .execute(&mut conn)
        .await?;
    let statement = {
        let rows: Vec<String> = (0..100)
            .map(|r| {
                let b = r * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        format!("INSERT INTO bench_posts VALUES {}", rows.join(", "))
    };
    let created = chrono::Utc::now();
    let started = Instant::now();
    for batch in 0..BULK_ROWS / 100 {
        let mut query = sqlx::query(&statement);
        for r in 0..100 {
            let id = (batch * 100 + r) as i64;
            query = query
                .bind("boston")
                .bind(id)
                .bind(format!("Bike number {id}"))
                .bind("A sturdy bicycle, barely used, collect in person")
                .bind(id % 5000)
                .bind(created);
        }
        query.execute(&mut conn).await?;
    }
    let insert100_rows_per_s = BULK_ROWS as f64 / started.elapsed().as_secs_f64();
    drop(conn);

    let (lookup_tps, lookup_p50_ms, lookup_p99_ms) =
        tokio::task::spawn_blocking(move || pgbench_lookups(port)).await??;
    Ok(PgBaseline {
        copy_rows_per_s,
        insert100_rows_per_s,
        lookup_tps,
        lookup_p50_ms,
        lookup_p99_ms,
        lookup_clients: LOOKUP_CLIENTS,
    })
}

/// pgbench -S on 1M rows; latencies from its per-transaction log.
fn pgbench_lookups(port: u16) -> Result<(f64, f64, f64)> {
    let pgbench = postgres::program("pgbench")?;
    let connection = ["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"];
    let init = Command::new(&pgbench)
        .args(connection)
        .args(["-i", "-q", "-s", &PGBENCH_SCALE.to_string(), BENCH_DATABASE])
        .output()
        .context("running pgbench -i")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let logs = tempfile_dir()?;
    let prefix = logs.join("pgbench");
    let run = Command::new(&pgbench)
        .args(connection)
        .args(["-S", "-M", "prepared", "-n"])
        .args([
            "-c",
            &LOOKUP_CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &LOOKUP_SECONDS.to_string(),
        ])
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(BENCH_DATABASE)
        .current_dir(&logs)
        .output()
        .context("running pgbench -S")?;
    if !run.status.success() {
        bail!(
            "pgbench -S failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&run.stdout);
    let tps = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .with_context(|| format!("no tps line in pgbench output:\n{stdout}"))?;
    let mut latencies_us: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // client_id transaction_no time_us script_no epoch epoch_us
        latencies_us.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
    if latencies_us.is_empty() {
        bail!("pgbench wrote no transaction log");
    }
    latencies_us.sort_unstable();
    let at = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    Ok((tps, at(0.50), at(0.99)))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cityboard-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
