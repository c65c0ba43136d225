//! Crash points for the chaos test (issue 7), with the `fail` crate: inert
//! unless the crate is built with the `failpoints` feature *and* the point is
//! configured (`FAILPOINTS=writer-after-commit=return` in the environment of
//! the process, or `fail::cfg` in an in-process test).
//!
//! Configured with `return` (no argument) the process aborts on the spot,
//! exactly as a SIGKILL there would end it: nothing after the point runs, no
//! destructor, no flush. With `return(error)` the point returns an error
//! instead, so an in-process test can "crash" a role without ending the test.

/// Writer: after the apply transaction committed (and notifications went
/// out), before the consumer offsets are committed.
pub const WRITER_AFTER_COMMIT: &str = "writer-after-commit";
/// Relay: after the broker acknowledged the outbox rows, before they are
/// deleted.
pub const RELAY_AFTER_PRODUCE: &str = "relay-after-produce";
/// Publisher: after the KV write succeeded, before the consumer offsets
/// past its events are committed.
pub const PUBLISHER_AFTER_KV_WRITE: &str = "publisher-after-kv-write";

/// A crash point configured with `return(error)` was reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crash point {0} reached (configured to fail, not abort)")]
pub struct Crashed(pub &'static str);

/// Evaluates crash point `name`.
pub fn crash_point(name: &'static str) -> Result<(), Crashed> {
    // Only the macro reads `name`, and without the feature it expands to
    // nothing.
    let _ = name;
    fail::fail_point!(name, |arg: Option<String>| {
        if arg.as_deref() == Some("error") {
            return Err(Crashed(name));
        }
        eprintln!("region-core: crash point {name} reached: aborting");
        std::process::abort()
    });
    Ok(())
}

/// Reads `FAILPOINTS` at start. Kept for the life of the process; a warning
/// when points are asked for but the build has none.
pub fn setup() -> fail::FailScenario<'static> {
    if std::env::var_os("FAILPOINTS").is_some() && !fail::has_failpoints() {
        tracing::warn!(
            "FAILPOINTS is set but this build has no crash points \
             (build region-core with --features failpoints)"
        );
    }
    fail::FailScenario::setup()
}
