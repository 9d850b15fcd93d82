//! Text for a terminal: what the CLI prints from strangers' bytes (queue
//! errors, headers, DNS answers, the owner's own files) never carries
//! escape sequences or invisible reordering characters ([`terminal_safe`],
//! [`to_json`]), and every `--json` flag prints the same way
//! ([`print_report`]). Tested with the queue's screens, on the same hostile
//! text, in control/display_tests.rs.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

/// True for what must not reach a terminal as it is: C0 controls other than
/// tab, DEL, C1 controls (ESC and CSI start escape sequences), and the
/// invisible format characters that reorder or break the text around them
/// (bidi embeddings, overrides, isolates and marks; line and paragraph
/// separators).
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` safe to print on a terminal: every character [`is_unsafe`] is shown
/// escaped (`\r`, `\n`, `\x1b`, `\x9b`, `\u{202e}`), the rest as it is.
/// Every line `tern queue list`, `show` and `mailq` print goes through it.
/// (A backslash is left alone: an escape written literally by the sender
/// looks the same, but it is harmless text.)
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        let _ = match c {
            '\r' => write!(out, "\\r"),
            '\n' => write!(out, "\\n"),
            c if !is_unsafe(c) => write!(out, "{c}"),
            c if u32::from(c) < 0x100 => write!(out, "\\x{:02x}", u32::from(c)),
            c => write!(out, "\\u{{{:04x}}}", u32::from(c)),
        };
    }
    Cow::Owned(out)
}

/// What every `--json` flag of the CLI does: `value` as terminal-safe JSON
/// ([`to_json`]), else `text(value)`, on stdout. False when the JSON could
/// not be made (said on stderr).
pub fn print_report<T: Serialize>(value: &T, json: bool, text: impl FnOnce(&T) -> String) -> bool {
    if !json {
        print!("{}", text(value));
        return true;
    }
    match to_json(value) {
        Ok(out) => {
            println!("{out}");
            true
        }
        Err(e) => {
            eprintln!("tern: {e}");
            false
        }
    }
}

/// `value` as pretty JSON (`--json`), with the characters [`is_unsafe`]
/// that serde_json writes as they are (DEL, C1, bidi and separators; it
/// already escapes C0 controls) written as `\uXXXX` escapes: the same JSON
/// value, safe on a terminal. Outside strings JSON is ASCII, so only string
/// contents change.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let json = serde_json::to_string_pretty(value)?;
    if !json.chars().any(|c| is_unsafe(c) && u32::from(c) >= 0x7f) {
        return Ok(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) && u32::from(c) >= 0x7f {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}
