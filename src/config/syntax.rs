//! Second opinions on TOML syntax errors, for the two mistakes the toml
//! parser reports far from where they are or in terms that mislead: a
//! string whose closing quote is missing (inside an array the parser reads
//! on and complains lines later about a missing comma), and a bare word
//! where a value belongs (`connections_per_ip = ten` is read as a boolean
//! that went wrong). Each finds the place in the text itself and says what
//! is wrong there.

use std::ops::Range;

/// The first one-line string (`"…"` or `'…'`) that is not closed before
/// the end of its line: the byte span of its opening quote and the quote.
/// Comments and multi-line strings (`"""…"""`, `'''…'''`) are skipped.
pub(super) fn unclosed_string(text: &str) -> Option<(Range<usize>, char)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = end_of_line(bytes, i),
            quote @ (b'"' | b'\'') => {
                let triple = [quote; 3];
                if bytes[i..].starts_with(&triple) {
                    let body = i + 3;
                    let close = text[body..].find(std::str::from_utf8(&triple).ok()?)?;
                    i = body + close + 3;
                    // A closing run may be four or five quotes long: the
                    // extra ones belong to the string.
                    while i < bytes.len() && bytes[i] == quote {
                        i += 1;
                    }
                    continue;
                }
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None | Some(b'\n') => return Some((i..i + 1, quote as char)),
                        Some(b'\\') if quote == b'"' => j += 2,
                        Some(&b) if b == quote => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn end_of_line(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |n| from + n)
}

/// The bare word (letters, digits, `_`, `-`, `.`, `:`, `+`) that starts at
/// byte `at`, when the parser stopped on one where a value belongs and it
/// is not a TOML value: not `true`/`false` and not starting with a digit,
/// sign or quote. Returns the message to show.
pub(super) fn bare_word(text: &str, at: usize) -> Option<String> {
    let rest = text.get(at..)?;
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || "_-.:+".contains(*c))
        .collect();
    let first = word.chars().next()?;
    if !first.is_alphabetic() || word == "true" || word == "false" || word == "inf" || word == "nan"
    {
        return None;
    }
    let word: String = word.chars().take(40).collect();
    Some(format!(
        "{word} is not a value: write a number as digits (10), text in quotes (\"{word}\"), \
         or true or false"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_string_left_open_on_its_line() {
        let text = "a = [\"x\",\n  \"y,\n  \"z\"]\n";
        let (span, quote) = unclosed_string(text).unwrap();
        assert_eq!((span.start, quote), (text.find("\"y").unwrap(), '"'));
        let text = "a = 'it's'\n";
        assert_eq!(unclosed_string(text).map(|(s, _)| s.start), Some(9));
        let text = "a = \"at the end";
        assert_eq!(unclosed_string(text).map(|(s, _)| s.start), Some(4));
    }

    #[test]
    fn closed_strings_comments_and_multi_line_strings_are_fine() {
        for text in [
            "a = \"x\" # it's \"fine\n",
            "a = \"esc \\\" aped\"\nb = 'lit \\'\n",
            "a = \"\"\"\nline \" one\nline ' two\"\"\"\"\nb = '''\nx ' y\n'''\n",
            "# \"\na = 1\n",
        ] {
            assert_eq!(unclosed_string(text), None, "{text}");
        }
    }

    #[test]
    fn a_bare_word_is_named_and_values_are_not() {
        let text = "connections_per_ip = ten\n";
        let at = text.find("ten").unwrap();
        let message = bare_word(text, at).unwrap();
        assert!(message.starts_with("ten is not a value:"), "{message}");
        assert!(message.contains("(\"ten\")"), "{message}");
        for value in ["true", "false", "10", "-1", "\"x\"", "[1]", "nan"] {
            assert_eq!(bare_word(value, 0), None, "{value}");
        }
    }
}
