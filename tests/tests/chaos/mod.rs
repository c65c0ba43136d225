//! The parts of the chaos test (`serial_chaos.rs`): signed api requests,
//! the load and its ledger, the faults, reading the stack back, the checks.

pub mod api;
pub mod check;
pub mod faults;
pub mod load;
pub mod observe;
