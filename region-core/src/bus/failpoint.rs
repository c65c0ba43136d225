//! Crash points for the chaos test (issue 7), with the `fail` crate: inert
//! unless the crate is built with the `failpoints` feature *and* the point is
//! configured (`FAILPOINTS=writer-after-commit=return` in the environment of
//! the process, or `fail::cfg` in an in-process test).
//!
//! Configured with `return` (no argument) the process aborts on the spot,
//! exactly as a SIGKILL there would end it: nothing after the point runs, no
//! destructor, no flush. With `return(error)` the point returns an error
//! instead, so an in-process test can "crash" a role without ending the test.
//!
//! A running stack is armed from outside through a control directory
//! ([`CONTROL_DIR_ENV`], see [`Control`]), so a chaos test can crash one role
//! of one region once, at a moment it chooses, without restarting anything.

/// Api: after a write's `Idempotency-Key` record names its command, before
/// the command is produced (a retry must then produce it itself).
pub const API_AFTER_CLAIM: &str = "api-after-claim";
/// Api: after the broker acknowledged a write's command, before the client
/// is answered (the write is then applied without anyone having been told).
pub const API_AFTER_PRODUCE: &str = "api-after-produce";
/// Writer: after the apply transaction committed (and notifications went
/// out), before the consumer offsets are committed.
pub const WRITER_AFTER_COMMIT: &str = "writer-after-commit";
/// Relay: after the broker acknowledged the outbox rows, before they are
/// deleted.
pub const RELAY_AFTER_PRODUCE: &str = "relay-after-produce";
/// Publisher: after the KV write succeeded, before the consumer offsets
/// past its events are committed.
pub const PUBLISHER_AFTER_KV_WRITE: &str = "publisher-after-kv-write";

/// Writer and publisher: a dead-letter send. Not a crash point: configured
/// with `return` (any argument) the send fails as if the broker had not
/// acknowledged it, so a test can see the bound on dead-letter sends
/// (`letters::DeadLetters`) without stopping a broker.
pub const DEAD_LETTER_SEND: &str = "dead-letter-send";

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
/// when points are asked for but the build has none. A role of a stack calls
/// [`setup_role`] instead, which also watches the control directory.
pub fn setup() -> fail::FailScenario<'static> {
    if std::env::var_os("FAILPOINTS").is_some() && !fail::has_failpoints() {
        tracing::warn!(
            "FAILPOINTS is set but this build has no crash points \
             (build region-core with --features failpoints)"
        );
    }
    fail::FailScenario::setup()
}

/// Environment variable naming the control directory of a stack: set in the
/// environment of `cityboard up`, every role inherits it.
pub const CONTROL_DIR_ENV: &str = "CITYBOARD_FAILPOINT_DIR";

/// How often a role looks for its control file.
const CONTROL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The crash points of one role of a running stack, armed from outside.
///
/// The role polls `<dir>/<region>-<role>`; when the file appears it reads
/// a fail configuration in the `FAILPOINTS` syntax (`name=actions`, several
/// separated by `;` or new lines, e.g. `writer-after-commit=1*return`),
/// applies it with `fail::cfg` and deletes the file, so each file arms the
/// points once and a restarted role (the supervisor restarts a crashed one)
/// starts unarmed. A writer of the file writes it under another name in the
/// same directory and renames it into place, so a role never reads half of
/// it. A polling thread, not a task: it works in any role, whatever runtime
/// it runs, and never competes with the role's own work for a worker.
#[derive(Debug, Clone)]
pub struct Control {
    /// The file this role watches.
    pub file: std::path::PathBuf,
}

impl Control {
    /// The control file of `role` of `region` under `dir`.
    pub fn new(dir: &std::path::Path, region: &str, role: &str) -> Control {
        Control {
            file: dir.join(format!("{region}-{role}")),
        }
    }

    /// Applies the control file if it is there; what it armed, by name.
    pub fn poll(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return Vec::new();
        };
        // Deleted first: a configuration that aborts the process at once
        // must not be applied again by the restarted role.
        if let Err(e) = std::fs::remove_file(&self.file) {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot delete the crash point control file");
        }
        let mut armed = Vec::new();
        for entry in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((name, actions)) = entry.split_once('=') else {
                tracing::warn!(entry, "crash point control: expected name=actions");
                continue;
            };
            match fail::cfg(name.trim(), actions.trim()) {
                Ok(()) => {
                    tracing::warn!(
                        point = name.trim(),
                        actions = actions.trim(),
                        "crash point armed"
                    );
                    armed.push(name.trim().to_string());
                }
                Err(e) => {
                    tracing::warn!(point = name.trim(), error = %e, "crash point control refused")
                }
            }
        }
        armed
    }
}

/// What a role keeps for its life: the `FAILPOINTS` scenario and, when
/// [`CONTROL_DIR_ENV`] is set, the control watcher (a detached thread that
/// ends with the process).
pub struct RoleFailpoints {
    _scenario: fail::FailScenario<'static>,
}

/// [`setup`] for `role` of `region`, plus the watcher of its control file
/// when [`CONTROL_DIR_ENV`] is set (a warning if the build has no points).
pub fn setup_role(region: &str, role: &str) -> RoleFailpoints {
    let scenario = setup();
    if let Some(dir) = std::env::var_os(CONTROL_DIR_ENV) {
        if !fail::has_failpoints() {
            tracing::warn!(
                "{CONTROL_DIR_ENV} is set but this build has no crash points \
                 (build region-core with --features failpoints)"
            );
        }
        let control = Control::new(std::path::Path::new(&dir), region, role);
        let spawned = std::thread::Builder::new()
            .name("failpoint-control".into())
            .spawn(move || {
                loop {
                    control.poll();
                    std::thread::sleep(CONTROL_POLL);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch the crash point control file");
        }
    }
    RoleFailpoints {
        _scenario: scenario,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_file_arms_its_points_once_and_is_deleted() {
        let dir = std::env::temp_dir().join(format!("cb-failpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let control = Control::new(&dir, "us-east", "relay");
        assert!(control.poll().is_empty(), "no file, nothing armed");
        // A point of this test's own: the registry is shared by every test
        // of the process.
        const POINT: &str = "control-test-point";
        std::fs::write(&control.file, format!("{POINT}=1*return(error)\n")).unwrap();
        assert_eq!(control.poll(), vec![POINT.to_string()]);
        assert!(!control.file.exists(), "the file is consumed");
        assert_eq!(crash_point(POINT), Err(Crashed(POINT)));
        assert_eq!(crash_point(POINT), Ok(()), "once only");
        fail::remove(POINT);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
