//! libFuzzer target `http_request`: see fuzz/harness/http_request.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::http_request::run(data));
