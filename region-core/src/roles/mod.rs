//! One module per process role (`region-core <role>`): its flags, its
//! wiring, its metrics and its start-up. Roles meet only on the `bus`: no
//! role imports another; `common` is the prelude they all share.

pub mod api;
pub mod common;
pub mod janitor;
pub mod publisher;
pub mod relay;
pub mod setup;
pub mod writer;
