//! Everything shard-tool can fail with, and the one place that maps a
//! failure to an exit code.
//!
//! Scripts drive shard-tool, so the exit code is part of its interface:
//! `2` means "you asked for something that does not exist or cannot be",
//! and running the same command again will fail the same way; `1` means
//! "something is down or refused us", and the command may succeed once it
//! is back. Nothing here ever panics on input.

/// A failure of one shard-tool command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed arguments (clap's message, already rendered).
    #[error("{0}")]
    Usage(String),
    /// The stack description cannot be read or is not one.
    #[error("{0:#}")]
    StateFile(anyhow::Error),
    /// A region the stack description or the catalog does not have.
    #[error("unknown region {region:?} (known: {known})")]
    UnknownRegion {
        /// What the operator asked for.
        region: String,
        /// The regions there are, comma-separated.
        known: String,
    },
    /// A database address that is not a Postgres URL.
    #[error("{what}: {url:?} is not a Postgres URL ({reason})")]
    BadUrl {
        /// Which database it should name.
        what: String,
        /// The address, password redacted.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// A job id no catalog of the selected regions has.
    #[error("no reshard job {id} in the catalog of {regions}; `shard-tool status` lists the jobs")]
    UnknownJob {
        /// The job id asked for.
        id: i64,
        /// Where it was looked up, comma-separated.
        regions: String,
    },
    /// A database that is down, refuses us, or carries a schema this build
    /// does not know. `what` names it (`the catalog of us-east`, `us-east/shard-2 primary`).
    #[error("{what}: {}", causes(source))]
    Database {
        /// Which database, as an operator would name it.
        what: String,
        /// What went wrong.
        #[source]
        source: anyhow::Error,
    },
    /// stdout is gone (a closed pipe): nothing more can be reported.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// Some shards could not be inspected; what could be read was printed.
    #[error("could not read {0}; the rest of the status above is complete")]
    Partial(String),
    /// The request cannot be carried out as asked (an unknown city or
    /// shard, a move onto the city's own shard, a second job, a preflight
    /// that failed): nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Another shard-tool drives the job now (its advisory lock is held).
    #[error("{0}")]
    Busy(String),
    /// A cutover or rollback gave up at its deadline: the city stayed
    /// where it was, at its epoch, and takes writes again.
    #[error("{0}")]
    Aborted(String),
    /// Verify found rows that differ (each was reported above).
    #[error("{0}")]
    Differs(String),
}

impl Error {
    /// `2` for bad input (unknown region, job, malformed arguments or state
    /// file), `1` for operational failures (a database unreachable).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::StateFile(_)
            | Error::UnknownRegion { .. }
            | Error::BadUrl { .. }
            | Error::UnknownJob { .. }
            | Error::Refused(_) => 2,
            Error::Database { .. }
            | Error::Output(_)
            | Error::Partial(_)
            | Error::Busy(_)
            | Error::Aborted(_)
            | Error::Differs(_) => 1,
        }
    }

    /// A database failure naming `what`.
    pub fn db(what: impl Into<String>, source: impl Into<anyhow::Error>) -> Error {
        Error::Database {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause its
/// parent already quotes (sqlx's I/O errors repeat their source).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// What every command returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_outages_exit_1() {
        let job = Error::UnknownJob {
            id: 7,
            regions: "us-east".into(),
        };
        assert_eq!(job.exit_code(), 2);
        assert!(job.to_string().contains("no reshard job 7"));
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::db("us-east/shard-3 primary", sqlx::Error::Io(refused));
        assert_eq!(
            e.to_string(),
            "us-east/shard-3 primary: error communicating with database: refused"
        );
        assert_eq!(
            Error::db("us-east/shard-1 primary", anyhow::anyhow!("refused")).exit_code(),
            1
        );
    }
}
