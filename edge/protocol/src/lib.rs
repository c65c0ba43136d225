//! What both sides of the edge share (design §3–§4): the Worker's city
//! binding, the signature of
//! forwarded requests and of the internal KV route, the KV key and metadata
//! formats, the read-your-writes cookie and the problem-type URI. The Worker (wasm32) and
//! region-core (host) link this one crate, so the two cannot drift; the
//! known-answer vectors in `vectors.json` pin the signing scheme for any
//! third implementation (the schemathesis hooks sign in Python).

pub mod bindings;
pub mod headers;
pub mod html;
pub mod kv;
pub mod problem;
pub mod ryw;
pub mod sign;
pub mod trace;
pub mod vectors;

pub use vectors::{Vector, vectors};
