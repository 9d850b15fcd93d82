//! Target `smtp_data`: the DATA receiver ([`DataReceiver`]) and the BDAT
//! chunk checker ([`ChunkChecker`]) against a reference decoder written
//! here from RFC 5321 the plain way (whole input, no state machine).
//!
//! Input: byte 0 picks the size limit (`byte0 * 8`, so both "too big" and
//! "fits" are reached), byte 1 the size of the pieces the content arrives in
//! (`byte1 + 1`); the rest is the client's bytes after the DATA line.
//!
//! Reference: the content ends at the first `<CRLF>.<CRLF>`, the DATA line's
//! CRLF counting as the first; what comes before the `.<CRLF>` is the
//! content; a bare CR or LF in it refuses the message; otherwise each line's
//! leading dot is removed, and more than the limit refuses it as too big.
//! The receiver must agree on the outcome, on how many bytes it consumed,
//! and, when it accepts, on the content, whatever the pieces. The chunk
//! checker must find a bare line ending exactly when the reference does,
//! after every piece and at the end.

use tern::smtp::data::{ChunkChecker, DataOutcome, DataReceiver};

/// A CR not followed by LF, or an LF not preceded by CR (a trailing CR counts).
pub fn has_bare_line_ending(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        _ => false,
    })
}

/// What the reference decoder makes of a DATA stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub outcome: Option<DataOutcome>,
    /// Bytes of the input that belong to the DATA content and its end line.
    pub consumed: usize,
    pub content: Vec<u8>,
}

/// Decodes the DATA stream `input` (what follows the DATA line) the plain
/// way, with a size limit of `max`.
pub fn reference(input: &[u8], max: u64) -> Reference {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let Some(end) = framed.windows(5).position(|w| w == b"\r\n.\r\n") else {
        return Reference {
            outcome: None,
            consumed: input.len(),
            content: Vec::new(),
        };
    };
    // `end` is where the CRLF before the dot starts in `framed`; the content
    // is the input up to and including that CRLF.
    let raw = &input[..end];
    let consumed = end + 3;
    if has_bare_line_ending(raw) {
        return Reference {
            outcome: Some(DataOutcome::BareLineEnding),
            consumed,
            content: Vec::new(),
        };
    }
    let mut content = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    if content.len() as u64 > max {
        return Reference {
            outcome: Some(DataOutcome::TooBig),
            consumed,
            content: Vec::new(),
        };
    }
    Reference {
        outcome: Some(DataOutcome::Complete),
        consumed,
        content,
    }
}

fn receive(input: &[u8], max: u64, step: usize) -> Reference {
    let mut rx = DataReceiver::new(max);
    let mut content = Vec::new();
    let mut consumed = 0;
    for piece in input.chunks(step) {
        let (n, outcome) = rx.feed(piece, &mut content);
        assert!(n <= piece.len());
        consumed += n;
        if let Some(outcome) = outcome {
            if outcome != DataOutcome::Complete {
                content.clear();
            }
            return Reference {
                outcome: Some(outcome),
                consumed,
                content,
            };
        }
        assert_eq!(n, piece.len(), "bytes left unconsumed before the end");
        // Refused content is dropped by the session; until then the receiver
        // must not have produced more than the limit.
        assert!(rx.refused() || content.len() as u64 <= max);
    }
    Reference {
        outcome: None,
        consumed,
        content: Vec::new(),
    }
}

/// Runs the receiver and the checker over `data` (see the module documentation).
pub fn run(data: &[u8]) {
    let [max, step, ref input @ ..] = *data else {
        return;
    };
    let max = u64::from(max) * 8;
    let step = usize::from(step) + 1;
    let expected = reference(input, max);
    assert_eq!(receive(input, max, input.len().max(1)), expected, "whole");
    assert_eq!(receive(input, max, step), expected, "in pieces of {step}");

    // BDAT: the same bytes as chunk content, in pieces.
    let mut checker = ChunkChecker::default();
    let mut seen = 0;
    for piece in input.chunks(step) {
        checker.scan(piece);
        seen += piece.len();
        let so_far = &input[..seen];
        let pending_cr = so_far.last() == Some(&b'\r');
        let bare = has_bare_line_ending(if pending_cr {
            &so_far[..seen - 1]
        } else {
            so_far
        });
        assert_eq!(checker.has_bare(false), bare, "after {seen} bytes");
    }
    assert_eq!(
        checker.has_bare(true),
        has_bare_line_ending(input),
        "at the end"
    );
}
