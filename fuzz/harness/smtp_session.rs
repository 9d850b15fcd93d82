//! Target `smtp_session`: the whole SMTP server session ([`Session`]) fed an
//! arbitrary client byte stream, driven by a small in-memory driver that
//! answers its checks the way the policy layer would (as
//! `src/smtp/session_tests.rs`'s Harness does).
//!
//! Input: three settings bytes, then the stream as packets (`len:u8`, then
//! `len + 1` bytes), one packet per read from the socket.
//!
//! - byte 0: bit 0 STARTTLS offered, bit 1 AUTH offered, bit 2 AUTH required,
//!   bit 3 TLS from the start (port 465), bit 4 every second enqueue fails;
//! - byte 1: every packet is also fed in pieces of `byte1 + 1` bytes;
//! - byte 2: the message size limit, `16 * (byte2 + 1)`.
//!
//! Invariants checked: no panic; every reply answers something the client
//! sent (one per command line or AUTH response, one more at the end of DATA
//! content or of a BDAT chunk: never more, never a reply after Close); a
//! message is queued only at a proper end — after DATA, its content
//! is what a plain reference decoder reads from the client's bytes right
//! after the DATA line, and has no bare CR or LF; after BDAT LAST, no bare CR or LF; the
//! `Received:` header built from the session's trace is well formed; and the
//! session behaves the same however each read is split (the replies and the
//! queued messages of both runs are equal).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tern::smtp::data::DataOutcome;
use tern::smtp::envelope::received_header;
use tern::smtp::{
    Action, Address, Answer, Check, Recipient, Reply, Route, Session, SessionConfig, Transaction,
};

use super::smtp_data::{has_bare_line_ending, reference};

/// What one run of the session produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    replies: Vec<Reply>,
    queued: Vec<(Transaction, Vec<u8>)>,
    closed: bool,
}

struct Driver {
    session: Session,
    hostname: String,
    fail_every_second_enqueue: bool,
    replies: Vec<Reply>,
    body: Vec<u8>,
    queued: Vec<(Transaction, Vec<u8>)>,
    enqueues: usize,
    closed: bool,
    /// A 354 was sent and the end of the content has not been answered yet.
    data_open: bool,
    /// Replies that answered the end of DATA content.
    data_ends: usize,
    /// Everything the client sent.
    fed: Vec<u8>,
    /// The read (start and end in `fed`) after which the last 354 was sent:
    /// the DATA content starts in it, right after the DATA line's LF.
    data_window: (usize, usize),
    /// The last read fed to the session.
    last_read: (usize, usize),
    /// The session asked for a TLS handshake while this packet was fed: the
    /// rest of the packet arrived in plaintext and is dropped.
    tls_in_packet: bool,
}

fn config(flags: u8, size_byte: u8) -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.org".into(),
        max_message_size: 16 * (u64::from(size_byte) + 1),
        max_recipients: 3,
        max_errors: 20,
        max_line_length: 512,
        starttls: flags & 1 != 0,
        auth: flags & 2 != 0,
        auth_required: flags & 4 != 0,
    }
}

impl Driver {
    fn new(flags: u8, size_byte: u8) -> Driver {
        let config = Arc::new(config(flags, size_byte));
        let hostname = config.hostname.clone();
        let tls = (flags & 8 != 0).then(|| "TLSv1.3 fuzz".to_string());
        let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        Driver {
            session: Session::new(config, peer, tls),
            hostname,
            fail_every_second_enqueue: flags & 16 != 0,
            replies: Vec::new(),
            body: Vec::new(),
            queued: Vec::new(),
            enqueues: 0,
            closed: false,
            data_open: false,
            data_ends: 0,
            fed: Vec::new(),
            data_window: (0, 0),
            last_read: (0, 0),
            tls_in_packet: false,
        }
    }

    fn recipient(&self, to: Option<Address>) -> Answer {
        let Some(to) = to else {
            return Answer::RecipientOk(vec![Recipient {
                original: "postmaster".into(),
                route: Route::Local("me".into()),
            }]);
        };
        match to.domain.name() {
            Some("example.org") if to.local.eq_ignore_ascii_case("me") => {
                Answer::RecipientOk(vec![Recipient {
                    original: to.to_string(),
                    route: Route::Local("me".into()),
                }])
            }
            Some("example.org") => Answer::Rejected(Reply::NO_SUCH_USER),
            _ if self.session.authenticated().is_some() => Answer::RecipientOk(vec![Recipient {
                original: to.to_string(),
                route: Route::Remote(to),
            }]),
            _ => Answer::Rejected(Reply::RELAY_DENIED),
        }
    }

    fn pump(&mut self) {
        // Each action is handled in O(1) answers; the session cannot loop
        // forever without input, but bound it anyway.
        for _ in 0..1_000_000 {
            let Some(action) = self.session.next_action() else {
                return;
            };
            assert!(!self.closed, "{action:?} after Close");
            match action {
                Action::Reply(reply) => self.reply(reply),
                Action::Body(bytes) => self.body.extend_from_slice(&bytes),
                Action::DiscardBody => self.body.clear(),
                Action::Check(Check::Sender { from }) => {
                    let answer = match from {
                        Some(a) if a.local.starts_with("reject") => {
                            Answer::Rejected(Reply::SENDER_NOT_ALLOWED)
                        }
                        _ => Answer::SenderOk,
                    };
                    self.session.answer(answer);
                }
                Action::Check(Check::Recipient { to }) => {
                    let answer = self.recipient(to);
                    self.session.answer(answer);
                }
                Action::Check(Check::Credentials { user, password }) => {
                    let answer = if password == "secret" {
                        Answer::Authenticated(user)
                    } else {
                        Answer::Rejected(Reply::BAD_CREDENTIALS)
                    };
                    self.session.answer(answer);
                }
                Action::Enqueue(tx) => self.enqueue(*tx),
                Action::StartTls => {
                    self.tls_in_packet = true;
                    self.session.tls_established("TLSv1.3 fuzz".into());
                }
                Action::Close => self.closed = true,
            }
        }
        panic!("the session produced a million actions without input");
    }

    fn reply(&mut self, reply: Reply) {
        assert!(
            (200..=599).contains(&reply.code),
            "reply code {}",
            reply.code
        );
        assert!(
            !reply.text.contains('\r'),
            "reply text with CR: {:?}",
            reply.text
        );
        if self.data_open {
            self.data_open = false;
            self.data_ends += 1;
        } else if reply.code == 354 {
            self.data_open = true;
            self.data_window = self.last_read;
        }
        self.replies.push(reply);
    }

    fn enqueue(&mut self, tx: Transaction) {
        let body = std::mem::take(&mut self.body);
        assert!(!has_bare_line_ending(&body), "queued with a bare CR or LF");
        if self.data_open {
            // DATA: the content is what the reference decoder reads from
            // the client's bytes right after the DATA line, up to the first
            // <CRLF>.<CRLF> (RFC 5321 §4.5.2).
            let (from, to) = self.data_window;
            assert!(
                (from..=to).any(|s| {
                    (s == 0 || self.fed[s - 1] == b'\n') && {
                        let r = reference(&self.fed[s..], u64::MAX);
                        r.outcome == Some(DataOutcome::Complete) && r.content == body
                    }
                }),
                "queued content is not what was sent between the DATA line and <CRLF>.<CRLF>"
            );
            assert!(body.is_empty() || body.ends_with(b"\r\n"));
        }
        assert!(
            !tx.envelope.recipients.is_empty(),
            "queued without recipients"
        );
        self.enqueues += 1;
        let id = format!("Q{}", self.enqueues);
        let header = received_header(
            &tx.trace,
            &self.hostname,
            &id,
            tx.envelope.recipients.first().map(|r| r.original.as_str()),
            "Thu, 1 Jan 2026 00:00:00 +0000",
            true,
        );
        check_header(header.as_bytes());
        self.queued.push((tx, body));
        if self.fail_every_second_enqueue && self.enqueues % 2 == 0 {
            self.session.queued(Err(Reply::QUEUE_FAILED));
        } else {
            self.session.queued(Ok(id));
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let start = self.fed.len();
        self.fed.extend_from_slice(bytes);
        self.last_read = (start, self.fed.len());
        self.session.feed(bytes);
        self.pump();
    }

    /// Checks the reply count against what was read, once all input is in.
    fn check_reply_count(&self) {
        let lines = self.session.lines_read() as usize;
        // A BDAT chunk still being read owes its reply.
        let chunk_open = usize::from(self.session.in_data() && !self.data_open);
        let answered = 1 + lines + self.data_ends;
        let replies = self.replies.len() + chunk_open;
        // An over-long line is answered as soon as it passes the limit; its
        // line is counted when its end arrives.
        let unfinished = usize::from(self.session.unfinished_line());
        if self.closed {
            assert!(
                replies <= answered + unfinished,
                "{replies} replies for {answered} requests"
            );
        } else {
            assert!(
                replies >= answered && replies <= answered + unfinished,
                "{replies} replies for {answered} requests ({lines} lines, {} data ends)",
                self.data_ends
            );
        }
    }

    fn outcome(self) -> Outcome {
        Outcome {
            replies: self.replies,
            queued: self.queued,
            closed: self.closed,
        }
    }
}

/// Runs the session over `data` (see the module documentation).
pub fn run(data: &[u8]) {
    let [flags, step, size, ref stream @ ..] = *data else {
        return;
    };
    let packets = packets(stream);
    let whole = drive(flags, size, &packets, usize::MAX);
    let pieces = drive(flags, size, &packets, usize::from(step) + 1);
    assert_eq!(
        whole,
        pieces,
        "the session behaved differently when reads were split every {} bytes",
        usize::from(step) + 1
    );
}

fn drive(flags: u8, size: u8, packets: &[&[u8]], step: usize) -> Outcome {
    let mut d = Driver::new(flags, size);
    d.pump();
    for packet in packets {
        if d.closed {
            break;
        }
        d.tls_in_packet = false;
        for piece in packet.chunks(step) {
            if d.closed || d.tls_in_packet {
                break;
            }
            d.feed(piece);
        }
        if !d.closed {
            d.check_reply_count();
        }
    }
    d.outcome()
}

/// Splits the stream into packets: `len:u8` then `len + 1` bytes (the last
/// one may be short).
fn packets(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [len, rest @ ..] = stream {
        let n = (usize::from(*len) + 1).min(rest.len());
        out.push(&rest[..n]);
        stream = &rest[n..];
    }
    out
}

/// Encodes a packet stream in the format [`run`] reads (for seeding).
pub fn encode_packets(reads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for read in reads {
        for piece in read.chunks(256) {
            out.push((piece.len() - 1) as u8);
            out.extend_from_slice(piece);
        }
    }
    out
}

/// A header field block: CRLF line ends only, every line after the first
/// starts with white space (folded), and it ends in CRLF.
fn check_header(header: &[u8]) {
    assert!(header.ends_with(b"\r\n"), "header does not end in CRLF");
    assert!(!has_bare_line_ending(header), "header with a bare CR or LF");
    let body = &header[..header.len() - 2];
    for line in body.split(|&b| b == b'\n').skip(1) {
        assert!(
            matches!(line.first(), Some(b' ' | b'\t')),
            "header line not folded: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}
