//! Which served city a visitor is in, and which origin serves a region.
//!
//! Empty until the geo-router issue lands.
