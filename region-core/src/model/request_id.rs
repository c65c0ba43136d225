//! The id of the visitor's request that asked for a write (`trace` in
//! edge/protocol): the command carries it, the event made from the command
//! and the KV entry the publisher writes name it, and every role logs it,
//! so that one grep follows a post from its POST to its page.

use std::fmt;

use cityboard_protocol::sign;
use serde::{Deserialize, Serialize};

/// A request id: 16 to 64 characters of `[A-Za-z0-9_-]` (a signature
/// nonce's shape), so it can go into a log line or a header as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// The id of a request whose signature verified with this nonce.
    pub fn of_nonce(nonce: &str) -> Option<RequestId> {
        RequestId::try_from(cityboard_protocol::trace::request_id_of_nonce(nonce).to_string()).ok()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = String;

    fn try_from(s: String) -> Result<RequestId, String> {
        if sign::valid_nonce(&s) {
            Ok(RequestId(s))
        } else {
            Err("a request id is 16 to 64 characters of [A-Za-z0-9_-]".into())
        }
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_nonce_names_its_first_try_and_bad_shapes_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            RequestId::of_nonce(&format!("{id}-2")).unwrap().as_str(),
            id
        );
        assert!(serde_json::from_str::<RequestId>("\"a\\nb0123456789abcdef\"").is_err());
        assert!(serde_json::from_str::<RequestId>("\"short\"").is_err());
        let back: RequestId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(back.as_str(), id);
    }
}
