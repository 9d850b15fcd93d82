//! Target `config`: the config loader ([`Config::parse_bytes`], what
//! [`Config::load`] runs on a file's bytes) on arbitrary bytes.
//!
//! Invariants (DESIGN invariant 6): no panic; either a valid config or an
//! error whose text is `tern.toml:LINE:COL: message` with the line and
//! column inside the text, or `tern.toml: message` for the mistakes that
//! have no place (a missing key or section); the message is one line.

use std::path::Path;

use tern::config::{Config, ConfigError};

/// Messages of the mistakes that have no place in the file.
const PLACELESS: &[&str] = &["missing key ", "no [["];

/// Checks one result of [`Config::parse`] for `text` (also used by the
/// fixture tests).
pub fn check(text: &str, result: &Result<Config, ConfigError>) {
    let error = match result {
        Ok(config) => {
            let _ = config.summary(Path::new("tern.toml"));
            return;
        }
        Err(error) => error,
    };
    let message = error.message();
    let shown = error.to_string();
    assert!(!message.is_empty(), "empty message");
    assert!(
        !message.contains('\n'),
        "message of several lines: {shown:?}"
    );
    match error.position() {
        Some(p) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                p.line >= 1 && p.line <= lines.len(),
                "line {} of {}: {shown}",
                p.line,
                lines.len()
            );
            let width = lines[p.line - 1].chars().count();
            assert!(
                p.column >= 1 && p.column <= width + 1,
                "column {} of a line of {width}: {shown}",
                p.column
            );
            assert_eq!(
                shown,
                format!("tern.toml:{}:{}: {message}", p.line, p.column)
            );
        }
        None => {
            assert!(
                PLACELESS.iter().any(|p| message.starts_with(p)),
                "an error without line and column: {shown}"
            );
            assert_eq!(shown, format!("tern.toml: {message}"));
        }
    }
}

/// Parses `data` as the bytes of a config file (see the module
/// documentation).
pub fn run(data: &[u8]) {
    // Positions in text that is not UTF-8 are those of its valid prefix,
    // which the lossy conversion keeps as it is.
    let text = String::from_utf8_lossy(data);
    check(&text, &Config::parse_bytes(data, Path::new("tern.toml")));
}
