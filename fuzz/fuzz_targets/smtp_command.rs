//! libFuzzer target `smtp_command`: see fuzz/harness/smtp_command.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::smtp_command::run(data));
