//! The region origin of cityboard: schema, shard routing with fences,
//! batch apply with outbox, replica reads with read-your-writes.

pub mod apply;
pub mod catalog;
pub mod clock;
pub mod db;
pub mod lsn;
pub mod migrate;
pub mod model;
pub mod token;
