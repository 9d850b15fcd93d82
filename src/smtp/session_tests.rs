//! Unit tests of the session state machine: the same client input, split into
//! chunks of every size, must give the same replies and the same queued messages.

use super::*;
use crate::smtp::envelope::Route;

/// A minimal driver: answers checks for domain example.org with user `me`,
/// queues messages in memory, records everything written.
struct Harness {
    session: Session,
    output: Vec<u8>,
    body: Vec<u8>,
    queued: Vec<(Transaction, Vec<u8>)>,
    tls_started: usize,
    closed: bool,
}

fn config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: "mx.example.org".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 5,
        max_line_length: 512,
        starttls: true,
        auth: false,
        auth_required: false,
    })
}

/// A submission listener: AUTH offered after STARTTLS and required for MAIL.
fn submission_config() -> Arc<SessionConfig> {
    let mut c = (*config()).clone();
    c.auth = true;
    c.auth_required = true;
    Arc::new(c)
}

impl Harness {
    fn new() -> Harness {
        Harness {
            session: Session::new(config(), "192.0.2.1".parse().unwrap(), None),
            output: Vec::new(),
            body: Vec::new(),
            queued: Vec::new(),
            tls_started: 0,
            closed: false,
        }
    }

    fn pump(&mut self) {
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Reply(r) => r.write_to(&mut self.output),
                Action::Body(b) => self.body.extend_from_slice(&b),
                Action::DiscardBody => self.body.clear(),
                Action::Check(Check::Sender { .. }) => self.session.answer(Answer::SenderOk),
                Action::Check(Check::Credentials { user, password }) => {
                    let answer = if user == "me" && password == "secret" {
                        Answer::Authenticated(user)
                    } else {
                        Answer::Rejected(Reply::BAD_CREDENTIALS)
                    };
                    self.session.answer(answer);
                }
                Action::Check(Check::Recipient { to }) => {
                    let answer = match to {
                        None => Answer::RecipientOk(vec![Recipient {
                            original: "postmaster".into(),
                            route: Route::Local("me".into()),
                        }]),
                        Some(a)
                            if a.domain.as_str() == "example.org"
                                && a.local.eq_ignore_ascii_case("me") =>
                        {
                            Answer::RecipientOk(vec![Recipient {
                                original: a.to_string(),
                                route: Route::Local("me".into()),
                            }])
                        }
                        Some(a) if a.domain.as_str() == "example.org" => {
                            Answer::Rejected(Reply::NO_SUCH_USER)
                        }
                        Some(_) => Answer::Rejected(Reply::RELAY_DENIED),
                    };
                    self.session.answer(answer);
                }
                Action::Enqueue(tx) => {
                    let body = std::mem::take(&mut self.body);
                    self.queued.push((*tx, body));
                    let id = format!("Q{}", self.queued.len());
                    self.session.queued(Ok(id));
                }
                Action::StartTls => {
                    self.tls_started += 1;
                    self.session.tls_established("TLSv1.3 test".into());
                }
                Action::Close => self.closed = true,
            }
        }
    }

    /// Runs `input` split into pieces of `step` bytes.
    fn run(input: &[u8], step: usize) -> Harness {
        Self::run_with(Harness::new(), input, step)
    }

    fn run_with(mut h: Harness, input: &[u8], step: usize) -> Harness {
        h.pump();
        for piece in input.chunks(step.max(1)) {
            if h.closed {
                break;
            }
            h.session.feed(piece);
            h.pump();
        }
        h
    }

    fn replies(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.output)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The reply code of every final reply line, greeting included.
    fn codes(&self) -> Vec<String> {
        self.replies()
            .into_iter()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].to_string())
            .collect()
    }
}

/// Runs `input` whole and split at every size up to 16, and at 64; asserts the
/// outcomes agree, returns the whole-input run.
fn run_all_splits(input: &str) -> Harness {
    let whole = Harness::run(input.as_bytes(), input.len());
    for step in (1..=16).chain([64]) {
        let split = Harness::run(input.as_bytes(), step);
        assert_eq!(
            split.output, whole.output,
            "replies differ when split every {step} bytes"
        );
        assert_eq!(
            split.queued, whole.queued,
            "queued messages differ when split every {step} bytes"
        );
    }
    whole
}

#[test]
fn a_complete_transaction() {
    let h = run_all_splits(
        "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<me@example.org>\r\nDATA\r\n\
         Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "250", "250", "354", "250", "221"]);
    assert!(h
        .replies()
        .iter()
        .any(|l| l == "250 2.0.0 Ok: queued as Q1"));
    assert_eq!(h.queued.len(), 1);
    let (tx, body) = &h.queued[0];
    assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
    assert_eq!(
        tx.envelope.sender.as_ref().unwrap().to_string(),
        "a@b.example"
    );
    assert_eq!(tx.envelope.recipients[0].route, Route::Local("me".into()));
    assert_eq!(tx.trace.helo, "client.example");
    assert!(h.closed);
}

#[test]
fn ehlo_advertises_the_extensions() {
    let h = Harness::run(b"EHLO c\r\n", 100);
    let r = h.replies();
    for ext in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(r.iter().any(|l| l[4..] == *ext), "{ext} missing from {r:?}");
    }
    assert!(r[0].starts_with("220 mx.example.org ESMTP"));
}

#[test]
fn bare_lf_command_lines_work() {
    let h =
        run_all_splits("HELO c\nMAIL FROM:<>\nRCPT TO:<me@example.org>\nDATA\nx\r\n.\r\nQUIT\n");
    assert_eq!(h.codes(), ["220", "250", "250", "250", "354", "250", "221"]);
}

#[test]
fn sequence_errors() {
    let h = run_all_splits("MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<me@example.org>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\nQUIT\r\n");
    assert_eq!(
        h.codes(),
        ["220", "503", "250", "503", "503", "250", "503", "554", "221"]
    );
}

#[test]
fn relay_and_unknown_users_are_refused_and_data_needs_a_valid_recipient() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\nQUIT\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "250", "554", "550", "554", "221"]);
    assert!(h
        .replies()
        .contains(&"550 5.1.1 No such user here".to_string()));
    assert!(h
        .replies()
        .contains(&"554 5.7.1 Relay access denied".to_string()));
}

#[test]
fn too_many_recipients_gets_452() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nRCPT TO:<Me@example.org>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<me@example.org>\r\nQUIT\r\n",
    );
    assert_eq!(
        h.codes(),
        ["220", "250", "250", "250", "250", "250", "452", "221"]
    );
}

#[test]
fn duplicate_routes_are_delivered_once() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(h.queued[0].0.envelope.recipients.len(), 1);
}

#[test]
fn smuggled_commands_after_a_fake_end_are_swallowed() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<me@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\n.\n\
         MAIL FROM:<evil@b.example>\r\nRCPT TO:<me@example.org>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n",
    );
    assert!(h.queued.is_empty(), "nothing may be queued: {:?}", h.queued);
    assert_eq!(h.codes(), ["220", "250", "250", "250", "354", "550", "221"]);
    assert!(h.body.is_empty());
}

#[test]
fn oversize_data_is_refused_after_its_end() {
    let big = "x".repeat(1200);
    let h = run_all_splits(&format!(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nDATA\r\n{big}\r\n.\r\nNOOP\r\n"
    ));
    assert_eq!(h.codes(), ["220", "250", "250", "250", "354", "552", "250"]);
    assert!(h.queued.is_empty());
    assert!(h.body.is_empty());
}

#[test]
fn mail_size_parameter_over_the_limit() {
    let h = run_all_splits("EHLO c\r\nMAIL FROM:<> SIZE=1001\r\nMAIL FROM:<> SIZE=1000\r\n");
    assert_eq!(h.codes(), ["220", "250", "552", "250"]);
}

#[test]
fn long_lines_get_500_and_the_session_continues() {
    let long = "NOOP ".to_string() + &"a".repeat(600);
    let h = run_all_splits(&format!("{long}\r\nNOOP\r\n{long}\nNOOP\n"));
    assert_eq!(h.codes(), ["220", "500", "250", "500", "250"]);
    assert!(h.replies().contains(&"500 5.5.2 Line too long".to_string()));
}

#[test]
fn a_line_of_exactly_the_limit_with_its_crlf_is_accepted() {
    // max_line_length is 512: 510 octets of command and CRLF is the limit.
    let at_limit = "NOOP ".to_string() + &"a".repeat(505);
    let over = at_limit.clone() + "a";
    let h = run_all_splits(&format!("{at_limit}\r\n{over}\r\n{at_limit}\n{over}a\n"));
    assert_eq!(h.codes(), ["220", "250", "500", "250", "500"]);
}

#[test]
fn too_many_errors_end_the_session_with_421() {
    let h = run_all_splits("BAD\r\nBAD\r\nBAD\r\nBAD\r\nBAD\r\nBAD\r\nNOOP\r\n");
    assert_eq!(h.codes(), ["220", "500", "500", "500", "500", "500", "421"]);
    assert!(h.closed);
}

#[test]
fn starttls_discards_pipelined_plaintext_and_resets() {
    let h = Harness::run(
        b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@b.example>\r\n",
        1000,
    );
    assert_eq!(h.tls_started, 1);
    assert_eq!(h.codes(), ["220", "250", "220"]);
    let mut h = h;
    h.session
        .feed(b"RCPT TO:<me@example.org>\r\nMAIL FROM:<>\r\nEHLO c\r\nSTARTTLS\r\n");
    h.pump();
    // No transaction survived; EHLO is needed again; STARTTLS no longer offered.
    assert_eq!(h.codes(), ["220", "250", "220", "503", "503", "250", "503"]);
    let offers = h
        .replies()
        .iter()
        .filter(|l| l.starts_with("250") && l.ends_with("STARTTLS"))
        .count();
    assert_eq!(offers, 1, "STARTTLS must not be offered again after TLS");
}

#[test]
fn bdat_transaction() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nd\r\nQUIT\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "250", "250", "250", "250", "221"]);
    assert_eq!(h.queued[0].1, b"ab\r\ncd\r\n");
}

#[test]
fn data_and_bdat_without_a_transaction_say_what_is_missing() {
    let h = run_all_splits("EHLO c\r\nDATA\r\nBDAT 2 LAST\r\nab");
    let replies = h.replies();
    assert_eq!(
        replies[replies.len() - 2],
        "503 5.5.1 Need MAIL and RCPT first"
    );
    assert_eq!(
        replies[replies.len() - 1],
        "503 5.5.1 Need MAIL and RCPT first"
    );
}

#[test]
fn bdat_without_transaction_consumes_its_chunk() {
    let h = run_all_splits("EHLO c\r\nBDAT 12 LAST\r\nQUIT\r\nQUIT\r\nNOOP\r\n");
    // The twelve bytes "QUIT\r\nQUIT\r\n" are data, not commands.
    assert_eq!(h.codes(), ["220", "250", "503", "250"]);
}

#[test]
fn bdat_bare_lf_and_oversize() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nBDAT 5 LAST\r\na\nb\r\nNOOP\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "250", "250", "550", "250"]);
    assert!(h.queued.is_empty());
    let big = "y".repeat(1001);
    let h = run_all_splits(&format!(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nBDAT 1001\r\n{big}BDAT 0 LAST\r\nNOOP\r\n"
    ));
    assert_eq!(h.codes(), ["220", "250", "250", "250", "552", "503", "250"]);
    assert!(h.queued.is_empty());
    assert!(h.body.is_empty());
}

#[test]
fn bdat_then_data_is_refused() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nBDAT 4\r\nab\r\nDATA\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "250", "250", "250", "503"]);
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<jürgen@b.example>\r\nMAIL FROM:<jürgen@b.example> SMTPUTF8\r\nRCPT TO:<me@example.org>\r\n",
    );
    assert_eq!(h.codes(), ["220", "250", "553", "250", "250"]);
}

#[test]
fn helo_sessions_take_no_parameters() {
    let h = run_all_splits("HELO c\r\nMAIL FROM:<> BODY=8BITMIME\r\nMAIL FROM:<>\r\n");
    assert_eq!(h.codes(), ["220", "250", "555", "250"]);
}

#[test]
fn rset_vrfy_help_noop() {
    let h = run_all_splits("EHLO c\r\nMAIL FROM:<>\r\nRSET\r\nRCPT TO:<me@example.org>\r\nVRFY me\r\nHELP\r\nNOOP\r\nEXPN x\r\n");
    assert_eq!(
        h.codes(),
        ["220", "250", "250", "250", "503", "252", "214", "250", "502"]
    );
}

#[test]
fn every_reply_after_the_greeting_and_ehlo_has_an_enhanced_code() {
    let h = run_all_splits(
        "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<me@example.org>\r\nDATA\r\nx\r\n.\r\nFOO\r\nVRFY\r\nHELP\r\nRSET\r\nNOOP\r\nQUIT\r\n",
    );
    let replies = h.replies();
    for line in replies.iter().filter(|l| {
        !l.starts_with("220 mx")
            && !l.starts_with("250-")
            && !l.starts_with("250 CHUNKING")
            && !l.starts_with("250 STARTTLS")
            && !l.starts_with("354")
    }) {
        let code = line[4..].split(' ').next().unwrap_or("");
        let parts: Vec<&str> = code.split('.').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u16>().is_ok()),
            "no enhanced code: {line}"
        );
    }
}

fn submission() -> Harness {
    let mut h = Harness::new();
    h.session = Session::new(submission_config(), "192.0.2.1".parse().unwrap(), None);
    h
}

/// Runs `before` in plaintext, then (the STARTTLS in it having discarded the
/// rest) `after` over "TLS", split every `step` bytes.
fn around_tls(mut h: Harness, before: &str, after: &str, step: usize) -> Harness {
    h.pump();
    for piece in before.as_bytes().chunks(step) {
        h.session.feed(piece);
        h.pump();
    }
    assert_eq!(h.tls_started, 1);
    for piece in after.as_bytes().chunks(step) {
        h.session.feed(piece);
        h.pump();
    }
    h
}

#[test]
fn auth_only_after_tls_and_required_for_mail() {
    let token = base64_encode(b"\0me\0secret");
    let before =
        format!("EHLO c\r\nAUTH PLAIN {token}\r\nMAIL FROM:<me@example.org>\r\nSTARTTLS\r\n");
    let after = format!(
        "EHLO c\r\nMAIL FROM:<me@example.org>\r\nAUTH PLAIN {token}\r\nAUTH PLAIN {token}\r\nMAIL FROM:<me@example.org>\r\n"
    );
    for step in [1, 5, 1000] {
        let h = around_tls(submission(), &before, &after, step);
        let r = h.replies();
        // Before TLS: no AUTH advertised, AUTH refused with 538, MAIL needs AUTH.
        assert!(!r[..9].iter().any(|l| l.contains("AUTH")), "{r:?}");
        assert_eq!(
            h.codes(),
            ["220", "250", "538", "530", "220", "250", "530", "235", "503", "250"]
        );
        assert!(r.iter().any(|l| l == "250 AUTH PLAIN LOGIN"), "{r:?}");
        assert!(r.iter().any(|l| l.starts_with("235 2.7.0")));
        assert_eq!(h.session.authenticated(), Some("me"));
    }
}

#[test]
fn auth_failures_and_exchanges() {
    let bad = base64_encode(b"\0me\0wrong");
    let user = base64_encode(b"me");
    let pass = base64_encode(b"secret");
    let after = format!(
        "EHLO c\r\nAUTH PLAIN {bad}\r\nAUTH CRAM-MD5\r\nAUTH PLAIN %%%\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN\r\n{user}\r\n{pass}\r\nMAIL FROM:<me@example.org>\r\nAUTH LOGIN\r\n"
    );
    for step in [1, 3, 1000] {
        let h = around_tls(submission(), "EHLO c\r\nSTARTTLS\r\n", &after, step);
        assert_eq!(
            h.codes(),
            [
                "220", "250", "220", "250", "535", "504", "501", "334", "501", "334", "334", "235",
                "250", "503"
            ]
        );
        assert!(h
            .replies()
            .iter()
            .any(|l| l == "535 5.7.8 Authentication credentials invalid"));
    }
}

#[test]
fn no_auth_on_the_mx_port() {
    let h = around_tls(
        Harness::new(),
        "EHLO c\r\nSTARTTLS\r\n",
        "EHLO c\r\nAUTH PLAIN AG1lAHNlY3JldA==\r\n",
        100,
    );
    assert_eq!(h.codes(), ["220", "250", "220", "250", "502"]);
    assert!(!h.replies().iter().any(|l| l.contains("AUTH PLAIN LOGIN")));
}

#[test]
fn an_over_long_auth_response_ends_the_exchange() {
    // The 500 for a response line over the limit ends the AUTH exchange, so
    // the next line is a command again (not a SASL response), however the
    // input is split.
    let long = "A".repeat(600);
    let after = format!("EHLO c\r\nAUTH LOGIN\r\n{long}\r\nNOOP\r\n");
    for step in [1, 7, 1000] {
        let h = around_tls(submission(), "EHLO c\r\nSTARTTLS\r\n", &after, step);
        assert_eq!(
            h.codes(),
            ["220", "250", "220", "250", "334", "500", "250"],
            "split every {step}: {:?}",
            h.replies()
        );
    }
}

#[test]
fn bdat_sizes_that_wrap_are_over_the_limit() {
    // 10 + (2^64 - 10) wraps to 0 in unchecked arithmetic.
    let huge = u64::MAX - 9;
    let mut h = Harness::run(
        format!(
            "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<me@example.org>\r\nBDAT 10\r\n0123456789BDAT {huge}\r\n"
        )
        .as_bytes(),
        7,
    );
    // The huge chunk is being read and thrown away: nothing of it is kept.
    for _ in 0..1000 {
        h.session.feed(&[b'A'; 4096]);
        h.pump();
    }
    assert!(
        h.body.is_empty(),
        "the refused chunk's bytes are never stored"
    );
    assert!(h.queued.is_empty());
    assert_eq!(h.codes(), ["220", "250", "250", "250", "250"]);
}

/// Issue 9.1: a client whose every write ends inside a command line; the
/// session drops what it consumed at each feed, so it holds at most the
/// unfinished line and one write, never the history.
#[test]
fn input_held_is_bounded_by_one_line_and_one_feed() {
    let mut h = Harness::new();
    h.pump();
    let line = format!("NOOP {}\r\n", "x".repeat(400));
    let (head, tail) = line.as_bytes().split_at(200);
    let mut write = tail.to_vec();
    for _ in 0..30 {
        write.extend_from_slice(line.as_bytes());
    }
    write.extend_from_slice(head);
    h.session.feed(head);
    for _ in 0..2000 {
        h.session.feed(&write);
        h.pump();
        h.output.clear();
        assert!(!h.closed);
        assert!(
            h.session.input.len() <= write.len() + line.len(),
            "held {} bytes",
            h.session.input.len()
        );
    }
    assert!(h.session.unfinished_line());
    let lines = h.session.lines_read();
    assert_eq!(lines, 2000 * 31);
    h.session.feed(tail);
    h.pump();
    assert!(!h.session.unfinished_line());
    assert_eq!(h.session.lines_read(), lines + 1);
}

#[test]
fn a_skipped_over_long_line_is_unfinished_until_its_end() {
    let mut h = Harness::new();
    h.pump();
    h.session.feed(&[b'x'; 600]);
    h.pump();
    assert!(
        h.session.unfinished_line(),
        "skipping the rest of a long line"
    );
    h.session.feed(b"yyy\r\n");
    h.pump();
    assert!(!h.session.unfinished_line());
    assert_eq!(h.codes(), ["220", "500"]);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    BASE64_STANDARD.encode(bytes)
}
