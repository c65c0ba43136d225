//! Opaque keyset cursors for infinite scroll: the last row's sort key and id
//! (`listed_at` for the newest-first order, the price for the price orders),
//! signed together with the query it belongs to (city, filters, sort), so a
//! tampered cursor, or one reused with other filters, is a 400 rather than a
//! silently different page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Id;

type HmacSha256 = Hmac<Sha256>;

/// The sort key of the last row of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// `listed_at` (newest first).
    ListedAt(DateTime<Utc>),
    /// The price as the price orders compare it (posts without a price have
    /// the stand-in value that sorts them last; see `db::queries::Sort`).
    Price(i64),
}

/// A keyset position: strictly after `(key, id)` in the listing's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's sort key.
    pub key: SortKey,
    /// The last row's id, which breaks ties of the key.
    pub id: Id,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cursor")]
pub struct BadCursor;

fn mac(key: &[u8], body: &str, scope: &str) -> Result<HmacSha256, BadCursor> {
    let mut m = HmacSha256::new_from_slice(key).map_err(|_| BadCursor)?;
    m.update(body.as_bytes());
    m.update(&[0]);
    m.update(scope.as_bytes());
    Ok(m)
}

impl Cursor {
    /// `scope` binds the cursor to its city, filters and sort: reused with
    /// others it is refused.
    pub fn encode(&self, key: &[u8], scope: &str) -> String {
        // `t` and `p` tell the key's kind, so a cursor of one order can never
        // be read as a position in another even if two scopes collided.
        let body = match self.key {
            SortKey::ListedAt(at) => format!("t{}.{}", at.timestamp_micros(), self.id),
            SortKey::Price(p) => format!("p{p}.{}", self.id),
        };
        let tag = mac(key, &body, scope)
            .map(|m| m.finalize().into_bytes()[..16].to_vec())
            .unwrap_or_default();
        let mut raw = body.into_bytes();
        raw.push(b'.');
        raw.extend_from_slice(hex::encode(tag).as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(s: &str, key: &[u8], scope: &str) -> Result<Cursor, BadCursor> {
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| BadCursor)?;
        let text = String::from_utf8(raw).map_err(|_| BadCursor)?;
        let (body, tag) = text.rsplit_once('.').ok_or(BadCursor)?;
        let tag = hex::decode(tag).map_err(|_| BadCursor)?;
        if tag.len() != 16 {
            return Err(BadCursor);
        }
        mac(key, body, scope)?
            .verify_truncated_left(&tag)
            .map_err(|_| BadCursor)?;
        let (value, id) = body.split_once('.').ok_or(BadCursor)?;
        let key = match value.split_at_checked(1) {
            Some(("t", micros)) => SortKey::ListedAt(
                DateTime::from_timestamp_micros(micros.parse().map_err(|_| BadCursor)?)
                    .ok_or(BadCursor)?,
            ),
            Some(("p", price)) => SortKey::Price(price.parse().map_err(|_| BadCursor)?),
            _ => return Err(BadCursor),
        };
        Ok(Cursor {
            key,
            id: id.parse().map_err(|_| BadCursor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering_and_other_scopes() {
        let c = Cursor {
            key: SortKey::ListedAt(DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap()),
            id: Id(42),
        };
        let s = c.encode(b"k", "boston|q=bike");
        assert_eq!(Cursor::decode(&s, b"k", "boston|q=bike"), Ok(c.clone()));
        assert_eq!(Cursor::decode(&s, b"k", "boston|q=car"), Err(BadCursor));
        assert_eq!(
            Cursor::decode(&s, b"other", "boston|q=bike"),
            Err(BadCursor)
        );
        let forged =
            URL_SAFE_NO_PAD.encode(b"t1700000000123456.43.00000000000000000000000000000000");
        assert_eq!(
            Cursor::decode(&forged, b"k", "boston|q=bike"),
            Err(BadCursor)
        );
        assert_eq!(Cursor::decode("!!", b"k", ""), Err(BadCursor));
        assert_eq!(Cursor::decode("", b"k", ""), Err(BadCursor));
    }

    #[test]
    fn a_price_cursor_round_trips_with_its_kind() {
        for price in [0, 1_000_000_001, -1] {
            let c = Cursor {
                key: SortKey::Price(price),
                id: Id(7),
            };
            let s = c.encode(b"k", "boston|price_asc");
            assert_eq!(Cursor::decode(&s, b"k", "boston|price_asc"), Ok(c));
        }
    }
}
