#![no_main]
//! The DNS request path never panics and always answers with a valid message.
libfuzzer_sys::fuzz_target!(|data: &[u8]| geo_router::fuzzing::dns_request(data));
