//! Copies of commands that will never be applied, on `<region>.dead-letters`.
//!
//! An acknowledged command is never dropped (design §4): one that cannot be
//! applied — not JSON, an unknown type, invalid, a city this region does not
//! serve, or one `apply` rejected — is copied here byte for byte with its
//! reason in a header, before the writer's offset passes it. An operator can
//! read why, fix what is wrong, and produce it to the commands topic again.

use crate::bus::{COMMAND_ID_HEADER, ProduceError, Producer, REASON_HEADER, SOURCE_HEADER};
use crate::model::Id;

/// One message to copy.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message's bytes as read (possibly not JSON at all).
    pub payload: Vec<u8>,
    /// Key to produce with: the city when known, else the original key, so
    /// a city's dead letters stay in order.
    pub key: String,
    /// Why it is here, for a person.
    pub reason: String,
    /// The command id, when the message had a readable one.
    pub command: Option<Id>,
    /// `topic/partition/offset` it was read from.
    pub source: String,
}

/// Produces `letter` to `topic` and waits for the acknowledgement.
pub async fn send(
    producer: &Producer,
    topic: &str,
    letter: &DeadLetter,
) -> Result<(i32, i64), ProduceError> {
    // Paths in full: without the `failpoints` feature the macro drops its
    // arguments, and imports for them would be unused.
    fail::fail_point!(crate::bus::failpoint::DEAD_LETTER_SEND, |_| Err(
        ProduceError::Kafka {
            topic: topic.to_string(),
            source: rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
            ),
        }
    ));
    let command = letter.command.map(|c| c.to_string()).unwrap_or_default();
    let mut headers: Vec<(&str, &[u8])> = vec![
        (REASON_HEADER, letter.reason.as_bytes()),
        (SOURCE_HEADER, letter.source.as_bytes()),
    ];
    if letter.command.is_some() {
        headers.push((COMMAND_ID_HEADER, command.as_bytes()));
    }
    producer
        .produce(topic, &letter.key, &letter.payload, &headers)
        .await
}
