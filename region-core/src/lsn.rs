//! Postgres WAL positions (`pg_lsn`), compared as numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an LSN (expected hex/hex, e.g. 0/16B3748)")]
pub struct BadLsn;

impl FromStr for Lsn {
    type Err = BadLsn;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s.split_once('/').ok_or(BadLsn)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| BadLsn)?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| BadLsn)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads an LSN-valued SQL expression (NULL on a primary for replay
/// functions) by fetching it as text.
pub async fn fetch<'e, E>(sql: &'static str, conn: E) -> Result<Option<Lsn>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let text: Option<String> = sqlx::query_scalar(sql).fetch_one(conn).await?;
    match text {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|e: BadLsn| sqlx::Error::Decode(Box::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_like_postgres() {
        let a: Lsn = "0/16B3748".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "0/16B3748");
        assert!("16B3748".parse::<Lsn>().is_err());
    }
}
