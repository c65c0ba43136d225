//! Authoritative DNS for the origin zone: `origin.{region}.{zone}` → the
//! addresses of that region's healthy api instances.
//!
//! Rooms: [`zone`] answers one request from the current answer set (pure,
//! no I/O, what the fuzz target drives); [`health`] keeps that answer set up
//! to date from `/healthz` checks; [`server`] moves bytes over UDP and TCP;
//! [`config`] turns flags or a topology into instances; [`bench`] measures.
//! Wire format and message model come from `hickory-proto`.

pub mod bench;
pub mod config;
pub mod health;
pub mod server;
pub mod zone;

pub use config::{DnsConfig, Instance};
pub use zone::{Transport, Zone};
