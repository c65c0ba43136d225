//! The city catalog: every city cityboard knows by name, served or not.
//!
//! The catalog is a tab-separated file generated from GeoNames
//! (`tools/gen_catalog.py` writes `data/cities.tsv`). It is checked in so that a
//! build never needs the network and every machine sees the same slugs. The
//! catalog answers "what is this city" (name, country, region, time zone);
//! which cities are *served* comes from the topology (see [`crate::served`]).

use std::collections::HashMap;

use crate::distance::valid_coordinates;
use crate::error::{GeoError, Result};
use crate::host::valid_slug;

/// The checked-in catalog, compiled into the binary. Referencing it costs
/// about 3 MB of binary size, so wasm builds that only need the compact
/// database should not call [`Catalog::builtin`].
pub const BUILTIN_TSV: &str = include_str!("../data/cities.tsv");

/// One city of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    /// DNS label used as the city's host name (`{slug}.{apex}`); unique.
    pub slug: String,
    /// Display name (GeoNames' name, UTF-8).
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// First-level administrative division (state, province, region): the
    /// name where GeoNames provides one (US states), otherwise its code.
    pub admin1: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Population as recorded by GeoNames.
    pub population: u64,
    /// IANA time zone name, e.g. `America/New_York`.
    pub time_zone: String,
}

/// The whole catalog with an index by slug.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    cities: Vec<City>,
    by_slug: HashMap<String, usize>,
}

/// Number of tab-separated columns of a catalog row.
const COLUMNS: usize = 8;

impl Catalog {
    /// Parses catalog text: one city per line, columns `slug name country
    /// admin1 lat lon population time_zone` separated by tabs. Empty lines and
    /// lines starting with `#` are skipped. Any bad row is an error naming its
    /// line, because a silently dropped city would be an unroutable city.
    pub fn parse(text: &str) -> Result<Self> {
        let mut catalog = Catalog::default();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let city = parse_row(line).map_err(|reason| GeoError::Catalog {
                line: line_no,
                reason,
            })?;
            if catalog.by_slug.contains_key(&city.slug) {
                return Err(GeoError::Catalog {
                    line: line_no,
                    reason: format!("duplicate slug {:?}", city.slug),
                });
            }
            catalog
                .by_slug
                .insert(city.slug.clone(), catalog.cities.len());
            catalog.cities.push(city);
        }
        Ok(catalog)
    }

    /// The catalog checked in with this crate.
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN_TSV)
    }

    /// All cities, in file order (largest population first for the generated file).
    pub fn cities(&self) -> &[City] {
        &self.cities
    }

    /// The city with this slug (case-insensitive), if any.
    pub fn get(&self, slug: &str) -> Option<&City> {
        let slug = slug.to_ascii_lowercase();
        self.by_slug.get(&slug).map(|&i| &self.cities[i])
    }

    /// Number of cities.
    pub fn len(&self) -> usize {
        self.cities.len()
    }

    /// Whether the catalog has no city.
    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }
}

fn parse_row(line: &str) -> std::result::Result<City, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != COLUMNS {
        return Err(format!(
            "expected {COLUMNS} tab-separated columns, found {}",
            fields.len()
        ));
    }
    let slug = fields[0].to_string();
    if !valid_slug(&slug) {
        return Err(format!("slug {slug:?} is not a lower-case DNS label"));
    }
    let name = fields[1].to_string();
    if name.is_empty() {
        return Err("empty name".into());
    }
    let country = fields[2].to_string();
    if !valid_country(&country) {
        return Err(format!(
            "country {country:?} is not an ISO 3166-1 alpha-2 code"
        ));
    }
    let lat: f64 = fields[4]
        .parse()
        .map_err(|_| format!("latitude {:?} is not a number", fields[4]))?;
    let lon: f64 = fields[5]
        .parse()
        .map_err(|_| format!("longitude {:?} is not a number", fields[5]))?;
    if !valid_coordinates(lat, lon) {
        return Err(format!("coordinates ({lat}, {lon}) are out of range"));
    }
    let population: u64 = fields[6]
        .parse()
        .map_err(|_| format!("population {:?} is not a whole number", fields[6]))?;
    Ok(City {
        slug,
        name,
        country,
        admin1: fields[3].to_string(),
        lat,
        lon,
        population,
        time_zone: fields[7].to_string(),
    })
}

/// Whether `code` looks like an ISO 3166-1 alpha-2 code (two ASCII upper-case letters).
pub fn valid_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "# slug\tname\tcountry\tadmin1\tlat\tlon\tpopulation\ttime_zone\n\
        newyork\tNew York City\tUS\tNew York\t40.71427\t-74.00597\t8804190\tAmerica/New_York\n\
        \n\
        paris\tParis\tFR\t11\t48.85341\t2.3488\t2138551\tEurope/Paris\n";

    #[test]
    fn parses_rows_and_indexes_slugs() {
        let catalog = Catalog::parse(TWO).expect("parses");
        assert_eq!(catalog.len(), 2);
        let ny = catalog.get("NewYork").expect("case-insensitive");
        assert_eq!(ny.country, "US");
        assert_eq!(ny.population, 8_804_190);
        assert_eq!(ny.time_zone, "America/New_York");
        assert!(catalog.get("berlin").is_none());
    }

    #[test]
    fn bad_coordinates_name_the_line() {
        let text = "x\tX\tUS\t\t91.0\t0\t1\tUTC\n";
        let err = Catalog::parse(text).expect_err("latitude 91");
        assert!(err.to_string().contains("line 1"), "{err}");
        let text = "x\tX\tUS\t\tNaN\t0\t1\tUTC\n";
        assert!(Catalog::parse(text).is_err());
        let text = "x\tX\tUS\t\tabc\t0\t1\tUTC\n";
        assert!(Catalog::parse(text).is_err());
    }

    #[test]
    fn rejects_bad_rows() {
        for row in [
            "x\tX\tUS\t\t1\t2\t3\n",                                // missing column
            "X Y\tX\tUS\t\t1\t2\t3\tUTC\n",                         // slug not a label
            "x\tX\tusa\t\t1\t2\t3\tUTC\n",                          // country
            "x\t\tUS\t\t1\t2\t3\tUTC\n",                            // empty name
            "x\tX\tUS\t\t1\t2\t-3\tUTC\n",                          // population
            "x\tX\tUS\t\t1\t2\t3\tUTC\nx\tX\tUS\t\t1\t2\t3\tUTC\n", // duplicate
        ] {
            assert!(Catalog::parse(row).is_err(), "{row:?}");
        }
    }

    #[test]
    fn builtin_catalog_loads() {
        let catalog = Catalog::builtin().expect("checked-in catalog is valid");
        assert!(catalog.len() > 10_000, "{}", catalog.len());
        let london = catalog.get("london").expect("london");
        assert_eq!(london.country, "GB");
    }
}
