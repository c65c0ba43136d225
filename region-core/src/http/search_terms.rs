//! The most searched terms of each city, for `/metrics`: at most
//! [`TOP`] terms a city, so that what visitors type cannot grow the number
//! of series (each term is a label value) without bound.
//!
//! Each city keeps a space-saving summary (Metwally et al.): a new term,
//! when the city's table is full, takes the place of the least searched
//! one and starts from its count plus one. A term searched more often than
//! 1/[`TOP`] of the city's searches is always in the table, which is what a
//! spike alert needs; the counts of rare terms are overestimates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// Terms kept (and exported) per city.
pub const TOP: usize = 20;

/// Longest term kept, in characters: a longer search is cut, so a label
/// value stays short whatever was typed.
pub const TERM_CHARS: usize = 40;

/// The family's name (without the `_total` its samples carry).
const FAMILY: &str = "cityboard_search_terms";

/// Searches by city and term, counted in memory by the api. A clone
/// shares the counts (the registry holds one, the handlers another).
#[derive(Debug, Default, Clone)]
pub struct SearchTerms {
    /// city → term → searches (at most [`TOP`] terms a city).
    cities: Arc<Mutex<HashMap<String, HashMap<String, u64>>>>,
}

impl SearchTerms {
    /// Counts one search of `city` for `raw` (as typed); a search with
    /// nothing left after [`normalize`] is not counted.
    pub fn count(&self, city: &str, raw: &str) {
        let Some(term) = normalize(raw) else {
            return;
        };
        let mut cities = self.cities.lock().unwrap_or_else(|e| e.into_inner());
        let terms = match cities.get_mut(city) {
            Some(t) => t,
            None => cities.entry(city.to_string()).or_default(),
        };
        if let Some(n) = terms.get_mut(&term) {
            *n += 1;
            return;
        }
        let mut start = 1;
        if terms.len() >= TOP {
            // The least searched term (ties: the smallest, so the outcome
            // does not depend on the map's order) gives up its place.
            if let Some((least, n)) = terms
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(t, n)| (t.clone(), *n))
            {
                terms.remove(&least);
                start = n + 1;
            }
        }
        terms.insert(term, start);
    }

    /// (city, term, searches) of every kept term, sorted.
    fn snapshot(&self) -> Vec<(String, String, u64)> {
        let cities = self.cities.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(String, String, u64)> = cities
            .iter()
            .flat_map(|(c, terms)| terms.iter().map(|(t, n)| (c.clone(), t.clone(), *n)))
            .collect();
        all.sort();
        all
    }
}

/// The term a search counts as: lower case, letters and digits only,
/// words separated by one space, at most [`TERM_CHARS`] characters; none
/// when nothing is left. Quotes, operators (`-word`, `"…"`) and control
/// characters go, so a label value is plain words whatever was sent.
pub fn normalize(raw: &str) -> Option<String> {
    let mut term = String::new();
    let mut chars = 0;
    for word in raw
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if chars > 0 {
            if chars + 1 >= TERM_CHARS {
                break;
            }
            term.push(' ');
            chars += 1;
        }
        for c in word.chars().flat_map(char::to_lowercase) {
            if chars == TERM_CHARS {
                break;
            }
            term.push(c);
            chars += 1;
        }
        if chars == TERM_CHARS {
            break;
        }
    }
    (!term.is_empty()).then_some(term)
}

impl Collector for SearchTerms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The descriptor is written even before the first search, so the
        // family is listed at `/metrics` from start.
        let mut family = encoder.encode_descriptor(
            FAMILY,
            "Searches of each city's most searched terms (at most 20 a city, normalized; space-saving counts since the api started)",
            None,
            MetricType::Counter,
        )?;
        for (city, term, n) in self.snapshot() {
            ConstCounter::new(n).encode(
                family.encode_family(&[("city", city.as_str()), ("term", term.as_str())])?,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_plain_lower_case_words_of_bounded_length() {
        assert_eq!(normalize("  Red  BIKE!! ").as_deref(), Some("red bike"));
        assert_eq!(
            normalize("\"exact\" -word or").as_deref(),
            Some("exact word or")
        );
        assert_eq!(
            normalize("a\"} evil{x=\"1\n# TYPE").as_deref(),
            Some("a evil x 1 type")
        );
        assert_eq!(
            normalize("Fahrräder Köln").as_deref(),
            Some("fahrräder köln")
        );
        assert_eq!(normalize(" -- \"\" \t"), None);
        let long = "x".repeat(500);
        assert_eq!(normalize(&long).unwrap().chars().count(), TERM_CHARS);
        let words = "ab ".repeat(100);
        let cut = normalize(&words).unwrap();
        assert!(cut.chars().count() <= TERM_CHARS, "{cut}");
        assert!(!cut.ends_with(' '), "{cut:?}");
    }

    #[test]
    fn a_city_keeps_at_most_twenty_terms_and_a_frequent_one_stays() {
        let s = SearchTerms::default();
        for i in 0..1000 {
            s.count("boston", &format!("rare term {i}"));
            if i % 5 == 0 {
                s.count("boston", "bike");
            }
        }
        s.count("austin", "couch");
        let all = s.snapshot();
        let boston: Vec<_> = all.iter().filter(|(c, _, _)| c == "boston").collect();
        assert_eq!(boston.len(), TOP);
        let bike = boston
            .iter()
            .find(|(_, t, _)| t == "bike")
            .expect("bike kept");
        assert!(bike.2 >= 200, "{bike:?}");
        assert!(all.contains(&("austin".into(), "couch".into(), 1)));
    }

    #[test]
    fn renders_one_series_per_kept_term() {
        let s = SearchTerms::default();
        let mut registry = prometheus_client::registry::Registry::default();
        let text = crate::roles::common::openmetrics_text(&registry);
        assert!(!text.contains(FAMILY));
        s.count("boston", "Bike");
        s.count("boston", "bike");
        registry.register_collector(Box::new(s.clone()));
        s.count("boston", "bike");
        let text = crate::roles::common::openmetrics_text(&registry);
        assert!(
            text.lines()
                .any(|l| l == "cityboard_search_terms_total{city=\"boston\",term=\"bike\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cityboard_search_terms counter"),
            "{text}"
        );
    }
}
