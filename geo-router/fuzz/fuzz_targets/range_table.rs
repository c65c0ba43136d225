#![no_main]
//! The range-table decoder never panics and round-trips what it accepts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| geo_router::fuzzing::range_table(data));
