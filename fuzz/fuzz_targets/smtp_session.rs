//! libFuzzer target `smtp_session`: see fuzz/harness/smtp_session.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::smtp_session::run(data));
