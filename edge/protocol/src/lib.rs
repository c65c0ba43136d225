//! What the Worker and region-core share: request signing, KV key and
//! metadata formats, the read-your-writes cookie.
//!
//! Empty until the edge issue lands; it stays free of tokio so that it
//! compiles for `wasm32-unknown-unknown`.
