//! Helpers for the scenario tests: find the shared stack `deploy/test`
//! started, or start a small one of a test's own, and drive it from outside
//! as an operator would (the `cityboard` binary, the state file, the ports).
//!
//! The stack's own types ([`StackState`], [`ProcessId`], [`Home`]) come from
//! the orchestrator crate, so a test reads the state file exactly as
//! `cityboard status` does.

pub mod arch;
pub mod browser;
pub mod edge;
pub mod replay;
pub mod stack_edge;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use cityboard_deploy::home::Home;
pub use cityboard_deploy::process::ProcessId;
pub use cityboard_deploy::state::{ComponentState, Health, Phase, StackState};
use cityboard_deploy::topology::{SmallRegion, small_topology_text};

/// The repository root (tests run with the crate directory as cwd).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// The `cityboard` binary under test: `$CITYBOARD_BIN` (set by deploy/test),
/// else the debug build.
pub fn cityboard_bin() -> PathBuf {
    std::env::var_os("CITYBOARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/cityboard"))
}

/// The `shard-tool` binary under test: the debug build beside `cityboard`
/// (deploy/test builds every binary of the workspace first).
pub fn shard_tool_bin() -> PathBuf {
    cityboard_bin().with_file_name("shard-tool")
}

/// The `region-core` binary under test, beside `cityboard`.
pub fn region_core_bin() -> PathBuf {
    cityboard_bin().with_file_name("region-core")
}

/// Runs `cityboard --home HOME ARGS…` and returns its output. Before an
/// `up`, the stack gets the shared stack's Postgres superuser password
/// ([`share_pg_admin`]).
pub fn cityboard(home: &Path, args: &[&str]) -> Output {
    if args.first() == Some(&"up") {
        share_pg_admin(home);
    }
    Command::new(cityboard_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cityboard_bin().display()))
}

/// Gives the stack about to be made in `home` the Postgres superuser
/// password of the shared stack (`$CITYBOARD_HOME`), when there is one:
/// deploy/test exports that stack's libpq environment (`PGUSER`,
/// `PGPASSFILE`) to every test, so a test's direct SQL reaches its own
/// stack's instances as well.
pub fn share_pg_admin(home: &Path) {
    let Some(shared) = std::env::var_os("CITYBOARD_HOME").map(PathBuf::from) else {
        return;
    };
    let from = Home::new(&shared).expect("shared home").secrets_dir();
    if !from
        .join(cityboard_deploy::postgres::password_file(
            cityboard_deploy::postgres::ADMIN,
        ))
        .exists()
    {
        return;
    }
    let home = Home::new(home).expect("stack home");
    cityboard_deploy::postgres::share_admin_password(&from, &home)
        .unwrap_or_else(|e| panic!("sharing the Postgres superuser password: {e:#}"));
}

/// Text of both streams, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The home of the shared stack: `$CITYBOARD_HOME`. A test that needs it
/// fails (never skips) when it is not set.
pub fn shared_home() -> PathBuf {
    std::env::var_os("CITYBOARD_HOME")
        .map(PathBuf::from)
        .expect(
            "CITYBOARD_HOME is not set: these tests run against a stack; \
         run them through deploy/test (or `cityboard up` and export CITYBOARD_HOME)",
        )
}

/// The state file of the stack in `home`.
pub fn state(home: &Path) -> StackState {
    let home = Home::new(home).expect("stack home");
    StackState::read(&home.state_file()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A connection pool of one to `url`.
pub async fn pg(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A small stack of a test's own (one region, one shard, one replica) in a
/// scratch home under the repository, on its own ports. Stopped and purged
/// when dropped, so a failing test leaves nothing running.
pub struct OwnStack {
    /// The stack's home directory.
    pub home: PathBuf,
    /// Its topology file.
    pub topology: PathBuf,
}

impl OwnStack {
    /// Writes the small topology for `name` on `port_base` (unique per test)
    /// without starting anything.
    pub fn prepare(name: &str, port_base: u16) -> OwnStack {
        let root = repo_root().join(".cityboard-scratch").join(name);
        let home = root.join("home");
        if home.exists() {
            // Left by an earlier run that was killed: stop it first.
            let _ = cityboard(&home, &["down", "--purge"]);
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch dir");
        let topology = root.join("topology.toml");
        std::fs::write(&topology, small_topology(port_base)).expect("topology");
        OwnStack { home, topology }
    }

    /// Prepares and starts it; panics with `up`'s output if that fails.
    pub fn start(name: &str, port_base: u16) -> OwnStack {
        let stack = OwnStack::prepare(name, port_base);
        let out = stack.up();
        assert!(out.status.success(), "up failed:\n{}", output_text(&out));
        stack
    }

    /// `cityboard up` on it.
    pub fn up(&self) -> Output {
        cityboard(
            &self.home,
            &[
                "up",
                "--topology",
                self.topology.to_str().expect("utf-8 path"),
            ],
        )
    }

    /// Its state file.
    pub fn state(&self) -> StackState {
        state(&self.home)
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        let _ = cityboard(&self.home, &["down", "--purge"]);
    }
}

/// One region, one shard with one replica, two cities.
pub fn small_topology(port_base: u16) -> String {
    let solo = SmallRegion {
        name: "solo",
        replicas: 1,
        cities: &[
            ("newyork", "New York", "US", 40.7128, -74.006),
            ("boston", "Boston", "US", 42.3601, -71.0589),
        ],
    };
    small_topology_text(port_base, 1, &[solo])
}

/// An edge the tests send requests to: the Worker under workerd that a
/// test starts ([`edge::EdgeRuntime`]) or the shared stack's
/// ([`stack_edge::StackEdge`]).
pub trait EdgeRequests {
    /// The edge's port on 127.0.0.1.
    fn port(&self) -> u16;

    /// The `Host` header for `host` as the caller names it.
    fn host_header(&self, host: &str) -> String;

    /// What a failure message adds after the error (the edge's logs), if
    /// anything.
    fn failure_context(&self) -> String;

    /// `METHOD path` with the `Host` of `host`, then `headers`; panics when
    /// the edge does not answer.
    // Tests only, awaited where they are called: no caller needs to name
    // the future's bounds, which is what the lint is about.
    #[allow(async_fn_in_trait)]
    async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> cityboard_deploy::http::Response {
        let host_header = self.host_header(host);
        cityboard_deploy::http::request_to_host(
            self.port(),
            method,
            &host_header,
            path,
            headers,
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {host}{path}: {e:#}{}", self.failure_context()))
    }
}

/// The live processes the stack's state file names.
pub fn component_processes(state: &StackState) -> Vec<(String, ProcessId)> {
    state
        .components
        .iter()
        .filter_map(|c| c.process.map(|p| (c.name.clone(), p)))
        .collect()
}

/// The `cb_device` value (the signed cookie of a browser that logged in)
/// among `r`'s cookies.
pub fn device_cookie(r: &cityboard_deploy::http::Response) -> Option<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .find_map(|(_, v)| v.strip_prefix("cb_device="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}
