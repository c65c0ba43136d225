//! `cityboard-bench SCENARIO [--json]`: what `cityboard bench` runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use cityboard_bench::UnknownScenario;
use cityboard_deploy::home::Home;
use cityboard_deploy::topology::TopologyError;

#[derive(Parser)]
#[command(
    name = "cityboard-bench",
    version,
    about = "Run a benchmark scenario against the running stack (`cityboard bench`)"
)]
struct Cli {
    /// Directory of the stack: data, logs, pid files, secrets, state.
    #[arg(long, env = "CITYBOARD_HOME", default_value = ".cityboard")]
    home: PathBuf,
    /// Scenario name; `cityboard bench list` lists them.
    scenario: String,
    /// Print the figures as JSON too.
    #[arg(long)]
    json: bool,
    /// `reshard`: posts seeded into the moved city (default 1 000 000).
    #[arg(long, env = "CITYBOARD_BENCH_POSTS")]
    posts: Option<u64>,
    /// `reshard`: cutovers plus rollbacks (default 100).
    #[arg(long, env = "CITYBOARD_BENCH_SWITCHES")]
    switches: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Home::new(&cli.home).and_then(|home| {
        tokio::runtime::Runtime::new()?.block_on(cityboard_bench::run(
            &home,
            &cli.scenario,
            cli.json,
            cityboard_bench::Knobs {
                posts: cli.posts,
                switches: cli.switches,
            },
        ))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cityboard: {e:#}");
            // Unknown names exit 2 (usage), as `cityboard` does.
            if e.downcast_ref::<TopologyError>().is_some()
                || e.downcast_ref::<UnknownScenario>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
