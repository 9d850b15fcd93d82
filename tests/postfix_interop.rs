//! Interop with a real Postfix (Debian's, started privately on a loopback port
//! by `scripts/postfix-instance`, see tests/support/postfix.rs):
//!
//! - tern → Postfix: an in-process tern (real spool, scheduler and SMTP client)
//!   finds Postfix by MX through a DNS server on loopback and delivers to it;
//!   the messages arrive in Postfix's Maildirs byte for byte (after Postfix's
//!   own trace fields, and with Postfix's LF line ends): leading dots, 8-bit
//!   UTF-8 text, 990-octet lines, a 1 MB body, an SMTPUTF8 recipient, several
//!   recipients in one transaction, a null sender, a burst of 41 messages;
//!   over STARTTLS too (Postfix's Received says ESMTPS), and in plaintext on a
//!   second connection when Postfix's TLS is unusable.
//! - Postfix's replies: in one transaction an accepted, a rejected (550) and a
//!   deferred (450) recipient get delivered, bounced and retried; Postfix's
//!   SIZE and a missing 8BITMIME are honoured before sending; with and
//!   without PIPELINING.
//! - Postfix → tern: Postfix relays to the real `tern serve` binary (with
//!   STARTTLS), and the messages arrive in tern's Maildirs byte for byte.
//! - SRS: tern forwards by an alias to a domain Postfix relays, with an SRS0
//!   sender; Postfix's bounce to that address goes back through tern to the
//!   original sender's Maildir at Postfix.
//!
//! Each test skips, loudly, only when Postfix is not installed.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::dns::DnsServer;
use support::postfix::{split_postfix_trace, Postfix, PostfixOptions};
use tern::clock::ManualClock;
use tern::config::Config;
use tern::queue::{QueueId, Spool};

const TERN_CONFIG: &str = r#"
hostname = "mx.example.org"
data_dir = "data"
domains = ["example.org"]
[[listener]]
address = "127.0.0.1:0"
role = "mx"
[[user]]
name = "bob"
"#;

/// How long a message may take from tern's queue into Postfix's Maildir.
const DELIVERY: Duration = Duration::from_secs(60);

/// One in-process tern that relays by MX ([`support::mta`]).
struct Mta {
    queue: support::mta::Mta,
    spool: Spool,
    /// Where bob's Maildir is (bounces come to him).
    data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Mta {
    fn start(dns: &DnsServer, port: u16) -> Mta {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(TERN_CONFIG, &dir.path().join("tern.toml")).unwrap();
        config.relay.nameservers = vec![dns.addr];
        config.relay.port = port;
        config.relay.connect_timeout = Duration::from_secs(5);
        config.relay.command_timeout = Duration::from_secs(30);
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let data_dir = config.data_dir.clone();
        let queue = support::mta::Mta::start(config, clock, 4);
        Mta {
            spool: queue.spool.clone(),
            queue,
            data_dir,
            _dir: dir,
        }
    }

    /// Queues `message` as if it had come in over SMTP, with a `Received:`
    /// field of tern's in front.
    async fn send(&self, to: &[&str], message: &Message) -> QueueId {
        self.send_from(Some("bob@example.org"), to, message).await
    }

    /// The same from `sender` (`None`: the null sender of bounces).
    async fn send_from(&self, sender: Option<&str>, to: &[&str], message: &Message) -> QueueId {
        let (prepend, content) = (message.prepend.clone(), message.content.clone());
        self.queue
            .queue(sender, to, prepend, content, message.eight_bit)
            .await
    }

    /// Waits (bounded) until `check` holds.
    async fn wait_until(&self, what: &str, postfix: &Postfix, check: impl Fn(&Spool) -> bool) {
        let deadline = tokio::time::Instant::now() + DELIVERY;
        while !check(&self.spool) {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; Postfix's maillog:\n{}",
                    postfix.maillog()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bounces and notices in bob's Maildir, waiting (bounded) for `n`.
    async fn wait_for_bob(&self, n: usize) -> Vec<String> {
        let dir = self.data_dir.join("mail/bob/new");
        let deadline = tokio::time::Instant::now() + DELIVERY;
        loop {
            let mail = support::read_maildir(&dir);
            if mail.len() >= n {
                return mail
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("bob has {} message(s), expected {n}", mail.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until nothing is queued: every recipient delivered (a failure
    /// would leave a bounce for bob in the queue or in his Maildir).
    async fn wait_until_empty(&self, postfix: &Postfix) {
        let deadline = tokio::time::Instant::now() + DELIVERY;
        while !self.spool.is_empty() {
            if tokio::time::Instant::now() > deadline {
                let entries: Vec<_> = self
                    .spool
                    .entries()
                    .into_iter()
                    .map(|e| (e.last_error(), e.message.statuses))
                    .collect();
                panic!(
                    "tern's queue did not empty: {entries:?}\nPostfix's maillog:\n{}",
                    postfix.maillog()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A test message: tern's trace field and the content as received.
struct Message {
    message_id: String,
    prepend: Vec<u8>,
    content: Vec<u8>,
    eight_bit: bool,
}

impl Message {
    fn new(tag: &str, to: &str, extra_headers: &str, body: &str) -> Message {
        let message_id = format!("<{tag}.interop@example.org>");
        let content = format!(
            "From: Bob <bob@example.org>\r\nTo: {to}\r\nSubject: interop {tag}\r\n\
             Date: Sat, 28 Nov 2026 16:00:00 +0000\r\nMessage-ID: {message_id}\r\n\
             {extra_headers}\r\n{body}"
        );
        Message {
            prepend: format!(
                "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (tern) \
                 with ESMTPSA id {tag};\r\n\tSat, 28 Nov 2026 16:00:00 +0000\r\n"
            )
            .into_bytes(),
            eight_bit: !content.is_ascii(),
            content: content.into_bytes(),
            message_id,
        }
    }

    /// Everything tern sends after DATA, CRLF line ends.
    fn wire(&self) -> Vec<u8> {
        [self.prepend.as_slice(), &self.content].concat()
    }

    /// What Postfix should store: the same with LF line ends.
    fn as_stored_by_postfix(&self) -> Vec<u8> {
        let wire = self.wire();
        let mut out = Vec::with_capacity(wire.len());
        for (i, &b) in wire.iter().enumerate() {
            if !(b == b'\r' && wire.get(i + 1) == Some(&b'\n')) {
                out.push(b);
            }
        }
        out
    }
}

/// Lines starting with dots, including one that is only a dot (which ends
/// the data if a client forgets to stuff it).
fn dots(tag: &str, to: &str) -> Message {
    Message::new(
        tag,
        to,
        "",
        ".leading dot\r\n..two dots\r\n.\r\n..\r\n...\r\nmiddle . dot\r\n. space\r\n.\r\nlast\r\n",
    )
}

/// 8-bit UTF-8 text (BODY=8BITMIME).
fn utf8(tag: &str, to: &str) -> Message {
    Message::new(
        tag,
        to,
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n",
        "Grüße aus Köln — naïve café, ½ €.\r\n日本語のテキスト。\r\nΕλληνικά, русский, 🦀\r\n",
    )
}

/// 1,100 lines of 990 octets (the limit is 998 plus CRLF): about 1 MB.
fn long_lines(tag: &str, to: &str) -> Message {
    let mut body = String::new();
    for i in 0..1100 {
        let line: String = (0..990)
            .map(|j| (b'!' + ((i * 7 + j) % 94) as u8) as char)
            .collect();
        // Every hundredth line starts with a dot too.
        if i % 100 == 0 {
            body.push('.');
            body.push_str(&line[1..]);
        } else {
            body.push_str(&line);
        }
        body.push_str("\r\n");
    }
    Message::new(tag, to, "", &body)
}

/// The delivered copy in `files` whose Message-ID is `message`'s.
fn find<'a>(files: &'a [Vec<u8>], message: &Message) -> &'a [u8] {
    let needle = format!("Message-ID: {}", message.message_id);
    files
        .iter()
        .find(|f| f.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or_else(|| panic!("no delivered copy of {}", message.message_id))
}

/// Checks one copy in Postfix's Maildir: Postfix's trace fields for
/// `recipient`, then exactly what tern sent. Returns Postfix's trace.
fn assert_intact(copy: &[u8], message: &Message, recipient: &str) -> String {
    assert_intact_from(copy, message, recipient, "bob@example.org")
}

/// The same for a message from `sender` (empty for the null sender).
fn assert_intact_from(copy: &[u8], message: &Message, recipient: &str, sender: &str) -> String {
    let (trace, rest) = split_postfix_trace(copy);
    assert!(
        rest == message.as_stored_by_postfix().as_slice(),
        "{} for {recipient} differs after Postfix's trace\n--- trace:\n{trace}--- got ({} octets):\n{}\n--- sent ({} octets):\n{}",
        message.message_id,
        rest.len(),
        String::from_utf8_lossy(&rest[..rest.len().min(2000)]),
        message.as_stored_by_postfix().len(),
        String::from_utf8_lossy(&message.as_stored_by_postfix()[..2000.min(message.as_stored_by_postfix().len())]),
    );
    assert!(
        trace.starts_with(&format!("Return-Path: <{sender}>\n")),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("Delivered-To: {recipient}\n")),
        "{trace}"
    );
    assert!(trace.contains("Received: from mx.example.org ("), "{trace}");
    assert!(
        trace.contains("by postfix.pf.test (Postfix) with "),
        "{trace}"
    );
    trace
}

/// The number of recipients Postfix's queue manager logged for the message
/// with `message_id` (one transaction = one queue file = all recipients).
fn recipients_in_one_queue_file(log: &str, message_id: &str) -> usize {
    let queue_id = log
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("cleanup[")?;
            let rest = rest.split_once("]: ")?.1;
            let (qid, what) = rest.split_once(": ")?;
            (what == format!("message-id={message_id}")).then(|| qid.to_string())
        })
        .unwrap_or_else(|| panic!("Postfix never logged {message_id}:\n{log}"));
    log.lines()
        .find_map(|l| {
            let rest = l.split_once(&format!("{queue_id}: from="))?.1;
            rest.split_once("nrcpt=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no nrcpt for {queue_id}:\n{log}"))
}

fn mx_for(ip: &str) -> DnsServer {
    let dns = DnsServer::start();
    dns.mx("pf.test", 10, "mx.pf.test").a("mx.pf.test", ip);
    dns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_delivers_to_postfix_by_mx_intact() {
    Postfix::require("tern_delivers_to_postfix_by_mx_intact");
    let mut options = PostfixOptions::new("127.0.0.21", "pf.test");
    options.users = vec!["alice", "bob"];
    let postfix = Postfix::start(&options);
    eprintln!("postfix started in {:?}", postfix.start_time);
    let dns = mx_for("127.0.0.21");
    let mta = Mta::start(&dns, postfix.addr.port());

    let started = std::time::Instant::now();
    let dots = dots("dots", "alice@pf.test");
    let utf8 = utf8("utf8", "alice@pf.test");
    let long = long_lines("long", "alice@pf.test");
    let several = Message::new(
        "several",
        "alice@pf.test, bob@pf.test, carol@pf.test",
        "",
        "one transaction, three recipients\r\n.dot\r\n",
    );
    let intl = Message::new(
        "intl",
        "jürgen@pf.test",
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
        "an internationalized recipient, Grüße\r\n",
    );
    mta.send(&["alice@pf.test"], &dots).await;
    mta.send(&["alice@pf.test"], &utf8).await;
    mta.send(&["alice@pf.test"], &long).await;
    mta.send(&["alice@pf.test", "bob@pf.test", "carol@pf.test"], &several)
        .await;
    mta.send(&["jürgen@pf.test"], &intl).await;
    mta.wait_until_empty(&postfix).await;

    let alice = postfix.wait_for("alice", 4, DELIVERY);
    let bob = postfix.wait_for("bob", 1, DELIVERY);
    let others = postfix.wait_for("catchall", 2, DELIVERY);
    eprintln!(
        "5 messages (7 copies) from tern's queue into Postfix's Maildirs in {:?}",
        started.elapsed()
    );
    assert_eq!((alice.len(), bob.len(), others.len()), (4, 1, 2));

    let trace = assert_intact(find(&alice, &dots), &dots, "alice@pf.test");
    assert!(trace.contains(" with ESMTP id "), "plain ESMTP: {trace}");
    let trace = assert_intact(find(&alice, &utf8), &utf8, "alice@pf.test");
    assert!(trace.contains(" with ESMTP id "), "{trace}");
    assert_intact(find(&alice, &long), &long, "alice@pf.test");
    assert_intact(find(&alice, &several), &several, "alice@pf.test");
    assert_intact(find(&bob, &several), &several, "bob@pf.test");
    assert_intact(find(&others, &several), &several, "carol@pf.test");
    let trace = assert_intact(find(&others, &intl), &intl, "jürgen@pf.test");
    assert!(
        trace.contains(" with UTF8SMTP id "),
        "Postfix saw SMTPUTF8: {trace}"
    );

    let log = postfix.maillog();
    assert_eq!(
        recipients_in_one_queue_file(&log, &several.message_id),
        3,
        "three recipients at one domain go in one transaction"
    );
    assert!(
        !log.contains("warning:") && !log.contains("fatal:"),
        "Postfix complained:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_uses_starttls_with_postfix() {
    Postfix::require("tern_uses_starttls_with_postfix");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tern::tls::ensure_self_signed(certs.path(), "mx.pf.test").unwrap();
    let mut options = PostfixOptions::new("127.0.0.22", "pf.test");
    options.users = vec!["alice", "bob"];
    options.tls = Some((cert, key));
    let postfix = Postfix::start(&options);
    let dns = mx_for("127.0.0.22");
    let mta = Mta::start(&dns, postfix.addr.port());

    let dots = dots("dots", "alice@pf.test, bob@pf.test");
    let utf8 = utf8("utf8", "alice@pf.test");
    mta.send(&["alice@pf.test", "bob@pf.test"], &dots).await;
    mta.send(&["alice@pf.test"], &utf8).await;
    mta.wait_until_empty(&postfix).await;

    let alice = postfix.wait_for("alice", 2, DELIVERY);
    let bob = postfix.wait_for("bob", 1, DELIVERY);
    for (copy, message, rcpt) in [
        (find(&alice, &dots), &dots, "alice@pf.test"),
        (find(&bob, &dots), &dots, "bob@pf.test"),
        (find(&alice, &utf8), &utf8, "alice@pf.test"),
    ] {
        let trace = assert_intact(copy, message, rcpt);
        assert!(
            trace.contains("(using TLSv1.3 with cipher ") && trace.contains(" with ESMTPS id "),
            "the message came over STARTTLS: {trace}"
        );
    }
    let log = postfix.maillog();
    assert_eq!(
        log.matches("Anonymous TLS connection established from")
            .count(),
        2,
        "one TLS session per message:\n{log}"
    );
    assert_eq!(recipients_in_one_queue_file(&log, &dots.message_id), 2);
    assert!(
        !log.contains("warning:") && !log.contains("fatal:"),
        "Postfix complained:\n{log}"
    );
}

/// A server that offers STARTTLS but whose TLS is unusable (Postfix limited
/// to TLSv1.0, which rustls does not speak) still gets the message: tern
/// falls back to plaintext on a new connection (RFC 7435 opportunistic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_falls_back_to_plaintext_when_postfix_tls_is_unusable() {
    Postfix::require("tern_falls_back_to_plaintext_when_postfix_tls_is_unusable");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tern::tls::ensure_self_signed(certs.path(), "mx.pf.test").unwrap();
    let mut options = PostfixOptions::new("127.0.0.26", "pf.test");
    options.tls = Some((cert, key));
    options.settings = vec!["smtpd_tls_protocols=TLSv1".into()];
    let postfix = Postfix::start(&options);
    let dns = mx_for("127.0.0.26");
    let mta = Mta::start(&dns, postfix.addr.port());
    let message = dots("fallback", "x@pf.test");
    mta.send(&["x@pf.test"], &message).await;
    mta.wait_until_empty(&postfix).await;
    let got = postfix.wait_for("catchall", 1, DELIVERY);
    let trace = assert_intact(find(&got, &message), &message, "x@pf.test");
    assert!(trace.contains(" with ESMTP id "), "plaintext: {trace}");
    let log = postfix.maillog();
    assert!(
        log.contains("starttls=0/1"),
        "the handshake failed first:\n{log}"
    );
    assert_eq!(log.matches(": client=").count(), 1, "{log}");
}

/// Many messages queued at once (more than the per-destination concurrency),
/// and a bounce (null sender): all arrive, each intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_all_arrive_intact() {
    Postfix::require("a_burst_of_messages_all_arrive_intact");
    let postfix = Postfix::start(&PostfixOptions::new("127.0.0.27", "pf.test"));
    let dns = mx_for("127.0.0.27");
    let mta = Mta::start(&dns, postfix.addr.port());
    let started = std::time::Instant::now();
    let mut messages = Vec::new();
    for i in 0..40 {
        let m = match i % 3 {
            0 => dots(&format!("burst{i}"), "x@pf.test"),
            1 => utf8(&format!("burst{i}"), "x@pf.test"),
            _ => Message::new(
                &format!("burst{i}"),
                "x@pf.test",
                "",
                &format!("{}\r\n", "0123456789".repeat(10)).repeat(40),
            ),
        };
        mta.send(&["x@pf.test"], &m).await;
        messages.push(m);
    }
    let bounce = dots("null-sender", "x@pf.test");
    mta.send_from(None, &["x@pf.test"], &bounce).await;
    mta.wait_until_empty(&postfix).await;
    let got = postfix.wait_for("catchall", 41, DELIVERY);
    eprintln!(
        "41 messages from tern's queue into Postfix's Maildir in {:?}",
        started.elapsed()
    );
    assert_eq!(got.len(), 41);
    for m in &messages {
        assert_intact(find(&got, m), m, "x@pf.test");
    }
    assert_intact_from(find(&got, &bounce), &bounce, "x@pf.test", "");
    let log = postfix.maillog();
    assert!(
        !log.contains("warning:") && !log.contains("fatal:"),
        "Postfix complained:\n{log}"
    );
}

/// Postfix's own replies, one transaction with three outcomes: the accepted
/// recipient gets the message, the rejected one a bounce quoting Postfix, the
/// deferred one stays queued; a message over Postfix's SIZE is refused before
/// it is sent. With `pipelining` off, Postfix does not offer PIPELINING (and
/// 8BITMIME), so the client's one-command-at-a-time path runs.
async fn postfix_replies_are_classified(ip: &'static str, pipelining: bool) {
    let mut options = PostfixOptions::new(ip, "pf.test");
    options.settings = vec![
        "smtpd_recipient_restrictions=check_recipient_access inline:{ \
         {reject@pf.test=550 5.1.1 no such user here}, {defer@pf.test=450 4.2.1 mailbox busy} }"
            .into(),
        "message_size_limit=100000".into(),
    ];
    if !pipelining {
        options
            .settings
            .push("smtpd_discard_ehlo_keywords=pipelining,8bitmime".into());
    }
    let postfix = Postfix::start(&options);
    let dns = mx_for(ip);
    let mta = Mta::start(&dns, postfix.addr.port());

    let mixed = dots("mixed", "ok@pf.test, reject@pf.test, defer@pf.test");
    let rejected = dots("rejected", "reject@pf.test");
    let big = long_lines("big", "ok@pf.test");
    let mixed_id = mta
        .send(&["ok@pf.test", "reject@pf.test", "defer@pf.test"], &mixed)
        .await;
    let rejected_id = mta.send(&["reject@pf.test"], &rejected).await;
    let big_id = mta.send(&["ok@pf.test"], &big).await;
    let eight_bit = utf8("eight-bit", "ok@pf.test");
    let eight_bit_id = mta.send(&["ok@pf.test"], &eight_bit).await;
    let bounces = if pipelining { 3 } else { 4 };

    mta.wait_until("the first attempts", &postfix, |s| {
        s.entry(mixed_id).is_some_and(|e| e.attempts == 1)
            && s.entry(rejected_id).is_none()
            && s.entry(big_id).is_none()
            && (s.entry(eight_bit_id).is_none())
    })
    .await;
    let entry = mta.spool.entry(mixed_id).unwrap();
    assert_eq!(entry.message.statuses[2], tern::queue::RcptStatus::Pending);
    let error = entry.last_error().unwrap_or_default();
    assert!(
        error.contains("mx.pf.test[")
            && error.contains(
                "said: 450 4.2.1 <defer@pf.test>: Recipient address rejected: mailbox busy"
            ),
        "{error}"
    );
    let ok = postfix.wait_for("catchall", if pipelining { 2 } else { 1 }, DELIVERY);
    assert_intact(find(&ok, &mixed), &mixed, "ok@pf.test");
    if pipelining {
        assert_intact(find(&ok, &eight_bit), &eight_bit, "ok@pf.test");
    }

    let all = mta.wait_for_bob(bounces).await.join("\n");
    assert!(
        all.contains("Final-Recipient: rfc822; reject@pf.test")
            && all.contains(
                "said: 550 5.1.1 <reject@pf.test>: Recipient address rejected: no such user here"
            ),
        "{all}"
    );
    assert_eq!(
        all.matches("Final-Recipient: rfc822; reject@pf.test")
            .count(),
        2,
        "{all}"
    );
    assert!(
        !all.contains("Final-Recipient: rfc822; defer@pf.test"),
        "deferred recipients are not bounced: {all}"
    );
    assert!(
        all.contains("552 5.3.4 Message of ") && all.contains("exceeds the 100000 bytes"),
        "{all}"
    );
    if !pipelining {
        assert!(all.contains("554 5.6.3 "), "8-bit to a 7-bit server: {all}");
    }
    let log = postfix.maillog();
    assert!(
        !log.contains("warning:") && !log.contains("fatal:"),
        "Postfix complained:\n{log}"
    );
    assert!(
        !log.contains("size=1092"),
        "the big message was never sent:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_replies_are_classified_per_recipient_pipelined() {
    Postfix::require("postfix_replies_are_classified_per_recipient_pipelined");
    postfix_replies_are_classified("127.0.0.24", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_replies_are_classified_per_recipient_one_by_one() {
    Postfix::require("postfix_replies_are_classified_per_recipient_one_by_one");
    postfix_replies_are_classified("127.0.0.25", false).await;
}

/// Postfix → tern: mail submitted to Postfix for tern's domain is relayed by
/// Postfix's SMTP client (with STARTTLS) to the real tern binary.
#[test]
fn postfix_relays_to_tern_intact() {
    Postfix::require("postfix_relays_to_tern_intact");
    let tern = support::TestServer::start("");
    let mut options = PostfixOptions::new("127.0.0.23", "pf.test");
    options.relays = vec![format!("example.org={}", tern.mx())];
    options.settings = vec![
        "smtp_tls_security_level=may".into(),
        "smtp_tls_loglevel=1".into(),
    ];
    let postfix = Postfix::start(&options);

    let messages = [
        dots("p-dots", "me@example.org"),
        utf8("p-utf8", "me@example.org, bob@example.org"),
        long_lines("p-long", "me@example.org"),
    ];
    let rcpts: [&[&str]; 3] = [
        &["me@example.org"],
        &["me@example.org", "bob@example.org"],
        &["me@example.org"],
    ];
    let started = std::time::Instant::now();
    let mut c = support::Client::connect(postfix.addr);
    assert!(c.command("EHLO client.pf.test").starts_with("250"));
    for (message, to) in messages.iter().zip(rcpts) {
        let body = if message.eight_bit {
            " BODY=8BITMIME"
        } else {
            ""
        };
        let r = c.command(&format!("MAIL FROM:<sender@pf.test>{body}"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in to {
            let r = c.command(&format!("RCPT TO:<{rcpt}>"));
            assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
        }
        assert!(c.command("DATA").starts_with("354"));
        c.send(&tern::outbound::client::dot_stuff(&message.content));
        let r = c.read_reply();
        assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    }
    assert!(c.command("QUIT").starts_with("221"));

    let me = tern.wait_for_messages("me", 3, DELIVERY);
    let bob = tern.wait_for_messages("bob", 1, DELIVERY);
    eprintln!(
        "3 messages (4 copies) through Postfix into tern's Maildirs in {:?}",
        started.elapsed()
    );
    for (files, message, rcpt) in [
        (&me, &messages[0], "me@example.org"),
        (&me, &messages[1], "me@example.org"),
        (&bob, &messages[1], "bob@example.org"),
        (&me, &messages[2], "me@example.org"),
    ] {
        let copy = find(files, message);
        let tern_trace_len = copy.len() - support::strip_trace(copy).len();
        let tern_trace = String::from_utf8_lossy(&copy[..tern_trace_len]);
        assert!(
            tern_trace.starts_with(&format!(
                "Return-Path: <sender@pf.test>\r\nDelivered-To: {rcpt}\r\nReceived: from postfix.pf.test ("
            )),
            "{tern_trace}"
        );
        assert!(
            tern_trace.contains("by mx.example.org (tern) with ESMTPS (TLSv1.3"),
            "Postfix used STARTTLS with tern: {tern_trace}"
        );
        let (postfix_trace, rest) = split_postfix_trace(support::strip_trace(copy));
        assert!(
            postfix_trace.starts_with("Received: from client.pf.test (")
                && postfix_trace.contains("by postfix.pf.test (Postfix) with ESMTP id "),
            "{postfix_trace}"
        );
        assert!(
            rest == message.content.as_slice(),
            "{} for {rcpt} differs after the trace fields:\n{}",
            message.message_id,
            String::from_utf8_lossy(&rest[..rest.len().min(2000)])
        );
    }
    let log = postfix.maillog();
    assert_eq!(
        log.matches(&format!(
            "relay={0}[{0}]:{1}",
            tern.mx().ip(),
            tern.mx().port()
        ))
        .count(),
        4,
        "four copies relayed to tern:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "TLS connection established to {0}[{0}]:{1}",
            tern.mx().ip(),
            tern.mx().port()
        )),
        "{log}"
    );
    assert!(
        !log.contains("warning:") && !log.contains("fatal:"),
        "Postfix complained:\n{log}"
    );
}

/// Issue 13.4 with a real Postfix: tern forwards a message (alias
/// fwd@example.org → friend@gone.test, which Postfix relays onwards) with an
/// SRS sender; Postfix's next hop refuses it, so Postfix bounces to the SRS
/// address; tern accepts the bounce and sends it on to the original sender,
/// alice@pf.test, whose Maildir is Postfix's.
#[test]
fn postfix_bounces_through_the_srs_address_back_to_the_original_sender() {
    Postfix::require("postfix_bounces_through_the_srs_address_back_to_the_original_sender");
    // tern's port must be in Postfix's routes before either starts.
    let tern_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let tern_at = format!("127.0.0.1:{tern_port}");
    let mut options = PostfixOptions::new("127.0.0.28", "pf.test");
    options.users = vec!["alice"];
    // gone.test goes back to tern, which relays for nobody: 554, a bounce.
    options.relays = vec![
        format!("example.org={tern_at}"),
        format!("gone.test={tern_at}"),
    ];
    let postfix = Postfix::start(&options);
    let dns = mx_for("127.0.0.28");
    dns.mx("gone.test", 10, "mx.pf.test");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\ndomains = [\"example.org\"]\n\
         [[listener]]\naddress = \"{tern_at}\"\nrole = \"mx\"\n[[user]]\nname = \"me\"\n\
         [aliases]\n\"fwd@example.org\" = \"friend@gone.test\"\n\
         [relay]\nnameservers = [\"{}\"]\nport = {}\n",
        dir.path().join("data").display(),
        dns.addr,
        postfix.addr.port()
    );
    let tern = support::TestServer::start_with_config(dir, &config);
    let mut c = support::Client::connect(tern.mx());
    c.command("EHLO client.pf.test");
    let reply = c.send_mail(
        "alice@pf.test",
        &["fwd@example.org"],
        b"From: alice@pf.test\r\nTo: fwd@example.org\r\nSubject: via an alias\r\n\r\nhello\r\n",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    // Postfix saw the forwarded copy from an SRS0 sender at example.org.
    let log = postfix.wait_for_log("from=<SRS0=", DELIVERY);
    assert!(log.contains("=pf.test=alice@example.org>"), "{log}");
    // Its bounce came back through tern to alice.
    let alice = postfix.wait_for("alice", 1, DELIVERY);
    let text = String::from_utf8_lossy(&alice[0]);
    assert!(
        text.contains("Undelivered Mail Returned to Sender"),
        "{text}"
    );
    assert!(
        text.contains("by mx.example.org (tern)"),
        "through tern: {text}"
    );
    assert!(
        text.contains("Subject: via an alias"),
        "the original is quoted: {text}"
    );
    let tern_log = tern.log();
    assert!(
        !tern_log.contains("Bad or expired SRS"),
        "tern took its own SRS address back:\n{tern_log}"
    );
}
