//! Snowflake-style 64-bit ids: time-ordered, unique across regions.
//!
//! Layout (most significant first, sign bit always 0 so ids fit `bigint`):
//! 41 bits of milliseconds since 2025-01-01 UTC (69 years), 4 bits of
//! region, 8 bits of node (leased from the catalog, see `ids::lease`),
//! 10 bits of sequence (1024 ids per millisecond per node).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const EPOCH_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
pub const REGION_BITS: u32 = 4;
pub const NODE_BITS: u32 = 8;
pub const SEQ_BITS: u32 = 10;
pub const MAX_REGION: u16 = (1 << REGION_BITS) - 1;
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
pub const MAX_SEQ: u16 = (1 << SEQ_BITS) - 1;
const TIME_SHIFT: u32 = REGION_BITS + NODE_BITS + SEQ_BITS;

/// A Snowflake id. Travels in JSON as a string (JavaScript numbers lose
/// precision past 2^53) and in URLs and SQL as a decimal / `bigint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Id(pub i64);

impl Id {
    pub fn compose(ms_since_epoch: i64, region: u16, node: u16, seq: u16) -> Id {
        Id((ms_since_epoch << TIME_SHIFT)
            | (i64::from(region & MAX_REGION) << (NODE_BITS + SEQ_BITS))
            | (i64::from(node & MAX_NODE) << SEQ_BITS)
            | i64::from(seq & MAX_SEQ))
    }

    pub fn region(self) -> u16 {
        ((self.0 >> (NODE_BITS + SEQ_BITS)) as u16) & MAX_REGION
    }

    pub fn node(self) -> u16 {
        ((self.0 >> SEQ_BITS) as u16) & MAX_NODE
    }

    pub fn seq(self) -> u16 {
        (self.0 as u16) & MAX_SEQ
    }

    pub fn timestamp(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_millis_opt((self.0 >> TIME_SHIFT) + EPOCH_MS)
            .single()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an id: expected a positive decimal number")]
pub struct BadId;

impl FromStr for Id {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(v) if v > 0 && !s.starts_with('+') => Ok(Id(v)),
            _ => Err(BadId),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// In the OpenAPI document: a decimal string, as ids travel in JSON.
impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[1-9][0-9]{0,18}$"))
            .description(Some(
                "64-bit Snowflake id as a decimal string (JavaScript numbers lose precision past 2^53)",
            ))
            .examples([serde_json::json!("360288412508160001")])
            .into()
    }
}

impl utoipa::ToSchema for Id {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let id = Id::compose(123_456_789, 9, 200, 1000);
        assert_eq!((id.region(), id.node(), id.seq()), (9, 200, 1000));
        assert_eq!(id.0 >> TIME_SHIFT, 123_456_789);
        assert!(id.0 > 0);
    }

    #[test]
    fn ids_travel_as_strings_in_json() {
        let id = Id(9_007_199_254_740_993); // 2^53 + 1
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"9007199254740993\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Id>("\"-5\"").is_err());
        assert!(serde_json::from_str::<Id>("\"12a\"").is_err());
    }

    #[test]
    fn seventy_years_still_fit() {
        let ms = 69 * 365 * 24 * 3600 * 1000_i64;
        assert!(Id::compose(ms, MAX_REGION, MAX_NODE, MAX_SEQ).0 > 0);
    }
}
