//! What one message of the events topic becomes: a KV entry to write, or a
//! dead letter with its reason.
//!
//! Nothing is skipped silently. An event this build cannot read (not JSON,
//! an unknown type, a negative post id) cannot be rendered, and waiting for
//! it would stop its partition for good; skipping it could lose a
//! tombstone, leaving a deleted post at the edge. So it is copied to the
//! region's dead-letter topic, byte for byte with its reason, where an
//! operator sees it (and the janitor's reconciler repairs the post from the
//! shard). An event of a city this region does not serve (it moved away)
//! is not written either: the region that serves the city now writes its
//! keys, and a page from here, possibly older, could replace its newer
//! tombstone; it is dead-lettered the same way.

use super::coalesce::Entry;
use super::entry_of;
use crate::bus::dead_letter::DeadLetter;
use crate::model::{Event, Id};

/// Why an event is not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It does not decode, or decodes to nothing a page can be made of.
    Unreadable,
    /// Its city is not served by this region.
    NotServed,
}

/// What becomes of one message.
#[derive(Debug)]
pub enum Intake {
    /// A page or tombstone to offer to the coalescer.
    Write(Entry),
    /// A copy for the dead-letter topic.
    Letter { letter: DeadLetter, why: Refused },
}

/// One message as read: where from, its key and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl Raw<'_> {
    fn letter(&self, key: String, reason: String, command: Option<Id>) -> DeadLetter {
        DeadLetter {
            payload: self.payload.unwrap_or_default().to_vec(),
            key,
            reason,
            command,
            source: format!("{}/{}/{}", self.topic, self.partition, self.offset),
        }
    }
}

/// The intake of `raw` in `region`; `served` says whether a city is this
/// region's.
pub fn intake(raw: Raw<'_>, region: &str, served: impl Fn(&str) -> bool) -> Intake {
    let original_key = String::from_utf8_lossy(raw.key.unwrap_or_default()).into_owned();
    let event = match serde_json::from_slice::<Event>(raw.payload.unwrap_or_default()) {
        Ok(event) => event,
        Err(e) => {
            return Intake::Letter {
                letter: raw.letter(original_key, format!("unreadable event: {e}"), None),
                why: Refused::Unreadable,
            };
        }
    };
    let command = Some(match &event {
        Event::PostChanged { command_id, .. } | Event::PostGone { command_id, .. } => *command_id,
    });
    let city = event.city().to_string();
    if !served(&city) {
        return Intake::Letter {
            letter: raw.letter(
                city.clone(),
                format!("city {city} is not served by region {region}"),
                command,
            ),
            why: Refused::NotServed,
        };
    }
    match entry_of(&event) {
        Ok(entry) => Intake::Write(entry),
        Err(reason) => Intake::Letter {
            letter: raw.letter(city, format!("unreadable event: {reason}"), command),
            why: Refused::Unreadable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(payload: &[u8]) -> Raw<'_> {
        Raw {
            topic: "r.events",
            partition: 3,
            offset: 17,
            key: Some(b"boston"),
            payload: Some(payload),
        }
    }

    fn gone(city: &str, post: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "post_gone", "command_id": "5", "city": city,
            "post_id": post.to_string(), "version": 2, "reason": "deleted"
        }))
        .unwrap()
    }

    fn letter(i: Intake) -> (DeadLetter, Refused) {
        match i {
            Intake::Letter { letter, why } => (letter, why),
            Intake::Write(e) => panic!("written: {e:?}"),
        }
    }

    #[test]
    fn bytes_that_are_no_event_become_a_letter_with_their_reason() {
        for payload in [&b"\xff not json"[..], br#"{"type":"post_renamed"}"#, b""] {
            let (l, why) = letter(intake(raw(payload), "r", |_| true));
            assert_eq!(why, Refused::Unreadable);
            assert_eq!(l.payload, payload, "copied byte for byte");
            assert_eq!(l.key, "boston", "the original key");
            assert_eq!(l.source, "r.events/3/17");
            assert!(l.reason.starts_with("unreadable event: "), "{}", l.reason);
            assert_eq!(l.command, None);
        }
        let (l, why) = letter(intake(raw(&gone("boston", -4)), "r", |_| true));
        assert_eq!(why, Refused::Unreadable);
        assert!(l.reason.contains("not an id"), "{}", l.reason);
    }

    #[test]
    fn an_event_of_a_city_served_elsewhere_becomes_a_letter() {
        let payload = gone("lisbon", 9);
        let (l, why) = letter(intake(raw(&payload), "us-east", |c| c == "boston"));
        assert_eq!(why, Refused::NotServed);
        assert_eq!(l.reason, "city lisbon is not served by region us-east");
        assert_eq!(l.key, "lisbon");
        let written = intake(raw(&gone("boston", 9)), "us-east", |c| c == "boston");
        assert!(matches!(written, Intake::Write(e) if e.key == "post:9" && e.meta.gone));
    }
}
