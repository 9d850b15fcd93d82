//! libFuzzer target `message_header`: see fuzz/harness/message_header.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::message_header::run(data));
