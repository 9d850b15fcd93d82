//! [`ConfigError`]: everything that can be wrong with a `tern.toml`, rendered as
//! `file:line:col: message` (DESIGN invariant 6) so an editor can jump to it, and
//! the helpers that turn a byte span of the file into a 1-based line and column.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
///
/// `Display` is the whole user-facing message: `{file}:{line}:{col}: {message}`
/// when the position is known, `{file}: {message}` otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration: {error}", file.display())]
    Io {
        /// The path that was given.
        file: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// The text is not valid TOML, does not fit the schema, or fails validation.
    #[error("{}{}: {message}", file.display(), At(position))]
    Invalid {
        /// The origin the text was parsed under.
        file: PathBuf,
        /// Where in the file, if the mistake is at a place (a missing key is not).
        position: Option<Position>,
        /// What is wrong and what was expected instead.
        message: String,
    },
}

/// A place in the file: 1-based line, 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters (not bytes).
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`. An offset past the end, or inside a
    /// multi-byte character, is clamped to the nearest character boundary before it.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// A place in a config file, kept after validation for the mistakes that can
/// only be found later, such as a key file the config names that is missing
/// (checked when the server starts and by `tern config check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The origin the config was parsed under.
    pub file: PathBuf,
    /// Where in the file, if known.
    pub position: Option<Position>,
}

impl Place {
    /// A [`ConfigError`] at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            position: self.position,
            message: one_line(message.into()),
        }
    }
}

/// `message` on one line: a value quoted from the file may hold a newline
/// or another control character (a TOML `"\n"` escape), which would break
/// the `file:line:col: message` form; each is shown as its Rust escape.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Renders `:line:col` for a known position and nothing otherwise.
struct At<'a>(&'a Option<Position>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, ":{}:{}", p.line, p.column),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// The file at `path` could not be read.
    pub fn io(path: &Path, error: io::Error) -> ConfigError {
        ConfigError::Io {
            file: path.to_path_buf(),
            error,
        }
    }

    /// A mistake at byte `span` of `text` (the start of the span is reported).
    pub fn at(origin: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: origin.to_path_buf(),
            position: Some(Position::of_offset(text, span.start)),
            message: one_line(message.into()),
        }
    }

    /// A mistake that has no place in the file, such as a missing key.
    pub fn whole_file(origin: &Path, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: origin.to_path_buf(),
            position: None,
            message: one_line(message.into()),
        }
    }

    /// Where in the file the mistake is, if it has a place.
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Invalid { position, .. } => *position,
        }
    }

    /// The message without the `file:line:col: ` prefix.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Io { error, .. } => format!("cannot read the configuration: {error}"),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 4),
            Position { line: 1, column: 5 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 1 }
        );
        // "bé = " is 6 bytes but 5 characters: the value starts in column 6.
        let value = text.find('"').unwrap();
        assert_eq!(
            Position::of_offset(text, value),
            Position { line: 2, column: 6 }
        );
    }

    #[test]
    fn offsets_out_of_range_or_inside_a_character_are_clamped() {
        let text = "é\n";
        assert_eq!(
            Position::of_offset(text, 1),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 99),
            Position { line: 2, column: 1 }
        );
    }

    #[test]
    fn display_with_and_without_position() {
        let text = "x\nrole = \"smtp\"\n";
        let e = ConfigError::at(Path::new("tern.toml"), text, 9..15, "bad role");
        assert_eq!(e.to_string(), "tern.toml:2:8: bad role");
        let e = ConfigError::whole_file(Path::new("tern.toml"), "missing key");
        assert_eq!(e.to_string(), "tern.toml: missing key");
        let e = ConfigError::io(
            Path::new("/nope/tern.toml"),
            io::Error::new(io::ErrorKind::NotFound, "not found"),
        );
        assert_eq!(
            e.to_string(),
            "/nope/tern.toml: cannot read the configuration: not found"
        );
    }
}
