//! The Worker's configuration as its deployer writes it: the orchestrator
//! (and `wrangler.toml`) serialise these, the Worker parses them, so the
//! two sides of a binding are one type.

use serde::{Deserialize, Serialize};

/// One served city, an entry of the `CITIES` binding (a JSON list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CityBinding {
    /// DNS label: the city's host is `{slug}.{apex}`.
    pub slug: String,
    /// Display name (the picker shows it).
    pub name: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Region whose origin serves the city unless `route:{city}` in KV says
    /// otherwise (a city moved between regions).
    pub region: String,
}
