//! Interop: real SMTP clients send real mail to the real listener, and every
//! delivered Maildir file is checked byte for byte.
//!
//! The peers are Python's smtplib (Debian's /usr/bin/python3, driven by
//! `tests/fixtures/smtp_send.py`) and swaks, each over plaintext and STARTTLS.
//! STARTTLS is fully verified by the client: the server's self-signed
//! certificate (data_dir/tls/cert.pem, made on first start) is the trust
//! anchor, and it names `localhost`, the host the clients connect to.
//!
//! For every copy delivered we check:
//! - `Return-Path: <sender>` and `Delivered-To: <the RCPT address>` come first;
//! - `Received:` names the client's EHLO, `[127.0.0.1]`, `with ESMTPS (TLS
//!   version and cipher)` over TLS and `with ESMTP` without (UTF8SMTP[S] with
//!   SMTPUTF8), the queue id from the 250 reply, and `for <rcpt>` only when the
//!   message had a single recipient;
//! - after those three headers, the bytes are exactly what the client meant
//!   to send: the message after SMTP dot-unstuffing, CRLF line ends (with
//!   BDAT, the chunks concatenated, plus the CRLF tern adds to a last line
//!   left open).
//!
//! swaks (20201014 in Debian 12) has no BDAT, so CHUNKING is exercised with
//! smtplib's low-level commands.

mod support;

use std::process::Command;
use std::time::Duration;

use support::delivered::{check, wait_for_queue_id, Expected};
use support::peers::{python_send, run, swaks, unique_file, PythonSend, PEER_TIMEOUT};
use support::TestServer;

const SENDER: &str = "sender@client.example";
const HELO: &str = "client.example";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One message to send and what must arrive.
struct Case {
    from: &'static str,
    to: Vec<&'static str>,
    /// The message as the client hands it over (not dot-stuffed).
    message: Vec<u8>,
    mail_options: Vec<&'static str>,
    /// Send with BDAT in chunks of this size instead of DATA.
    bdat: Option<usize>,
}

impl Case {
    fn new(message: Vec<u8>) -> Case {
        Case {
            from: SENDER,
            to: vec!["me@example.org"],
            message,
            mail_options: Vec::new(),
            bdat: None,
        }
    }

    fn to(mut self, to: &[&'static str]) -> Case {
        self.to = to.to_vec();
        self
    }

    fn options(mut self, options: &[&'static str]) -> Case {
        self.mail_options = options.to_vec();
        self
    }

    fn bdat(mut self, chunk: usize) -> Case {
        self.bdat = Some(chunk);
        self
    }

    fn from(mut self, from: &'static str) -> Case {
        self.from = from;
        self
    }

    /// What must follow our trace headers in the Maildir file.
    fn expected_body(&self) -> Vec<u8> {
        let mut body = self.message.clone();
        if !body.ends_with(b"\r\n") {
            // smtplib's DATA adds it, and tern adds it to BDAT content.
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    /// The `with` keyword of the Received header.
    fn protocol(&self, tls: bool) -> &'static str {
        let utf8 = self.mail_options.contains(&"SMTPUTF8");
        match (utf8, tls) {
            (false, false) => "ESMTP",
            (false, true) => "ESMTPS",
            (true, false) => "UTF8SMTP",
            (true, true) => "UTF8SMTPS",
        }
    }

    /// Checks every recipient's copy of message `queue_id`.
    fn check_delivered(&self, server: &TestServer, queue_id: &str, tls: bool, helo: &str) {
        let body = self.expected_body();
        for rcpt in &self.to {
            let user = rcpt.split('@').next().unwrap();
            let (path, file) = wait_for_queue_id(server, user, queue_id, DELIVERY_TIMEOUT);
            eprintln!(
                "checked {} ({} bytes, {} after trace headers)",
                path.display(),
                file.len(),
                body.len()
            );
            check(
                &file,
                &Expected {
                    from: self.from,
                    rcpt,
                    helo,
                    protocol: self.protocol(tls),
                    single_recipient: self.to.len() == 1,
                    queue_id,
                    body: &body,
                },
            );
        }
        // Nothing else arrived: one copy per recipient.
        for user in ["me", "bob"] {
            let want = self.to.iter().filter(|r| r.starts_with(user)).count();
            assert_eq!(server.messages(user).len(), want, "messages for {user}");
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

fn headers(subject: &str) -> String {
    format!(
        "From: Sender <{SENDER}>\r\nTo: Me <me@example.org>\r\nSubject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{}.{subject}@client.example>\r\n",
        std::process::id()
    )
}

fn msg_simple_text() -> Vec<u8> {
    format!(
        "{}\r\nHello,\r\n\r\nthis is a simple text message.\r\n\r\n-- \r\nSender\r\n",
        headers("simple")
    )
    .into_bytes()
}

fn msg_eight_bit_utf8() -> Vec<u8> {
    format!(
        "{}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         Grüße aus Köln, ¡hola!, ça va ?\r\n日本語のテキスト\r\n\
         Ελληνικά, русский, עברית, emoji 📬✉️\r\n\
         .ünicode after a dot\r\n",
        headers("eight-bit")
    )
    .into_bytes()
}

/// Lines that must survive dot-stuffing (RFC 5321 §4.5.2) unchanged: a lone
/// dot, dots only, dots then text, a dot then space, a dot as the first body
/// line and as the last line.
fn msg_leading_dots() -> Vec<u8> {
    format!(
        "{}\r\n.first body line starts with a dot\r\n.\r\n..\r\n...\r\n. \r\n.\t\r\n\
         .. two\r\nnot at start .\r\n\r\n.\r\n\r\nx\r\n.\r\n",
        headers("dots")
    )
    .into_bytes()
}

/// A message of exactly `size` bytes: headers, then 76-character lines of
/// varied text (some starting with a dot), the last one padded to fit.
fn sized(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!("{}\r\n", headers(subject)).into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ .,;:=-";
    let mut x: u64 = 0x1234_5678_9ABC_DEF1 ^ size as u64;
    let mut line_no = 0u64;
    while m.len() + 78 <= size {
        line_no += 1;
        let mut line = Vec::with_capacity(78);
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        if line_no % 97 == 0 {
            line[0] = b'.';
        }
        if line_no % 1009 == 0 {
            line.truncate(1);
            line[0] = b'.';
        }
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    let pad = size - m.len();
    assert!(pad >= 2 || pad == 0, "size {size} leaves {pad} bytes");
    if pad > 0 {
        m.extend(std::iter::repeat_n(b'z', pad - 2));
        m.extend_from_slice(b"\r\n");
    }
    assert_eq!(m.len(), size);
    m
}

/// The largest message kept in memory while it arrives (tern spills a body
/// past 1 MiB to a temporary file).
fn msg_one_mib() -> Vec<u8> {
    sized("one-mib", 1 << 20)
}

/// Well past the spill threshold.
fn msg_three_mib() -> Vec<u8> {
    sized("three-mib", 3 << 20)
}

/// For BDAT: dots are not stuffed, and the last line is left open (tern
/// closes it with CRLF).
fn msg_bdat() -> Vec<u8> {
    let mut m = msg_leading_dots();
    m.extend_from_slice(b"last line without CRLF (7-byte chunks split many CR LF pairs)");
    m
}

// ---------------------------------------------------------------------------
// Python smtplib
// ---------------------------------------------------------------------------

fn python_case(case: Case, tls: bool) {
    let server = TestServer::start("");
    let cert = server.data().join("tls/cert.pem");
    let send = PythonSend {
        from: case.from.to_string(),
        to: case.to.iter().map(|s| s.to_string()).collect(),
        mail_options: case.mail_options.iter().map(|s| s.to_string()).collect(),
        starttls: tls,
        bdat: case.bdat,
        helo: HELO.into(),
    };
    let run = python_send(
        server.dir.path(),
        server.mx().port(),
        &cert,
        &send,
        &case.message,
    );
    assert!(run.success, "smtplib failed:\n{}", run.transcript());
    assert!(
        run.stdout.contains("reply 250 2.0.0 Ok: queued as "),
        "{}",
        run.transcript()
    );
    if tls {
        assert!(
            run.stdout.contains("tls TLSv1.3 ") || run.stdout.contains("tls TLSv1.2 "),
            "{}",
            run.transcript()
        );
    }
    let queue_id = run.queue_id().expect("queue id in the reply");
    case.check_delivered(&server, &queue_id, tls, HELO);
}

macro_rules! python_tests {
    ($($name:ident => $case:expr;)*) => {
        /// smtplib over plaintext.
        mod python_plain {
            use super::*;
            $( #[test] fn $name() { python_case($case, false) } )*
        }
        /// smtplib after STARTTLS (certificate and name verified).
        mod python_starttls {
            use super::*;
            $( #[test] fn $name() { python_case($case, true) } )*
        }
    };
}

python_tests! {
    simple_text => Case::new(msg_simple_text());
    eight_bit_body => Case::new(msg_eight_bit_utf8()).options(&["BODY=8BITMIME"]);
    leading_dots => Case::new(msg_leading_dots());
    one_mib => Case::new(msg_one_mib());
    three_mib_spilled => Case::new(msg_three_mib());
    two_recipients => Case::new(msg_simple_text()).to(&["me@example.org", "bob@example.org"]);
    bdat_small_chunks => Case::new(msg_bdat()).bdat(7);
    bdat_three_mib => Case::new(msg_three_mib()).bdat(256 << 10).options(&["BODY=8BITMIME"]);
    smtputf8 => Case::new(msg_eight_bit_utf8())
        .from("jörg@bücher.example")
        .options(&["SMTPUTF8", "BODY=8BITMIME"]);
}

// ---------------------------------------------------------------------------
// swaks
// ---------------------------------------------------------------------------

fn swaks_case(case: Case, tls: bool, pipeline: bool) {
    let swaks = swaks();
    assert!(case.bdat.is_none() && case.mail_options.is_empty());
    let server = TestServer::start("");
    let cert = server.data().join("tls/cert.pem");
    // The message with its closing dot: swaks then sends it as is, quoting
    // leading dots, and adds no line of its own.
    let mut data = case.message.clone();
    data.extend_from_slice(b".\r\n");
    let file = unique_file(server.dir.path(), "swaks", &data);
    let mut cmd = Command::new(swaks);
    cmd.args(["--server", &format!("localhost:{}", server.mx().port())])
        .args(["--ehlo", HELO, "--from", case.from])
        .args(["--to", &case.to.join(",")])
        .args(["--timeout", "60"])
        .arg("--data")
        .arg(format!("@{}", file.display()));
    if tls {
        cmd.args(["--tls", "--tls-verify", "--tls-ca-path"])
            .arg(&cert);
    }
    if pipeline {
        cmd.arg("--pipeline");
    }
    let run = run(cmd, PEER_TIMEOUT);
    assert!(run.success, "swaks failed:\n{}", run.transcript());
    if tls {
        assert!(
            run.stdout.contains("=== TLS started with cipher TLSv1."),
            "{}",
            run.transcript()
        );
    }
    if pipeline {
        // swaks says so when it cannot pipeline; it must not have to.
        assert!(
            !run.stdout.to_lowercase().contains("pipelining not"),
            "{}",
            run.transcript()
        );
    }
    let queue_id = run.queue_id().unwrap_or_else(|| {
        panic!(
            "no `queued as` in the swaks transcript:\n{}",
            run.transcript()
        )
    });
    case.check_delivered(&server, &queue_id, tls, HELO);
}

#[test]
fn swaks_plain_eight_bit_and_dots() {
    let mut message = msg_eight_bit_utf8();
    message.extend_from_slice(b".\r\n..\r\n.end\r\n");
    swaks_case(Case::new(message), false, false);
}

#[test]
fn swaks_starttls_leading_dots() {
    swaks_case(Case::new(msg_leading_dots()), true, false);
}

#[test]
fn swaks_pipeline_two_recipients() {
    swaks_case(
        Case::new(msg_simple_text()).to(&["me@example.org", "bob@example.org"]),
        false,
        true,
    );
}

#[test]
fn swaks_pipeline_starttls_three_mib() {
    swaks_case(Case::new(msg_three_mib()), true, true);
}

#[test]
fn swaks_one_mib() {
    swaks_case(Case::new(msg_one_mib()), false, false);
}

/// The checker itself: it accepts a well-formed delivery and rejects one
/// changed byte, a missing dot, a wrong protocol or a wrong recipient.
#[test]
fn the_checker_catches_every_difference() {
    let body = b"Subject: x\r\n\r\n.dot\r\n".to_vec();
    let delivered = |proto: &str, body: &[u8]| {
        let mut f = format!(
            "Return-Path: <{SENDER}>\r\nDelivered-To: me@example.org\r\n\
             Received: from {HELO} ([127.0.0.1])\r\n\tby mx.example.org (tern) with {proto} id 0AB\r\n\
             \tfor <me@example.org>;\r\n\tSat, 28 Nov 2026 12:00:00 +0000\r\n"
        )
        .into_bytes();
        f.extend_from_slice(body);
        f
    };
    let expected = Expected {
        from: SENDER,
        rcpt: "me@example.org",
        helo: HELO,
        protocol: "ESMTP",
        single_recipient: true,
        queue_id: "0AB",
        body: &body,
    };
    check(&delivered("ESMTP", &body), &expected);
    let fails = |file: Vec<u8>, expected: Expected| {
        std::panic::catch_unwind(|| check(&file, &expected)).is_err()
    };
    assert!(fails(
        delivered("ESMTP", b"Subject: x\r\n\r\n..dot\r\n"),
        expected.clone()
    ));
    assert!(fails(
        delivered("ESMTP", b"Subject: y\r\n\r\n.dot\r\n"),
        expected.clone()
    ));
    assert!(fails(
        delivered("ESMTP", b"Subject: x\r\n\r\n.dot\n"),
        expected.clone()
    ));
    assert!(fails(delivered("ESMTPS", &body), expected.clone()));
    assert!(fails(
        delivered("ESMTP", &body),
        Expected {
            rcpt: "bob@example.org",
            ..expected.clone()
        }
    ));
    assert!(fails(
        delivered("ESMTP", &body),
        Expected {
            single_recipient: false,
            ..expected
        }
    ));
}
