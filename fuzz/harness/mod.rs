//! The fuzz harnesses: one module per libFuzzer target, each a `run(&[u8])`
//! that panics when an invariant of the code under test breaks. The fuzz
//! targets (fuzz/fuzz_targets/) call them, and so does the main crate's
//! `tests/fuzz_corpus.rs` over the saved corpus and regressions, so a
//! regression fails plain `cargo test` too.

pub mod config;
pub mod http_request;
pub mod message_header;
pub mod smtp_auth;
pub mod smtp_command;
pub mod smtp_data;
pub mod smtp_session;
pub mod spool_record;
pub mod spool_segment;

/// A harness: panics when an invariant breaks.
pub type Run = fn(&[u8]);

/// Every target, by name (the directory names under fuzz/corpus/ and
/// fuzz/regressions/).
pub const TARGETS: &[(&str, Run)] = &[
    ("config", config::run),
    ("http_request", http_request::run),
    ("message_header", message_header::run),
    ("smtp_auth", smtp_auth::run),
    ("smtp_command", smtp_command::run),
    ("smtp_data", smtp_data::run),
    ("smtp_session", smtp_session::run),
    ("spool_record", spool_record::run),
    ("spool_segment", spool_segment::run),
];
