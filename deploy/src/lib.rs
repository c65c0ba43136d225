//! The cityboard orchestrator: reads a topology file, starts the stack it
//! describes as real processes under a supervisor, and answers questions
//! about it (`status`, `logs`, `psql`). Its benchmarks (`deploy/bench`)
//! and the edge's KV service (`deploy/edge-kv`) are crates of their own.
//!
//! The library part exists so that the scenario tests can read the same
//! topology and state types the binary writes.

pub mod arrangement;
pub mod broker;
pub mod capacity;
pub mod commands;
pub mod components;
pub mod edge;
pub mod edge_kv;
pub mod geo_dns;
pub mod home;
pub mod http;
pub mod postgres;
pub mod process;
pub mod redis_server;
pub mod region_api;
pub mod render;
pub mod secrets;
pub mod state;
pub mod supervisor;
pub mod topology;

use std::path::Path;

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
