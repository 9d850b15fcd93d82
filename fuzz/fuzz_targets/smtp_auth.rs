//! libFuzzer target `smtp_auth`: see fuzz/harness/smtp_auth.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::smtp_auth::run(data));
