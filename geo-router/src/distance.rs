//! Great-circle distance on a spherical Earth.
//!
//! A sphere is accurate to about 0.5 % against the ellipsoid, far finer than
//! the city-level precision of any GeoIP database, and it is cheap enough to
//! evaluate for every network of a source database.

/// Mean Earth radius (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Kilometres per degree of latitude along a meridian. The great-circle
/// distance between two points is never less than this times their latitude
/// difference, which makes a latitude band an exact pre-filter.
pub const KM_PER_DEGREE: f64 = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;

/// Haversine distance in kilometres between two points given in degrees.
///
/// The haversine form stays accurate for the short distances that matter here
/// (a few hundred kilometres), where the spherical law of cosines loses digits.
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let h = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Whether a coordinate pair is a real place: finite, latitude in [-90, 90],
/// longitude in [-180, 180].
pub fn valid_coordinates(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        // London – Paris is about 344 km, New York – Boston about 306 km.
        let lp = great_circle_km(51.50853, -0.12574, 48.85341, 2.3488);
        assert!((lp - 343.5).abs() < 2.0, "{lp}");
        let nb = great_circle_km(40.71427, -74.00597, 42.35843, -71.05977);
        assert!((nb - 306.0).abs() < 2.0, "{nb}");
        assert_eq!(great_circle_km(10.0, 20.0, 10.0, 20.0), 0.0);
    }

    #[test]
    fn antipodes_and_date_line() {
        let half = great_circle_km(0.0, 0.0, 0.0, 180.0);
        assert!((half - EARTH_RADIUS_KM * std::f64::consts::PI).abs() < 1e-6);
        let across = great_circle_km(0.0, 179.9, 0.0, -179.9);
        assert!(across < 25.0, "{across}");
    }

    #[test]
    fn coordinate_validation() {
        assert!(valid_coordinates(90.0, -180.0));
        assert!(!valid_coordinates(90.1, 0.0));
        assert!(!valid_coordinates(0.0, 180.5));
        assert!(!valid_coordinates(f64::NAN, 0.0));
        assert!(!valid_coordinates(0.0, f64::INFINITY));
    }
}
