//! The served cities: the ones a visitor can be sent to.
//!
//! They come from the topology (or, for tests and what-if runs, from the
//! catalog). Cities are kept sorted by latitude so that the placement rule
//! looks only at a latitude band around the visitor: the great-circle distance
//! is never less than the latitude difference times [`KM_PER_DEGREE`], so the
//! band is an exact filter, not a heuristic.

use std::collections::HashSet;

use crate::catalog::{Catalog, valid_country};
use crate::distance::{KM_PER_DEGREE, valid_coordinates};
use crate::error::{GeoError, Result};
use crate::host::valid_slug;
use crate::topology::Topology;

/// A city that some region serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedCity {
    /// DNS label of the city.
    pub slug: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

impl ServedCity {
    /// A validated served city; the country is upper-cased.
    pub fn new(slug: &str, country: &str, lat: f64, lon: f64) -> Result<Self> {
        let bad = |reason: &str| GeoError::ServedCity {
            slug: slug.to_string(),
            reason: reason.to_string(),
        };
        if !valid_slug(slug) {
            return Err(bad("slug is not a lower-case DNS label"));
        }
        let country = country.to_ascii_uppercase();
        if !valid_country(&country) {
            return Err(bad("country is not an ISO 3166-1 alpha-2 code"));
        }
        if !valid_coordinates(lat, lon) {
            return Err(bad("coordinates out of range"));
        }
        Ok(ServedCity {
            slug: slug.to_string(),
            country,
            lat,
            lon,
        })
    }
}

/// The set of served cities, indexed for the placement rule.
#[derive(Debug, Clone, Default)]
pub struct ServedCities {
    /// Sorted by latitude, then slug.
    cities: Vec<ServedCity>,
}

impl ServedCities {
    /// Builds the set; a duplicate slug is an error (a city lives in exactly one shard).
    pub fn new(cities: impl IntoIterator<Item = ServedCity>) -> Result<Self> {
        let mut cities: Vec<ServedCity> = cities.into_iter().collect();
        let mut seen = HashSet::new();
        for city in &cities {
            if !seen.insert(city.slug.as_str()) {
                return Err(GeoError::ServedCity {
                    slug: city.slug.clone(),
                    reason: "served twice".into(),
                });
            }
        }
        cities.sort_by(|a, b| a.lat.total_cmp(&b.lat).then_with(|| a.slug.cmp(&b.slug)));
        Ok(ServedCities { cities })
    }

    /// The served cities of a topology.
    pub fn from_topology(topology: &Topology) -> Result<Self> {
        let cities = topology
            .cities()
            .map(|(_, c)| ServedCity::new(&c.slug, &c.country, c.lat, c.lon))
            .collect::<Result<Vec<_>>>()?;
        Self::new(cities)
    }

    /// Every catalog city with at least `min_population` people: the "serve
    /// every large city" what-if topology.
    pub fn from_catalog(catalog: &Catalog, min_population: u64) -> Result<Self> {
        let cities = catalog
            .cities()
            .iter()
            .filter(|c| c.population >= min_population)
            .map(|c| ServedCity::new(&c.slug, &c.country, c.lat, c.lon))
            .collect::<Result<Vec<_>>>()?;
        Self::new(cities)
    }

    /// All served cities, sorted by latitude.
    pub fn cities(&self) -> &[ServedCity] {
        &self.cities
    }

    /// Number of served cities.
    pub fn len(&self) -> usize {
        self.cities.len()
    }

    /// Whether no city is served.
    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }

    /// The cities whose latitude is within `km` of `lat` along a meridian:
    /// a superset of the cities within `km` great-circle distance.
    pub(crate) fn latitude_band(&self, lat: f64, km: f64) -> &[ServedCity] {
        // A hair of slack so that rounding in the division never drops a city
        // that is exactly at the limit.
        let degrees = km / KM_PER_DEGREE + 1e-9;
        let (lo, hi) = (lat - degrees, lat + degrees);
        let start = self.cities.partition_point(|c| c.lat < lo);
        let end = self.cities.partition_point(|c| c.lat <= hi);
        &self.cities[start..end.max(start)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_cities() {
        assert!(ServedCity::new("paris", "fr", 48.85, 2.35).is_ok_and(|c| c.country == "FR"));
        assert!(ServedCity::new("Paris", "FR", 48.85, 2.35).is_err());
        assert!(ServedCity::new("paris", "FRA", 48.85, 2.35).is_err());
        assert!(ServedCity::new("paris", "FR", 148.85, 2.35).is_err());
        assert!(ServedCity::new("paris", "FR", f64::NAN, 2.35).is_err());
    }

    #[test]
    fn rejects_duplicates() {
        let a = ServedCity::new("a", "US", 1.0, 1.0).expect("valid");
        assert!(ServedCities::new([a.clone(), a]).is_err());
    }

    #[test]
    fn band_keeps_cities_near_in_latitude() {
        let served = ServedCities::new([
            ServedCity::new("south", "US", 10.0, 0.0).expect("valid"),
            ServedCity::new("mid", "US", 12.0, 0.0).expect("valid"),
            ServedCity::new("north", "US", 14.0, 0.0).expect("valid"),
        ])
        .expect("valid set");
        let band: Vec<&str> = served
            .latitude_band(12.0, 200.0)
            .iter()
            .map(|c| c.slug.as_str())
            .collect();
        assert_eq!(band, ["mid"]);
        assert_eq!(served.latitude_band(12.0, 300.0).len(), 3);
        assert!(served.latitude_band(-60.0, 300.0).is_empty());
    }

    #[test]
    fn large_city_topology_from_catalog() {
        let catalog = Catalog::builtin().expect("catalog");
        let served = ServedCities::from_catalog(&catalog, 500_000).expect("served");
        assert!(served.len() > 300, "{}", served.len());
    }
}
