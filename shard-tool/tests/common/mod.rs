//! What the shard-tool tests on the shared stack share: where the stack
//! is, and shard-tool run as an operator runs it (the binary, its output,
//! its exit code).

use std::path::PathBuf;
use std::process::{Command, Output};

use region_core::stack::StackFile;
use serde_json::Value;

/// The shared stack's state file: `$CITYBOARD_HOME/state.json`. A test
/// that needs it fails (never skips) when it is not set.
pub fn state_path() -> PathBuf {
    let home = std::env::var_os("CITYBOARD_HOME").expect(
        "CITYBOARD_HOME is not set: these tests run against a stack; \
         run them through deploy/test (or `cityboard up` and export CITYBOARD_HOME)",
    );
    PathBuf::from(home).join("state.json")
}

/// The shared stack's description.
pub fn stack() -> StackFile {
    StackFile::read(&state_path()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs shard-tool with `args` and no stack in its environment (the
/// tests say which stack, so a developer's own variables do not leak in).
pub fn shard_tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shard-tool"))
        .args(args)
        .env_remove("CITYBOARD_HOME")
        .env_remove("CITYBOARD_STATE")
        .env_remove("CITYBOARD_CATALOG_URL")
        .env_remove("CITYBOARD_REGION")
        .env_remove("SHARD_TOOL_CRASH_AT")
        .env_remove("SHARD_TOOL_PAUSE_AT")
        .output()
        .expect("run shard-tool")
}

/// shard-tool `args` on the shared stack (`--state` its state file).
pub fn on_stack(args: &[&str]) -> Output {
    let state = state_path();
    let mut all = vec!["--state", state.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    shard_tool(&all)
}

/// Exit code and both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stdout's JSON lines; a line that is not JSON fails the test.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
