//! Local conventions of a city: its name, time zone and currency, and how a
//! price and a date read there.
//!
//! Everything comes from geo-router's built-in city catalog (GeoNames), so a
//! page of Paris shows `€` and Paris time without any per-city configuration:
//! the catalog gives the country and the IANA zone, a small table here maps the
//! country to its currency. The catalog (34 000 rows) is parsed once per
//! process, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A city's display name, time zone and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityLocale {
    /// The city's slug (its host label).
    pub slug: String,
    /// Display name from the catalog ("New York City", "Paris").
    pub name: String,
    /// IANA time zone in which the city's dates are shown.
    pub time_zone: Tz,
    /// ISO 4217 code of the city's currency, e.g. `EUR`.
    pub currency: &'static str,
}

/// What a page needs of a catalog city, kept by slug.
struct Entry {
    name: String,
    time_zone: Tz,
    currency: &'static str,
}

/// The catalog's cities by slug, parsed once. A catalog that fails to parse
/// (it is checked in and tested, so only a broken build) leaves the map empty:
/// pages then fall back to the slug, UTC and USD rather than failing.
fn catalog() -> &'static HashMap<String, Entry> {
    static CATALOG: OnceLock<HashMap<String, Entry>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let Ok(catalog) = geo_router::catalog::Catalog::builtin() else {
            tracing::error!("the built-in city catalog does not parse; cities show UTC and USD");
            return HashMap::new();
        };
        catalog
            .cities()
            .iter()
            .map(|c| {
                let entry = Entry {
                    name: c.name.clone(),
                    time_zone: c.time_zone.parse().unwrap_or(Tz::UTC),
                    currency: currency_of(&c.country),
                };
                (c.slug.clone(), entry)
            })
            .collect()
    })
}

/// The locale of the city with this slug. A slug the catalog does not know
/// gets its slug as name, UTC and USD.
pub fn city_locale(slug: &str) -> CityLocale {
    let slug = slug.to_ascii_lowercase();
    match catalog().get(&slug) {
        Some(e) => CityLocale {
            name: e.name.clone(),
            time_zone: e.time_zone,
            currency: e.currency,
            slug,
        },
        None => CityLocale {
            name: slug.clone(),
            time_zone: Tz::UTC,
            currency: "USD",
            slug,
        },
    }
}

/// ISO 4217 currency of an ISO 3166-1 alpha-2 country: the countries of the
/// served cities and the larger economies. Others get USD, which is what a
/// listing showed before this table existed.
pub fn currency_of(country: &str) -> &'static str {
    const EURO: &[&str] = &[
        "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV",
        "MT", "NL", "PT", "SI", "SK", "MC", "SM", "VA", "AD", "ME", "XK",
    ];
    if EURO.contains(&country) {
        return "EUR";
    }
    match country {
        "GB" | "IM" | "JE" | "GG" => "GBP",
        "CH" | "LI" => "CHF",
        "SE" => "SEK",
        "NO" => "NOK",
        "DK" => "DKK",
        "PL" => "PLN",
        "CZ" => "CZK",
        "HU" => "HUF",
        "RO" => "RON",
        "BG" => "BGN",
        "CA" => "CAD",
        "MX" => "MXN",
        "BR" => "BRL",
        "AR" => "ARS",
        "CL" => "CLP",
        "CO" => "COP",
        "JP" => "JPY",
        "CN" => "CNY",
        "KR" => "KRW",
        "IN" => "INR",
        "AU" => "AUD",
        "NZ" => "NZD",
        "SG" => "SGD",
        "HK" => "HKD",
        "TR" => "TRY",
        "IL" => "ILS",
        "ZA" => "ZAR",
        "RU" => "RUB",
        "UA" => "UAH",
        _ => "USD",
    }
}

/// How a currency's amounts are written: the symbol, whether it follows the
/// number (with a space), and the thousands separator.
struct Style {
    symbol: &'static str,
    after: bool,
    thousands: char,
}

fn style(currency: &str) -> Style {
    let (symbol, after, thousands) = match currency {
        "USD" => ("$", false, ','),
        "CAD" => ("CA$", false, ','),
        "AUD" => ("A$", false, ','),
        "NZD" => ("NZ$", false, ','),
        "SGD" => ("S$", false, ','),
        "HKD" => ("HK$", false, ','),
        "MXN" => ("MX$", false, ','),
        "GBP" => ("£", false, ','),
        "JPY" => ("¥", false, ','),
        "CNY" => ("CN¥", false, ','),
        "INR" => ("₹", false, ','),
        "KRW" => ("₩", false, ','),
        "ILS" => ("₪", false, ','),
        "BRL" => ("R$", false, '.'),
        "ARS" | "CLP" | "COP" => ("$", false, '.'),
        "ZAR" => ("R", false, ' '),
        "CHF" => ("CHF", false, '\''),
        // French, German and most euro-area usage puts the sign after the
        // amount; a (narrow) no-break space keeps "1 200 €" on one line.
        "EUR" => ("€", true, '\u{202f}'),
        "SEK" | "NOK" | "DKK" => ("kr", true, '\u{202f}'),
        "PLN" => ("zł", true, '\u{202f}'),
        "CZK" => ("Kč", true, '\u{202f}'),
        "HUF" => ("Ft", true, '\u{202f}'),
        "RON" => ("lei", true, '.'),
        "BGN" => ("лв", true, '\u{202f}'),
        "TRY" => ("₺", false, '.'),
        "RUB" => ("₽", true, '\u{202f}'),
        "UAH" => ("₴", true, '\u{202f}'),
        _ => ("$", false, ','),
    };
    Style {
        symbol,
        after,
        thousands,
    }
}

/// `1200` with `sep` → `1,200`; the sign stays in front.
fn group(units: i64, sep: char) -> String {
    let digits = units.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3 + 1);
    if units < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(d);
    }
    out
}

impl CityLocale {
    /// A whole-unit price as the city writes it: `$1,200`, `1 200 €`, `£35`.
    /// Prices are stored in whole units, so no decimals are shown.
    pub fn price(&self, units: i64) -> String {
        let s = style(self.currency);
        let amount = group(units, s.thousands);
        if s.after {
            // U+00A0 between amount and sign: never broken across lines.
            format!("{amount}\u{a0}{}", s.symbol)
        } else {
            format!("{}{amount}", s.symbol)
        }
    }

    /// A day in the city's zone, e.g. `6 Dec 2026`.
    pub fn date(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone)
            .format("%-d %b %Y")
            .to_string()
    }

    /// A day and time in the city's zone, e.g. `6 Dec 2026, 14:05`.
    pub fn date_time(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone)
            .format("%-d %b %Y, %H:%M")
            .to_string()
    }

    /// The instant at which the city's current day began: its local midnight,
    /// as UTC. On a day whose midnight a DST change skips (some zones move
    /// their clocks at 00:00), the day begins at the first instant that
    /// exists; on one where midnight happens twice, at the earlier.
    pub fn start_of_today(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let day = now.with_timezone(&self.time_zone).date_naive();
        start_of_day(self.time_zone, day)
    }
}

fn start_of_day(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // Midnight falls in a gap: the day starts where the gap ends.
            // Gaps are at most a few hours; step in quarter hours.
            (1..=4 * 24)
                .filter_map(|q| {
                    let t = midnight + chrono::Duration::minutes(15 * q);
                    tz.from_local_datetime(&t).earliest()
                })
                .next()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn paris_gets_euros_not_dollars() {
        let paris = city_locale("paris");
        assert_eq!(paris.name, "Paris");
        assert_eq!(paris.currency, "EUR");
        assert_eq!(paris.time_zone, chrono_tz::Europe::Paris);
        let price = paris.price(1200);
        assert!(!price.contains('$'), "{price}");
        assert_eq!(price, "1\u{202f}200\u{a0}€");
    }

    #[test]
    fn prices_follow_the_currency() {
        assert_eq!(city_locale("newyork").price(1200), "$1,200");
        assert_eq!(city_locale("newyork").price(1_234_567), "$1,234,567");
        assert_eq!(city_locale("newyork").price(0), "$0");
        assert_eq!(city_locale("newyork").price(999), "$999");
        assert_eq!(city_locale("london").price(35), "£35");
        assert_eq!(city_locale("london").currency, "GBP");
        assert_eq!(city_locale("berlin").currency, "EUR");
        assert_eq!(city_locale("amsterdam").currency, "EUR");
        assert_eq!(city_locale("newyork").price(-5), "$-5");
    }

    #[test]
    fn unknown_city_is_its_slug_in_utc_and_dollars() {
        let l = city_locale("Atlantis-Nowhere");
        assert_eq!(l.slug, "atlantis-nowhere");
        assert_eq!(l.name, "atlantis-nowhere");
        assert_eq!(l.time_zone, Tz::UTC);
        assert_eq!(l.currency, "USD");
    }

    #[test]
    fn new_york_today_starts_at_local_midnight() {
        let ny = city_locale("newyork");
        assert_eq!(ny.time_zone, chrono_tz::America::New_York);
        // 03:00 UTC on 6 Dec is still 5 Dec, 22:00 in New York (EST, UTC-5).
        assert_eq!(
            ny.start_of_today(at("2026-12-06T03:00:00Z")),
            at("2026-12-05T05:00:00Z")
        );
        assert_eq!(
            ny.start_of_today(at("2026-12-06T12:00:00Z")),
            at("2026-12-06T05:00:00Z")
        );
        // Summer time (EDT, UTC-4).
        assert_eq!(
            ny.start_of_today(at("2026-07-01T12:00:00Z")),
            at("2026-07-01T04:00:00Z")
        );
        // The day DST starts (8 Mar 2026, 02:00 local) began at EST midnight.
        assert_eq!(
            ny.start_of_today(at("2026-03-08T20:00:00Z")),
            at("2026-03-08T05:00:00Z")
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_when_the_gap_ends() {
        // Santiago (Chile) moved clocks from 00:00 to 01:00 on 7 Sep 2025.
        let start = start_of_day(
            chrono_tz::America::Santiago,
            NaiveDate::from_ymd_opt(2025, 9, 7).unwrap(),
        );
        assert_eq!(start, at("2025-09-07T04:00:00Z"));
    }

    #[test]
    fn dates_are_in_the_city_zone() {
        let ny = city_locale("newyork");
        let paris = city_locale("paris");
        let t = at("2026-12-06T03:30:00Z");
        assert_eq!(ny.date(t), "5 Dec 2026");
        assert_eq!(paris.date(t), "6 Dec 2026");
        assert_eq!(ny.date_time(t), "5 Dec 2026, 22:30");
        assert_eq!(paris.date_time(t), "6 Dec 2026, 04:30");
    }
}
