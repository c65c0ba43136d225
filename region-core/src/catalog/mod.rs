//! The region catalog: topology (shards, shard map) and node leases.

pub mod accounts;
pub mod lease;
pub mod map;
pub mod seed;

pub use lease::NodeLease;
pub use map::{CityRoute, CityState, ShardMap, ShardMapCache};
pub use seed::{RegionTopology, SeedReport, ShardTopology, seed};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("region number {0} is out of range (0..=15)")]
    RegionNumber(u16),
    #[error(
        "this catalog belongs to region {found_name} (number {found_number}), \
         not {name} (number {number})"
    )]
    WrongRegion {
        name: String,
        number: u16,
        found_name: String,
        found_number: i16,
    },
    #[error("catalog query")]
    Db(#[from] sqlx::Error),
    #[error("shard {shard}: {source}")]
    Shard {
        shard: String,
        #[source]
        source: sqlx::Error,
    },
}
