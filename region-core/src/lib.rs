//! The region origin of cityboard: schema, shard routing with fences,
//! batch apply with outbox, replica reads with read-your-writes.

pub mod apply;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod db;
pub mod error;
pub mod http;
pub mod janitor;
pub mod local_cache;
pub mod locale;
pub mod lsn;
pub mod migrate;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod setup;
pub mod stack;
pub mod store;
pub mod token;
