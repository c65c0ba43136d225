//! `shard-tool`: the operator's command for moving cities between shards
//! online, and for seeing where every city and move stands.
//!
//! Rooms, one job each (as in mini-redis): `cli` (flags), `error` (the one
//! error enum and its exit codes), `regions` (which catalogs, read-only
//! connections), `tables` (which tables move with a city, from the schema), `counts`
//! (their rows per city, exact or estimated),
//! `shard` (one shard's slots and cities), `replica` (a replica's lag), `jobs` (the catalog's
//! reshard jobs), `status` (the command), `render` (tables and JSON lines),
//! `report` (steps and the progress bar), `mover` (a move's job row,
//! replication, copy, switch and end), `moves` (the commands that drive
//! it), `verify` (chunked checksums), `doctor` (finding and repairing
//! what a crash left).
//! `main` only parses, runs and maps the error to an exit code.

mod cli;
mod counts;
mod doctor;
mod error;
mod jobs;
mod mover;
mod moves;
mod regions;
mod render;
mod replica;
mod report;
mod shard;
mod status;
mod tables;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::Error;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors; clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return fail(&Error::Usage(e.render().to_string())),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shard-tool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Status(args) => status::run(&cli.target, args, cli.json).await,
            Command::Move(args) => moves::move_city(&cli.target, args, cli.json).await,
            Command::Verify(args) => verify::run(&cli.target, args, cli.json).await,
            Command::Cutover(args) => moves::cutover(&cli.target, args, cli.json).await,
            Command::Rollback(args) => moves::rollback(&cli.target, args, cli.json).await,
            Command::Cleanup(args) => moves::cleanup(&cli.target, args, cli.json).await,
            Command::Cancel(args) => moves::cancel(&cli.target, args, cli.json).await,
            Command::Resume(args) => moves::resume(&cli.target, args, cli.json).await,
            Command::Doctor(args) => doctor::run(&cli.target, args, cli.json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints the error on stderr and gives its exit code.
fn fail(e: &Error) -> ExitCode {
    match e {
        // clap's message is complete (usage and hint included).
        Error::Usage(text) => eprint!("{text}"),
        // The reader went away (`| head`): nobody is left to tell.
        Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {}
        _ => eprintln!("shard-tool: {e}"),
    }
    ExitCode::from(e.exit_code())
}
