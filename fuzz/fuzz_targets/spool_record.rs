//! libFuzzer target `spool_record`: see fuzz/harness/spool_record.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::spool_record::run(data));
