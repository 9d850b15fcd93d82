//! libFuzzer target `config`: see fuzz/harness/config.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::config::run(data));
