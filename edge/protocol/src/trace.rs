//! The request id that follows a write from the edge to the page (design
//! §4): one grep for it finds the edge's forward, the api's command, the
//! writer's apply, the relay's event and the publisher's KV write.
//!
//! The id is not a header of its own: it is the nonce of the edge's
//! signature, which the MAC already covers, so nobody on the path can
//! change it and no scheme version had to change. The edge makes one id
//! per visitor request and signs its first try with the id itself as the
//! nonce; a resend after a 421 must carry a fresh nonce (the origin
//! refuses a replay), so it signs with `{id}-{try}`, and the origin takes
//! the part before the first `-` back. Requests signed by anything else
//! (tests, benchmarks, the publisher's KV calls) have random nonces, which
//! serve as ids just as well.

use crate::sign;

/// The response header in which an origin names a request's id, so that a
/// visitor (or a test) can quote it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The nonce of the `attempt`-th try (1 for the first) of the request with
/// this id.
pub fn nonce_for(request_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        request_id.to_string()
    } else {
        format!("{request_id}-{attempt}")
    }
}

/// The request id a verified signature's nonce carries: the nonce up to its
/// first `-`, if that is a valid nonce on its own, else the whole nonce.
pub fn request_id_of_nonce(nonce: &str) -> &str {
    match nonce.split_once('-') {
        Some((id, _)) if sign::valid_nonce(id) => id,
        _ => nonce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_try_signs_with_the_id_and_a_resend_with_a_suffix() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(nonce_for(id, 1), id);
        assert_eq!(nonce_for(id, 2), format!("{id}-2"));
        for attempt in 1..=3 {
            let nonce = nonce_for(id, attempt);
            assert!(sign::valid_nonce(&nonce), "{nonce}");
            assert_eq!(request_id_of_nonce(&nonce), id);
        }
    }

    #[test]
    fn a_nonce_whose_prefix_is_too_short_is_its_own_id() {
        // base64url nonces may hold `-` anywhere: a short head is no id.
        assert_eq!(
            request_id_of_nonce("ab-cdefghijklmnopqrst"),
            "ab-cdefghijklmnopqrst"
        );
        assert_eq!(request_id_of_nonce("0123456789abcdef"), "0123456789abcdef");
    }
}
