//! `cityboard`: bring a topology up as a local stack, watch it, measure it.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

use cityboard_deploy::home::Home;
use cityboard_deploy::process::sibling_binary;
use cityboard_deploy::topology::TopologyError;
use cityboard_deploy::{commands, edge, postgres, render, supervisor};

#[derive(Parser)]
#[command(
    name = "cityboard",
    version,
    about = "Run and measure a local cityboard stack"
)]
struct Cli {
    /// Directory of the stack: data, logs, pid files, secrets, state.
    #[arg(
        long,
        env = "CITYBOARD_HOME",
        default_value = ".cityboard",
        global = true
    )]
    home: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the stack (or repair the running one) and print where it is.
    Up {
        /// Topology file.
        #[arg(
            long,
            short,
            env = "CITYBOARD_TOPOLOGY",
            default_value = "deploy/topology.toml"
        )]
        topology: PathBuf,
        /// Seed demo posts (idempotent: a second run adds none).
        #[arg(long)]
        demo: bool,
        /// Use this port base instead of the file's (e.g. a test stack
        /// beside a dev stack).
        #[arg(long, env = "CITYBOARD_PORT_BASE")]
        port_base: Option<u16>,
        /// A TOML file whose `[limits]` table replaces the topology's (a
        /// test stack, whose every client is 127.0.0.1, sets its own).
        #[arg(long, env = "CITYBOARD_LIMITS_FILE")]
        limits: Option<PathBuf>,
    },
    /// Stop every process the stack started.
    Down {
        /// Also delete the stack's data, logs and secrets.
        #[arg(long)]
        purge: bool,
    },
    /// Health, restarts and replica lag of every component.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a component's log (`supervisor` for the supervisor's own).
    Logs {
        /// e.g. `us-east/shard-1/primary`.
        component: String,
        /// Lines to print first.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        /// Keep printing what is appended.
        #[arg(long, short)]
        follow: bool,
    },
    /// Open psql on an instance: `psql us-east shard-1 [--replica 1]` or `psql us-east catalog`.
    Psql {
        /// Region name.
        region: String,
        /// `shard-N`, `N` or `catalog`.
        shard: String,
        /// Connect to the member `replica-N` instead of the primary now
        /// (after `cityboard failover` that member may be the primary).
        #[arg(long)]
        replica: Option<usize>,
    },
    /// Promote a shard's most caught-up replica and make the old primary a
    /// replica of it; the roles follow through the catalog, unrestarted.
    Failover {
        /// Region name.
        region: String,
        /// `shard-N` or `N`.
        shard: String,
        /// One JSON object per line per step.
        #[arg(long)]
        json: bool,
    },
    /// Take a consistent base backup of a shard's primary.
    Backup {
        /// Region name.
        region: String,
        /// `shard-N` or `N`.
        shard: String,
        /// Directory to write it to (new or empty; default: under the
        /// home's `backups/`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// One JSON object per line per step.
        #[arg(long)]
        json: bool,
    },
    /// Put a shard back to a backup's content while the stack runs
    /// (writes applied since the backup are lost).
    Restore {
        /// Region name.
        region: String,
        /// `shard-N` or `N`.
        shard: String,
        /// A directory `cityboard backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// One JSON object per line per step.
        #[arg(long)]
        json: bool,
    },
    /// Run a benchmark scenario against the running stack.
    Bench {
        /// Scenario name; `cityboard bench list` lists them.
        scenario: String,
        /// Print the figures as JSON too.
        #[arg(long)]
        json: bool,
        /// `reshard`: posts seeded into the moved city (default 1 000 000).
        #[arg(long)]
        posts: Option<u64>,
        /// `reshard`: cutovers plus rollbacks (default 100).
        #[arg(long)]
        switches: Option<u64>,
    },
    /// Render the topology as production configuration (nothing is
    /// written when the topology or the values file has a mistake).
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
    /// A fleet plan from the benchmarks' measured figures, for edge KV hit
    /// rates of 50, 80 and 95 %.
    Capacity {
        /// Page views a month.
        #[arg(long)]
        views_per_month: u64,
        /// New posts a day.
        #[arg(long)]
        posts_per_day: u64,
        /// Peak traffic over the month's average.
        #[arg(long, default_value_t = 3.0)]
        peak_factor: f64,
        /// Cores of one origin server.
        #[arg(long, default_value_t = 32)]
        cores_per_server: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the post page template version this build renders: the edge
    /// Worker's `TEMPLATE_VERSION` (`wrangler deploy --var
    /// TEMPLATE_VERSION:$(cityboard template-version)`).
    TemplateVersion,
    /// Serve a KV namespace over the protocol of workerd's `kvNamespace`
    /// binding (the local edge's KV; the stack runs one on port_base + 3).
    EdgeKv(cityboard_edge_kv::Options),
    /// Run the supervisor in the foreground (started by `up`).
    #[command(hide = true)]
    Supervise,
}

#[derive(Subcommand)]
enum RenderTarget {
    /// Kubernetes manifests, a namespace per region (CloudNativePG,
    /// Strimzi, Redis, the roles, geo DNS, NetworkPolicies).
    K8s {
        /// Directory the manifests are written under (`<region>/*.yaml`).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        inputs: RenderInputs,
    },
    /// The edge Worker's wrangler.toml (local, staging and production
    /// environments) from the same variables `up` gives the local workerd.
    Wrangler {
        /// File to write.
        #[arg(long, default_value = "edge/wrangler.toml")]
        out: PathBuf,
        /// A region catalog's Postgres URL (repeat for each region): each
        /// city goes in the region the catalogs place it in (after moves),
        /// not the one the topology lists it under.
        #[arg(long = "catalog", value_name = "URL")]
        catalogs: Vec<String>,
        #[command(flatten)]
        inputs: RenderInputs,
    },
}

/// What every rendering reads.
#[derive(clap::Args)]
struct RenderInputs {
    /// Topology file.
    #[arg(
        long,
        env = "CITYBOARD_TOPOLOGY",
        default_value = "deploy/topology.toml"
    )]
    topology: PathBuf,
    /// Values file: images, storage, backups, origin addresses, each Worker
    /// environment's apex, zone and KV namespace id.
    #[arg(long, default_value = render::values::DEFAULT_VALUES)]
    values: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = match Home::new(&cli.home) {
        Ok(home) => home,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = match cli.command {
        Cmd::Up {
            topology,
            demo,
            port_base,
            limits,
        } => commands::up::run(
            &home,
            &topology,
            commands::up::Overrides {
                port_base,
                limits: limits.as_deref(),
            },
            demo,
        )
        .map(|()| true),
        Cmd::Down { purge } => commands::down::run(&home, purge).map(|()| true),
        Cmd::Status { json } => runtime.block_on(commands::status::run(&home, json)),
        Cmd::Logs {
            component,
            lines,
            follow,
        } => commands::logs::run(&home, &component, lines, follow).map(|()| true),
        Cmd::Psql {
            region,
            shard,
            replica,
        } => commands::psql::run(&home, &region, &shard, replica).map(|()| true),
        Cmd::Failover {
            region,
            shard,
            json,
        } => runtime
            .block_on(commands::failover::run(&home, &region, &shard, json))
            .map(|()| true),
        Cmd::Backup {
            region,
            shard,
            out,
            json,
        } => runtime
            .block_on(commands::backup::backup(
                &home,
                &region,
                &shard,
                out.as_deref(),
                json,
            ))
            .map(|()| true),
        Cmd::Restore {
            region,
            shard,
            from,
            json,
        } => runtime
            .block_on(commands::backup::restore(
                &home, &region, &shard, &from, json,
            ))
            .map(|()| true),
        Cmd::Bench {
            scenario,
            json,
            posts,
            switches,
        } => return bench(&home, &scenario, json, posts, switches),
        Cmd::Render { target } => match target {
            RenderTarget::K8s { out, inputs } => {
                { commands::render::k8s(&inputs.topology, &inputs.values, &out) }.map(|()| true)
            }
            RenderTarget::Wrangler {
                out,
                catalogs,
                inputs,
            } => runtime
                .block_on(commands::render::wrangler(
                    &inputs.topology,
                    &inputs.values,
                    &catalogs,
                    &out,
                ))
                .map(|()| true),
        },
        Cmd::Capacity {
            views_per_month,
            posts_per_day,
            peak_factor,
            cores_per_server,
            json,
        } => commands::capacity::run(
            &cityboard_deploy::capacity::Demand {
                views_per_month: views_per_month as f64,
                posts_per_day: posts_per_day as f64,
                peak_factor,
                cores_per_server: f64::from(cores_per_server),
            },
            json,
        )
        .map(|()| true),
        Cmd::TemplateVersion => {
            println!("{}", edge::template_version());
            Ok(true)
        }
        Cmd::EdgeKv(options) => runtime
            .block_on(cityboard_edge_kv::serve(options))
            .map(|()| true),
        Cmd::Supervise => runtime.block_on(supervisor::run(home)).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(&e),
    }
}

/// Runs the scenario with `cityboard-bench` (the bench crate's binary,
/// built beside this one), which prints its figures and exits as it ends:
/// 2 for an unknown scenario, as for any usage error.
fn bench(
    home: &Home,
    scenario: &str,
    json: bool,
    posts: Option<u64>,
    switches: Option<u64>,
) -> ExitCode {
    let status = sibling_binary("cityboard-bench").and_then(|program| {
        let mut command = Command::new(program);
        command.arg("--home").arg(home.root()).arg(scenario);
        // The benchmarks read and seed the stack's databases directly, as
        // its superuser.
        if home
            .secrets_dir()
            .join(postgres::password_file(postgres::ADMIN))
            .exists()
        {
            command.envs(postgres::client_env(&home.secrets_dir(), postgres::ADMIN)?);
        }
        if json {
            command.arg("--json");
        }
        if let Some(n) = posts {
            command.arg("--posts").arg(n.to_string());
        }
        if let Some(n) = switches {
            command.arg("--switches").arg(n.to_string());
        }
        Ok(command.status()?)
    });
    match status {
        Ok(status) => match status.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => ExitCode::from(1),
        },
        Err(e) => fail(&e),
    }
}

/// Topology mistakes and bad arguments exit 2 (usage); everything else 1.
fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("cityboard: {error:#}");
    if error.downcast_ref::<TopologyError>().is_some()
        || error.downcast_ref::<commands::UsageError>().is_some()
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
