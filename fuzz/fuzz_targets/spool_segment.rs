//! libFuzzer target `spool_segment`: see fuzz/harness/spool_segment.rs for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::harness::spool_segment::run(data));
