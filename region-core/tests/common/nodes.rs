//! Stopping and starting a Postgres node of the stack from a test.

use std::process::Command;
use std::time::{Duration, Instant};

/// What it takes to start a stopped node again as it was.
#[derive(Debug)]
pub struct StoppedNode {
    url: String,
    data_dir: String,
    pg_ctl: String,
    options: String,
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Stops the node at `url` (fast shutdown), remembering its command line
/// from `postmaster.opts` so it restarts with the same port and options.
pub async fn stop_node(url: &str) -> StoppedNode {
    let p = super::pool(url).await;
    let data_dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(&p)
        .await
        .unwrap();
    p.close().await;
    let opts = std::fs::read_to_string(format!("{data_dir}/postmaster.opts"))
        .unwrap_or_else(|e| panic!("cannot read {data_dir}/postmaster.opts: {e}"));
    let (binary, options) = opts.trim().split_once(' ').unwrap_or((opts.trim(), ""));
    let pg_ctl = binary.trim_end_matches("postgres").to_string() + "pg_ctl";
    let out = run(&[&pg_ctl, "-D", &data_dir, "-m", "fast", "-w", "stop"]);
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    StoppedNode {
        url: url.to_string(),
        data_dir,
        pg_ctl,
        options: options.to_string(),
    }
}

/// Starts it again (a supervisor may have beaten us to it: fine) and waits
/// until it accepts connections.
pub async fn start_node(node: StoppedNode) {
    let log = format!("/tmp/region-core-test-{}.log", std::process::id());
    let _ = run(&[
        &node.pg_ctl,
        "-D",
        &node.data_dir,
        "-l",
        &log,
        "-o",
        &node.options,
        "-w",
        "start",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::PgPool::connect(&node.url).await.is_err() {
        assert!(Instant::now() < deadline, "{} did not come back", node.url);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
