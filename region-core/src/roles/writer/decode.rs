//! From a message on the commands topic to a `Command`, or to the reason it
//! is poison. Never panics and never gives up on the writer: whatever the
//! bytes, the answer is one of the two.

use crate::model::{AccountCommand, Command, Id};

/// A message that is not a command the writer can route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Why, for the dead letter's header and the status URL.
    pub reason: String,
    /// The command id, when the JSON had a readable one (so its status URL
    /// can say "rejected").
    pub command: Option<Id>,
    /// The city, when the JSON named one.
    pub city: Option<String>,
}

impl Poison {
    fn new(reason: impl Into<String>) -> Self {
        Poison {
            reason: reason.into(),
            command: None,
            city: None,
        }
    }
}

/// The JSON of a message and the command id it names, if a readable one
/// (so that the status URL of a poison command can say "rejected").
fn json_of(payload: Option<&[u8]>) -> Result<(serde_json::Value, Option<Id>), Poison> {
    let payload = match payload {
        Some(p) if !p.is_empty() => p,
        _ => return Err(Poison::new("empty message")),
    };
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Poison::new(format!("not JSON: {e}")))?;
    let command = value
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Id>().ok());
    Ok((value, command))
}

/// Decodes one message. `key` is the message key: the producer keys by
/// city, and a command under another key may sit in another partition than
/// the rest of its city's commands, out of order with them, so it is
/// refused rather than applied out of order.
pub fn decode(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Command, Poison> {
    let (value, command) = json_of(payload)?;
    let city = value
        .get("city")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let poison = |reason: String| Poison {
        reason,
        command,
        city: city.clone(),
    };
    let decoded: Command =
        serde_json::from_value(value.clone()).map_err(|e| poison(format!("not a command: {e}")))?;
    if decoded.city.is_empty() {
        return Err(poison("the command names no city".to_string()));
    }
    if key != Some(decoded.city.as_bytes()) {
        return Err(poison(format!(
            "message key {:?} is not the command's city {:?}",
            key.map(String::from_utf8_lossy).unwrap_or_default(),
            decoded.city
        )));
    }
    Ok(decoded)
}

/// Decodes an account command (message key `@account`).
pub fn decode_account(payload: Option<&[u8]>) -> Result<AccountCommand, Poison> {
    let (value, command) = json_of(payload)?;
    serde_json::from_value(value).map_err(|e| Poison {
        reason: format!("not an account command: {e}"),
        command,
        city: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"5","city":"boston","created_at":"2026-01-01T00:00:00Z",
        "epoch":1,"type":"delete","post_id":"10","user_id":"20"}"#;

    #[test]
    fn a_command_keyed_by_its_city_decodes() {
        let c = decode(Some(b"boston"), Some(GOOD.as_bytes())).unwrap();
        assert_eq!((c.id, c.city.as_str()), (Id(5), "boston"));
    }

    #[test]
    fn every_kind_of_poison_has_a_reason() {
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a str);
        let cases: [Case<'_>; 5] = [
            (Some(b"boston"), None, "empty message"),
            (Some(b"boston"), Some(b"\xff{not json"), "not JSON"),
            (
                Some(b"boston"),
                Some(br#"{"id":"5","city":"boston","type":"teleport"}"#),
                "not a command",
            ),
            (Some(b"boston"), Some(br#"[1,2,3]"#), "not a command"),
            (
                Some(b"paris"),
                Some(GOOD.as_bytes()),
                "is not the command's city",
            ),
        ];
        for (key, payload, expected) in cases {
            let p = decode(key, payload).unwrap_err();
            assert!(p.reason.contains(expected), "{p:?}");
        }
        let p = decode(
            Some(b"boston"),
            Some(br#"{"id":"5","city":"boston","type":"teleport"}"#),
        )
        .unwrap_err();
        assert_eq!(
            (p.command, p.city.as_deref()),
            (Some(Id(5)), Some("boston"))
        );
    }
}
