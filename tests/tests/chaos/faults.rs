//! The faults the chaos test injects into its running stack, one at a time:
//! a crash point armed in one role of one region (the role aborts exactly
//! there), a SIGKILL of one role at a random moment, a SIGKILL of the
//! broker, and a SIGKILL of a publisher followed by a batch of old events
//! produced again into its region's events topic (what a rebalance or a
//! producer's retry can deliver twice). The supervisor restarts whatever
//! died; the next fault waits for that.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cityboard_tests::{Health, state};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The control directory variable of region-core's crash points
/// (`region_core::bus::failpoint::CONTROL_DIR_ENV`; this crate does
/// not build region-core).
pub const CONTROL_DIR_ENV: &str = "CITYBOARD_FAILPOINT_DIR";

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Arm crash point `point` of `role`: it aborts the process when reached.
    Crash {
        role: &'static str,
        point: &'static str,
    },
    /// SIGKILL `role`.
    Kill { role: &'static str },
    /// SIGKILL the broker.
    Broker,
    /// SIGKILL the publisher, then produce the oldest events of its region
    /// again: whatever they say, they must not bring back a deleted post
    /// or an older page.
    Replay,
}

/// How many old events the replay fault produces again, at most.
const REPLAYED: usize = 300;

/// Every fault the test injects once (more when a try had nothing in flight).
pub const FAULTS: &[Fault] = &[
    Fault::Crash {
        role: "api",
        point: "api-after-produce",
    },
    Fault::Crash {
        role: "writer",
        point: "writer-after-commit",
    },
    Fault::Crash {
        role: "relay",
        point: "relay-after-produce",
    },
    Fault::Crash {
        role: "publisher",
        point: "publisher-after-kv-write",
    },
    Fault::Kill { role: "api" },
    Fault::Kill { role: "writer" },
    Fault::Kill { role: "relay" },
    Fault::Kill { role: "publisher" },
    Fault::Kill { role: "janitor" },
    Fault::Broker,
    Fault::Replay,
];

impl Fault {
    /// The component it hits in `region`.
    pub fn component(&self, region: &str) -> String {
        match self {
            Fault::Crash { role, .. } | Fault::Kill { role } => format!("{region}/{role}"),
            Fault::Broker => "broker".into(),
            Fault::Replay => format!("{region}/publisher"),
        }
    }

    /// How the report names it.
    pub fn label(&self, region: &str) -> String {
        match self {
            Fault::Crash { point, .. } => format!("{region} crash point {point}"),
            Fault::Kill { role } => format!("{region}/{role} SIGKILL"),
            Fault::Broker => "broker SIGKILL (restart)".into(),
            Fault::Replay => format!("{region}/publisher SIGKILL, old events replayed"),
        }
    }
}

/// What one try of a fault did.
#[derive(Debug)]
pub enum Struck {
    /// The process died at this moment.
    At(Instant),
    /// The crash point was armed but not reached in time (disarmed again).
    NotReached,
}

/// How long an armed crash point may wait for the traffic that reaches it.
const REACH_LIMIT: Duration = Duration::from_secs(30);

/// Injects `fault` into `region` of the stack in `home` once and waits
/// until the supervisor has the component healthy again.
pub async fn strike(home: &Path, control_dir: &Path, fault: Fault, region: &str) -> Struck {
    let name = fault.component(region);
    let before = state(home)
        .component(&name)
        .unwrap_or_else(|| panic!("no component {name}"))
        .clone();
    let process = before
        .process
        .unwrap_or_else(|| panic!("{name} does not run"));
    let at = match fault {
        Fault::Crash { role, point } => {
            let file = control_file(control_dir, region, role);
            arm(&file, &format!("{point}=1*return"));
            let deadline = Instant::now() + REACH_LIMIT;
            while process.is_alive() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if process.is_alive() {
                // Consumed or not, it must not fire later by surprise.
                arm(&file, &format!("{point}=off"));
                return Struck::NotReached;
            }
            Instant::now()
        }
        Fault::Kill { .. } | Fault::Broker => {
            let at = Instant::now();
            kill(Pid::from_raw(process.pid), Signal::SIGKILL).expect("SIGKILL");
            at
        }
        Fault::Replay => {
            let at = Instant::now();
            kill(Pid::from_raw(process.pid), Signal::SIGKILL).expect("SIGKILL");
            let (broker, topic) = (state(home).broker, format!("{region}.events"));
            let n = tokio::task::spawn_blocking(move || {
                cityboard_tests::replay::replay_oldest(&broker, &topic, REPLAYED)
            })
            .await
            .expect("the replay");
            eprintln!("replayed {n} old events of {region}");
            at
        }
    };
    cityboard_test_support::eventually(
        &format!("{name} restarted and healthy"),
        Duration::from_secs(90),
        || async {
            let st = state(home);
            let c = st.component(&name)?;
            (c.health == Health::Healthy && c.restarts > before.restarts).then_some(())
        },
    )
    .await;
    Struck::At(at)
}

fn control_file(dir: &Path, region: &str, role: &str) -> PathBuf {
    dir.join(format!("{region}-{role}"))
}

/// Writes a control file whole: under another name, then renamed into
/// place, so the role never reads half of it.
fn arm(file: &Path, config: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, config).expect("write the control file");
    std::fs::rename(&tmp, file).expect("place the control file");
}
