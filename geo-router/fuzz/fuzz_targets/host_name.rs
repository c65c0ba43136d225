#![no_main]
//! Host-name parsing never panics and round-trips what it accepts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| geo_router::fuzzing::host_name(data));
