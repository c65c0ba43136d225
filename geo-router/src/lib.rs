//! Which served city a visitor is in, and which origin serves a region.
//!
//! The library half (catalog, served cities, placement rule, compact-database
//! reader, IPv4 range table, host names) has no async runtime and builds for
//! `wasm32-unknown-unknown`, because the edge Worker links it. The `server`
//! feature (on by default) adds what only runs on a host: the compiler that
//! turns a full GeoIP database into the compact one, the authoritative DNS
//! for the origin zone, and the benchmarks; the `geo-router` binary drives them.
//!
//! ```
//! use geo_router::{PlacementRule, ServedCities, ServedCity, Visitor};
//!
//! let served = ServedCities::new([ServedCity::new("paris", "FR", 48.853, 2.349)?])?;
//! let visitor = Visitor { country: Some("FR"), lat: 48.80, lon: 2.13 }; // Versailles
//! let placement = PlacementRule::default().place(&served, visitor);
//! assert_eq!(placement.map(|p| p.city), Some("paris"));
//! # Ok::<(), geo_router::GeoError>(())
//! ```

pub mod address;
pub mod catalog;
pub mod compact;
pub mod distance;
pub mod error;
pub mod host;
pub mod placement;
pub mod range_table;
pub mod served;
pub mod topology;

#[cfg(feature = "server")]
pub mod bench;
#[cfg(feature = "server")]
pub mod compile;
#[cfg(feature = "server")]
pub mod dns;
#[cfg(feature = "server")]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod source;

pub use address::public_address;
pub use catalog::{Catalog, City};
pub use compact::{CompactRecord, Locator};
pub use error::{GeoError, Result};
pub use host::{SiteHost, city_host, parse_host};
pub use placement::{How, Placement, PlacementRule, Visitor};
pub use range_table::RangeTable;
pub use served::{ServedCities, ServedCity};
pub use topology::Topology;
