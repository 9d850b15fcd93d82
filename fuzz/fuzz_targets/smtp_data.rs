//! libFuzzer target `smtp_data`: see fuzz/harness/smtp_data.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::smtp_data::run(data));
