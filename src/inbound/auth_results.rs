//! Forged verdicts: `Authentication-Results:` fields already in a message
//! that claim our authserv-id (our hostname) are removed before we add ours
//! (RFC 8601 §5), so nobody can make our users' mail clients show a verdict
//! we never gave. Fields of other authserv-ids are kept.
//!
//! The same goes for the spam filter's `X-Spam-Flag:`, `X-Spam-Score:` and
//! `X-Spam-Status:` fields when tern scans a message ([`strip_spam_fields`]):
//! only ours, on top, may say what rspamd thought.
//!
//! The body may be spilled to a file: the header section is read line by
//! line (lines are bounded by the session's line limit), and only when a
//! forged field is found is the message copied, streaming, into a new body
//! without it.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::queue::{Body, BodyBuffer, BODY_MEMORY_LIMIT};

const FIELD: &[u8] = b"authentication-results:";
/// The spam filter's fields (`super::spam`), all of them ours to write.
const SPAM_FIELDS: [&[u8]; 3] = [b"x-spam-flag:", b"x-spam-score:", b"x-spam-status:"];

/// Which fields are forged.
#[derive(Clone, Copy)]
enum Forged<'a> {
    /// `Authentication-Results:` claiming this authserv-id.
    AuthResults(&'a str),
    /// Any `X-Spam-Flag:`, `X-Spam-Score:` or `X-Spam-Status:`.
    SpamFields,
}

impl Forged<'_> {
    /// Whether a field starting with `line` is one to look at.
    fn candidate(self, line: &[u8]) -> bool {
        let starts =
            |name: &[u8]| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        match self {
            Forged::AuthResults(_) => starts(FIELD),
            Forged::SpamFields => SPAM_FIELDS.into_iter().any(starts),
        }
    }

    /// Whether the whole candidate `field` is forged.
    fn drops(self, field: &[u8]) -> bool {
        match self {
            Forged::AuthResults(id) => claims(&field[FIELD.len().min(field.len())..], id),
            Forged::SpamFields => true,
        }
    }
}
/// A forged field longer than this (its continuation lines) is still
/// recognised by its first line; only this much is kept to read its id.
const MAX_FIELD: usize = 64 << 10;

/// Does this `Authentication-Results:` value (after the colon) name
/// `authserv_id`? RFC 8601 §2.2: `[CFWS] authserv-id [CFWS authres-version]
/// ( CFWS "none" / 1*resinfo )`.
pub fn claims(value: &[u8], authserv_id: &str) -> bool {
    let text = String::from_utf8_lossy(value);
    let mut rest = text.trim_start();
    // Leading comments, possibly nested.
    while rest.starts_with('(') {
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = rest[end..].trim_start();
    }
    let id: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '(')
        .collect();
    let id = id.trim_matches('"').trim_end_matches('.');
    !id.is_empty() && id.eq_ignore_ascii_case(authserv_id.trim_end_matches('.'))
}

/// The header section's fields, each handed to `keep`-or-drop; `out`
/// receives what is kept (when given). Returns how many were dropped.
fn filter(
    reader: &mut impl BufRead,
    forged: Forged<'_>,
    mut out: Option<&mut BodyBuffer>,
) -> io::Result<usize> {
    let mut dropped = 0;
    // The candidate field being read.
    let mut held: Option<Vec<u8>> = None;
    let mut line = Vec::new();
    let mut flush = |held: &mut Option<Vec<u8>>, out: &mut Option<&mut BodyBuffer>| {
        if let Some(field) = held.take() {
            if forged.drops(&field) {
                dropped += 1;
            } else if let Some(out) = out.as_deref_mut() {
                out.write(&field)?;
            }
        }
        io::Result::Ok(())
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation {
            if let Some(field) = &mut held {
                if field.len() < MAX_FIELD {
                    field.extend_from_slice(&line);
                    continue;
                }
            } else {
                if let Some(out) = out.as_deref_mut() {
                    out.write(&line)?;
                }
                continue;
            }
        }
        flush(&mut held, &mut out)?;
        let end_of_header = line == b"\r\n" || line == b"\n";
        if !end_of_header && forged.candidate(&line) {
            held = Some(line.clone());
            continue;
        }
        if let Some(out) = out.as_deref_mut() {
            out.write(&line)?;
        }
        if end_of_header {
            break;
        }
    }
    flush(&mut held, &mut out)?;
    Ok(dropped)
}

/// `body` without the `Authentication-Results:` fields claiming
/// `authserv_id`, and how many there were. The same body when there are
/// none; otherwise a copy, spilled to `tmp_dir` past the usual threshold.
/// Blocking (reads a spilled body).
pub fn strip(body: Body, authserv_id: &str, tmp_dir: &Path) -> io::Result<(Body, usize)> {
    strip_forged(body, Forged::AuthResults(authserv_id), tmp_dir)
}

/// `body` without `X-Spam-Flag:`, `X-Spam-Score:` and `X-Spam-Status:`
/// fields, and how many there were; as [`strip`].
pub fn strip_spam_fields(body: Body, tmp_dir: &Path) -> io::Result<(Body, usize)> {
    strip_forged(body, Forged::SpamFields, tmp_dir)
}

fn strip_forged(body: Body, forged: Forged<'_>, tmp_dir: &Path) -> io::Result<(Body, usize)> {
    let mut scan = BufReader::new(body.reader()?);
    if filter(&mut scan, forged, None)? == 0 {
        return Ok((body, 0));
    }
    let mut reader = BufReader::new(body.reader()?);
    let mut copy = BodyBuffer::new(tmp_dir, BODY_MEMORY_LIMIT);
    let dropped = filter(&mut reader, forged, Some(&mut copy))?;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        copy.write(&chunk[..n])?;
    }
    Ok((copy.take()?, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whose_verdict() {
        let us = "mx.example.org";
        assert!(claims(b" mx.example.org; spf=pass", us));
        assert!(claims(b" MX.Example.Org 1; none", us));
        assert!(claims(
            b" (forged (nested)) mx.example.org;\r\n\tdkim=pass",
            us
        ));
        assert!(claims(b"\r\n\tmx.example.org;dkim=pass", us));
        assert!(!claims(b" mx.other.example; spf=pass", us));
        assert!(!claims(b" mx.example.org.evil; spf=pass", us));
        assert!(!claims(b"", us));
    }

    #[test]
    fn removes_only_ours_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let message =
            b"Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=bank.example\r\n\
            Authentication-Results: relay.other.example; spf=pass\r\n\
            Subject: hi\r\n\
            authentication-results: (x) MX.EXAMPLE.ORG; dmarc=pass\r\n\
            \r\n\
            Authentication-Results: mx.example.org; body line, not a header\r\n";
        let (body, n) = strip(
            Body::from_bytes(message.to_vec()),
            "mx.example.org",
            dir.path(),
        )
        .unwrap();
        assert_eq!(n, 2);
        let mut out = Vec::new();
        body.reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: relay.other.example; spf=pass\r\nSubject: hi\r\n\r\n\
             Authentication-Results: mx.example.org; body line, not a header\r\n"
        );
        let clean = b"Subject: x\r\n\r\nbody\r\n".to_vec();
        let (body, n) = strip(
            Body::from_bytes(clean.clone()),
            "mx.example.org",
            dir.path(),
        )
        .unwrap();
        assert_eq!((n, body.len), (0, clean.len() as u64));
    }

    #[test]
    fn spam_fields_are_all_removed_from_the_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let message = b"X-Spam-Flag: NO\r\nSubject: hi\r\nx-spam-status: No, score=-5\r\n\
            \ttests=[ALL_GOOD]\r\nX-Spam-Score: -5\r\nX-Spam-Level: kept\r\n\r\n\
            X-Spam-Flag: body line\r\n";
        let (body, n) = strip_spam_fields(Body::from_bytes(message.to_vec()), dir.path()).unwrap();
        assert_eq!(n, 3);
        let mut out = Vec::new();
        body.reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Subject: hi\r\nX-Spam-Level: kept\r\n\r\nX-Spam-Flag: body line\r\n"
        );
    }
}
