//! The placement rule: which served city a located visitor belongs to.
//!
//! Among the served cities within `max_km` great-circle distance of the
//! visitor's location, the nearest one in the visitor's own country wins;
//! without one, the nearest of any country; with none in range the visitor is
//! unknown and the edge shows the city picker. Own country first because a
//! border is also a language and a currency: someone in Strasbourg is better
//! served by a French city 400 km away than by a German one 100 km away, as
//! long as the French one is within the limit.
//!
//! Ties (equal distances) go to the smaller slug so that the compiler, the
//! locator and any re-implementation agree byte for byte.

use crate::distance::{great_circle_km, valid_coordinates};
use crate::served::{ServedCities, ServedCity};

/// Default maximum distance between a visitor and their city.
pub const DEFAULT_MAX_KM: f64 = 300.0;
/// Default radius within which a placement counts as [`How::Direct`].
pub const DEFAULT_DIRECT_KM: f64 = 25.0;

/// How a visitor was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum How {
    /// The visitor is in the city itself (within the direct radius).
    Direct,
    /// The visitor is elsewhere, and this is the best city within the limit.
    Nearest,
}

impl How {
    /// One-letter code stored in the compact database.
    pub fn code(self) -> &'static str {
        match self {
            How::Direct => "d",
            How::Nearest => "n",
        }
    }

    /// Inverse of [`How::code`].
    pub fn from_code(code: &str) -> Option<How> {
        match code {
            "d" => Some(How::Direct),
            "n" => Some(How::Nearest),
            _ => None,
        }
    }
}

/// Where a visitor is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placement<'a> {
    /// Slug of the served city.
    pub city: &'a str,
    /// Whether the visitor is in the city or was assigned to the nearest one.
    pub how: How,
    /// Great-circle distance from the visitor's location to the city, in whole
    /// kilometres. Read from a compact database it is rounded to that
    /// database's distance resolution (see [`crate::compact`]).
    pub distance_km: u32,
}

/// Where the source database puts a visitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visitor<'a> {
    /// ISO 3166-1 alpha-2 country code, if known (any case).
    pub country: Option<&'a str>,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// The rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementRule {
    /// Cities farther than this are never chosen.
    pub max_km: f64,
    /// Within this radius the placement is [`How::Direct`].
    pub direct_km: f64,
}

impl Default for PlacementRule {
    fn default() -> Self {
        PlacementRule {
            max_km: DEFAULT_MAX_KM,
            direct_km: DEFAULT_DIRECT_KM,
        }
    }
}

impl PlacementRule {
    /// A rule with the given limit and the default direct radius.
    pub fn with_max_km(max_km: f64) -> Self {
        PlacementRule {
            max_km,
            ..Self::default()
        }
    }

    /// Applies the rule. `None` when the location is not a valid coordinate
    /// pair or no served city is within the limit.
    pub fn place<'a>(
        &self,
        served: &'a ServedCities,
        visitor: Visitor<'_>,
    ) -> Option<Placement<'a>> {
        if !valid_coordinates(visitor.lat, visitor.lon) || self.max_km.is_nan() || self.max_km < 0.0
        {
            return None;
        }
        let mut own: Option<(f64, &'a ServedCity)> = None;
        let mut any: Option<(f64, &'a ServedCity)> = None;
        for city in served.latitude_band(visitor.lat, self.max_km) {
            let d = great_circle_km(visitor.lat, visitor.lon, city.lat, city.lon);
            if d > self.max_km {
                continue;
            }
            let better = |best: &Option<(f64, &ServedCity)>| match best {
                None => true,
                Some((bd, bc)) => d < *bd || (d == *bd && city.slug < bc.slug),
            };
            if better(&any) {
                any = Some((d, city));
            }
            let same_country = visitor
                .country
                .is_some_and(|c| c.eq_ignore_ascii_case(&city.country));
            if same_country && better(&own) {
                own = Some((d, city));
            }
        }
        let (d, city) = own.or(any)?;
        Some(Placement {
            city: &city.slug,
            how: if d <= self.direct_km {
                How::Direct
            } else {
                How::Nearest
            },
            distance_km: round_km(d),
        })
    }
}

/// Rounds a non-negative distance to whole kilometres, saturating.
pub(crate) fn round_km(d: f64) -> u32 {
    // `as` saturates for floats and maps NaN to 0, which is what we want here.
    d.round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::served::ServedCity;

    fn served() -> ServedCities {
        ServedCities::new([
            ServedCity::new("strasbourg", "FR", 48.5734, 7.7521).expect("valid"),
            ServedCity::new("karlsruhe", "DE", 49.0069, 8.4037).expect("valid"),
            ServedCity::new("paris", "FR", 48.85341, 2.3488).expect("valid"),
            ServedCity::new("newyork", "US", 40.71427, -74.00597).expect("valid"),
        ])
        .expect("valid set")
    }

    fn at(country: &'static str, lat: f64, lon: f64) -> Visitor<'static> {
        Visitor {
            country: Some(country),
            lat,
            lon,
        }
    }

    #[test]
    fn direct_in_the_city() {
        let s = served();
        let p = PlacementRule::default()
            .place(&s, at("US", 40.72, -74.0))
            .expect("placed");
        assert_eq!((p.city, p.how), ("newyork", How::Direct));
        assert_eq!(p.distance_km, 1);
    }

    #[test]
    fn own_country_beats_a_nearer_foreign_city() {
        let s = served();
        // Kehl (DE) is across the Rhine from Strasbourg: Karlsruhe (DE) is
        // farther than Strasbourg but in the visitor's country.
        let p = PlacementRule::default()
            .place(&s, at("DE", 48.5667, 7.8167))
            .expect("placed");
        assert_eq!((p.city, p.how), ("karlsruhe", How::Nearest));
        // A Swiss visitor has no own-country city: the nearest wins.
        let p = PlacementRule::default()
            .place(&s, at("ch", 47.56, 7.59))
            .expect("placed");
        assert_eq!(p.city, "strasbourg");
        // Unknown country: the nearest too.
        let v = Visitor {
            country: None,
            ..at("XX", 48.5667, 7.8167)
        };
        assert_eq!(
            PlacementRule::default().place(&s, v).map(|p| p.city),
            Some("strasbourg")
        );
    }

    #[test]
    fn nothing_in_range_is_unknown() {
        let s = served();
        assert_eq!(
            PlacementRule::default().place(&s, at("JP", 35.68, 139.69)),
            None
        );
        // Boston is ~306 km from New York: out of range at 300, in at 310.
        assert_eq!(
            PlacementRule::default().place(&s, at("US", 42.35843, -71.05977)),
            None
        );
        let p = PlacementRule::with_max_km(310.0).place(&s, at("US", 42.35843, -71.05977));
        assert_eq!(p.map(|p| (p.city, p.how)), Some(("newyork", How::Nearest)));
    }

    #[test]
    fn bad_coordinates_are_unknown() {
        let s = served();
        for (lat, lon) in [
            (f64::NAN, 0.0),
            (95.0, 0.0),
            (0.0, 200.0),
            (f64::INFINITY, 1.0),
        ] {
            assert_eq!(PlacementRule::default().place(&s, at("US", lat, lon)), None);
        }
        let rule = PlacementRule::with_max_km(f64::NAN);
        assert_eq!(rule.place(&s, at("US", 40.72, -74.0)), None);
    }

    #[test]
    fn ties_go_to_the_smaller_slug() {
        let s = ServedCities::new([
            ServedCity::new("bbb", "US", 0.0, 1.0).expect("valid"),
            ServedCity::new("aaa", "US", 0.0, -1.0).expect("valid"),
        ])
        .expect("valid");
        let p = PlacementRule::default()
            .place(&s, at("US", 0.0, 0.0))
            .expect("placed");
        assert_eq!(p.city, "aaa");
    }
}
