//! The region origin of cityboard.
//!
//! Empty until the region-core issue lands: the crate exists so that the
//! workspace has its final shape from the start and every member compiles.
