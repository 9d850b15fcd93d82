//! Message content receivers: [`DataReceiver`] for DATA (dot-unstuffing, end at
//! `<CRLF>.<CRLF>` only) and [`ChunkChecker`] for BDAT (RFC 3030) content.
//!
//! Both refuse bare CR and bare LF (RFC 5321 §2.3.8) instead of guessing what the
//! client meant: that guess is what SMTP smuggling exploits, when two servers
//! disagree about where a message ends. A refused message is still read up to its
//! real end, so whatever the attacker put after a fake end is swallowed as data
//! and never runs as commands. Input may arrive split at any byte.

/// Where the DATA receiver is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (just after CRLF, or just after the DATA command).
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line: LF ends the message.
    DotCr,
    /// Inside a line.
    Middle,
    /// Saw CR inside a line; only LF may follow.
    Cr,
}

/// What the DATA receiver found, once the message has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutcome {
    Complete,
    /// The content had a bare CR or LF; nothing of it may be queued.
    BareLineEnding,
    /// More than the size limit arrived; the rest was read and dropped.
    TooBig,
}

/// Reads DATA content: feeds unstuffed bytes out, finds the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataReceiver {
    state: DataState,
    max_size: u64,
    size: u64,
    bare: bool,
    too_big: bool,
}

impl DataReceiver {
    /// A receiver that accepts up to `max_size` bytes of content.
    pub fn new(max_size: u64) -> Self {
        DataReceiver {
            state: DataState::LineStart,
            max_size,
            size: 0,
            bare: false,
            too_big: false,
        }
    }

    /// Consumes bytes from `input`, appending message content to `out`. Returns
    /// how many bytes were consumed and, once the end-of-data line was read, the
    /// outcome. Bytes after the end are not consumed.
    ///
    /// Content equals the input but for the dots removed by unstuffing and
    /// the end line, so it is copied in spans: a span ends only at a line
    /// starting with a dot, at the end, or at the end of the input.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<DataOutcome>) {
        let mut i = 0;
        // Start of the bytes not yet copied to `out`.
        let mut span = 0;
        // Where the CR of ".\r" sits in this input, if it does.
        let mut dot_cr = None;
        while i < input.len() {
            if self.state == DataState::Middle {
                // Fast path: skip to the next CR or LF.
                match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                    Some(k) => i += k,
                    None => break,
                }
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (DataState::LineStart, b'.') => {
                    // RFC 5321 §4.5.2: the leading dot of a line is dropped
                    // (and a line of just a dot ends the data).
                    self.emit(&input[span..i - 1], out);
                    span = i;
                    DataState::Dot
                }
                (DataState::Dot, b'\r') => {
                    dot_cr = Some(i - 1);
                    DataState::DotCr
                }
                (DataState::DotCr, b'\n') => {
                    // The end: nothing of ".\r\n" is content.
                    let end = dot_cr.unwrap_or(span);
                    self.emit(&input[span..end], out);
                    return (i, Some(self.outcome()));
                }
                (DataState::Cr, b'\n') => DataState::LineStart,
                (DataState::Cr | DataState::DotCr, other) => {
                    // A CR not followed by LF.
                    self.bare = true;
                    if other == b'\r' {
                        DataState::Cr
                    } else {
                        DataState::Middle
                    }
                }
                (_, b'\r') => DataState::Cr,
                (_, b'\n') => {
                    // An LF not preceded by CR.
                    self.bare = true;
                    DataState::Middle
                }
                _ => DataState::Middle,
            };
        }
        // Hold back the CR of a possible end line until its LF decides.
        let end = match (self.state, dot_cr) {
            (DataState::DotCr, Some(p)) => p,
            _ => input.len(),
        };
        self.emit(&input[span..end], out);
        (input.len(), None)
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.too_big = true;
        }
        if !self.bare && !self.too_big {
            out.extend_from_slice(bytes);
        }
    }

    fn outcome(&self) -> DataOutcome {
        if self.bare {
            DataOutcome::BareLineEnding
        } else if self.too_big {
            DataOutcome::TooBig
        } else {
            DataOutcome::Complete
        }
    }

    /// True once content is known to be refused (the caller may drop what it has
    /// buffered so far).
    pub fn refused(&self) -> bool {
        self.bare || self.too_big
    }
}

/// Checks BDAT content for bare CR and LF across chunk boundaries.
#[derive(Debug, Clone, Default)]
pub struct ChunkChecker {
    pending_cr: bool,
    bare: bool,
}

impl ChunkChecker {
    /// Scans the next piece of content.
    pub fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if !self.pending_cr => self.bare = true,
                b'\r' if self.pending_cr => self.bare = true,
                _ if self.pending_cr && b != b'\n' => self.bare = true,
                _ => {}
            }
            self.pending_cr = b == b'\r';
        }
    }

    /// True when the content so far has a bare line ending. `at_end` counts a
    /// trailing CR as bare (the message cannot end between CR and LF).
    pub fn has_bare(&self, at_end: bool) -> bool {
        self.bare || (at_end && self.pending_cr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split into pieces of `step` bytes; returns content, outcome
    /// and how many bytes were consumed.
    fn run(input: &[u8], step: usize, max: u64) -> (Vec<u8>, Option<DataOutcome>, usize) {
        let mut rx = DataReceiver::new(max);
        let mut out = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            let (n, outcome) = rx.feed(piece, &mut out);
            consumed += n;
            if outcome.is_some() {
                return (out, outcome, consumed);
            }
        }
        (out, None, consumed)
    }

    /// Runs `input` whole and split at every size; the outcome and what was
    /// consumed must agree, and so must the content when it is accepted
    /// (refused content is dropped by the session, however much of it got
    /// out before the refusal was known).
    fn every_split(input: &[u8], max: u64) -> (Vec<u8>, Option<DataOutcome>, usize) {
        let first = run(input, input.len().max(1), max);
        for step in 1..input.len().max(1) {
            let split = run(input, step, max);
            assert_eq!(
                (split.1, split.2),
                (first.1, first.2),
                "split every {step} bytes"
            );
            if first.1 == Some(DataOutcome::Complete) {
                assert_eq!(split.0, first.0, "content, split every {step} bytes");
            }
        }
        first
    }

    #[test]
    fn simple_message_ends_at_crlf_dot_crlf() {
        let input = b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (out, outcome, consumed) = every_split(input, 1000);
        assert_eq!(out, b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(outcome, Some(DataOutcome::Complete));
        assert_eq!(&input[consumed..], b"QUIT\r\n");
    }

    #[test]
    fn empty_message() {
        let (out, outcome, _) = every_split(b".\r\n", 1000);
        assert!(out.is_empty());
        assert_eq!(outcome, Some(DataOutcome::Complete));
    }

    #[test]
    fn dot_unstuffing() {
        let input = b"..leading\r\n.x\r\n...\r\nmid.dle\r\n.\r\n";
        let (out, outcome, _) = every_split(input, 1000);
        assert_eq!(out, b".leading\r\nx\r\n..\r\nmid.dle\r\n");
        assert_eq!(outcome, Some(DataOutcome::Complete));
    }

    #[test]
    fn smuggling_sequences_never_end_the_message() {
        // Each of these is a fake end that some server somewhere accepted.
        for fake in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n.\rX",
            b"\n.\r",
        ] {
            let mut input = b"Subject: x\r\n\r\nhello".to_vec();
            input.extend_from_slice(fake);
            input.extend_from_slice(
                b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n",
            );
            // Without a real end, the receiver keeps reading.
            let (_, outcome, consumed) = every_split(&input, 10_000);
            assert_eq!(outcome, None, "fake end {fake:?} must not end DATA");
            assert_eq!(consumed, input.len());
            // With the real end, the whole thing is refused.
            input.extend_from_slice(b"smuggled\r\n.\r\n");
            let (out, outcome, consumed) = every_split(&input, 10_000);
            assert_eq!(
                outcome,
                Some(DataOutcome::BareLineEnding),
                "fake end {fake:?}"
            );
            assert_eq!(consumed, input.len());
            assert!(out.len() < input.len());
        }
    }

    #[test]
    fn bare_lf_and_cr_are_refused() {
        for input in [
            &b"a\nb\r\n.\r\n"[..],
            b"a\rb\r\n.\r\n",
            b"\n.\r\n.\r\n",
            b"a\r\r\n.\r\n",
        ] {
            let (_, outcome, _) = every_split(input, 1000);
            assert_eq!(outcome, Some(DataOutcome::BareLineEnding), "{input:?}");
        }
    }

    #[test]
    fn oversize_is_read_to_the_end_then_refused() {
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let (out, outcome, consumed) = run(&input, 7, 1000);
        assert_eq!(outcome, Some(DataOutcome::TooBig));
        assert!(out.len() <= 1000);
        assert_eq!(&input[consumed..], b"NOOP\r\n");
        let (_, outcome, _) = run(&input, 7, 100_000);
        assert_eq!(outcome, Some(DataOutcome::Complete));
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let (out, outcome, _) = every_split(b"12345678\r\n.\r\n", 10);
        assert_eq!(out.len(), 10);
        assert_eq!(outcome, Some(DataOutcome::Complete));
        let (_, outcome, _) = every_split(b"123456789\r\n.\r\n", 10);
        assert_eq!(outcome, Some(DataOutcome::TooBig));
    }

    #[test]
    fn chunk_checker_spans_chunks() {
        let mut c = ChunkChecker::default();
        c.scan(b"line\r");
        assert!(!c.has_bare(false));
        assert!(c.has_bare(true));
        c.scan(b"\nnext\r\n");
        assert!(!c.has_bare(true));
        c.scan(b"bad\n");
        assert!(c.has_bare(false));
        let mut c = ChunkChecker::default();
        c.scan(b"a\r");
        c.scan(b"b");
        assert!(c.has_bare(false));
    }
}
