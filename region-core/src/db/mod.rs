//! Routing every query to its city's shard, and replica choice with
//! read-your-writes.

pub mod lag;
pub mod photos;
pub mod pool;
pub mod queries;
pub mod read;
pub mod router;
pub mod shard;

pub use read::{Node, ReadError, ReadQuery, Served};
pub use router::{RouteError, Router};
pub use shard::{ReadConfig, ShardPools};
