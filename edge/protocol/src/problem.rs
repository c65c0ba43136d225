//! RFC 9457 problem documents: the Worker and region-core answer errors
//! with the same `type` URIs, so a client tells kinds apart the same way
//! whichever side answered.

/// Base of every problem `type` URI; the kind (`not-found`,
/// `origin-unavailable`, ...) is appended.
pub const PROBLEM_TYPE_BASE: &str = "https://cityboard.example/problems/";
