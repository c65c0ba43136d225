//! The region origin of cityboard: schema, shard routing with fences,
//! batch apply with outbox, replica reads with read-your-writes.
//!
//! Rooms: `roles` (one per process role, `http` being the api role's HTTP
//! layer) meet only on the `bus`; every other module is the core the roles
//! share, and imports no role, no `http` and no `bus`.

pub mod apply;
pub mod archive;
pub mod auth;
pub mod backoff;
pub mod bus;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod cursor;
pub mod db;
pub mod http;
pub mod lazy_redis;
pub mod limits;
pub mod locale;
pub mod lsn;
pub mod media;
pub mod migrate;
pub mod model;
pub mod object_location;
pub mod privileges;
pub mod redact;
pub mod render;
pub mod roles;
pub mod stack;
pub mod store;
pub mod token;
pub mod trail;
