//! Checks of delivered messages: the Maildir file of a queue id, our trace
//! headers (Return-Path, Delivered-To, Received) and, byte for byte, what
//! follows them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::harness::{strip_trace, TestServer};

/// The Maildir `new/` file of message `queue_id` for `user`: tern names it
/// `<secs>.Q<queue id>R<recipient index>.<host>`. Waits up to `timeout`.
pub fn wait_for_queue_id(
    server: &TestServer,
    user: &str,
    queue_id: &str,
    timeout: Duration,
) -> (PathBuf, Vec<u8>) {
    let needle = format!(".Q{queue_id}R");
    let deadline = Instant::now() + timeout;
    loop {
        let found: Vec<PathBuf> = std::fs::read_dir(server.new_dir(user))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().contains(&needle))
            .collect();
        match found.as_slice() {
            [one] => {
                let bytes = std::fs::read(one).expect("read delivered message");
                return (one.clone(), bytes);
            }
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            [] => panic!(
                "queue id {queue_id} never reached {user}'s Maildir; log:\n{}",
                server.log()
            ),
            many => panic!(
                "{user} got queue id {queue_id} {} times: {many:?}",
                many.len()
            ),
        }
    }
}

/// What one delivered copy must look like.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The envelope sender, as in `Return-Path: <...>`.
    pub from: &'a str,
    /// The RCPT TO address this copy is for (`Delivered-To:`).
    pub rcpt: &'a str,
    /// The EHLO name the client gave.
    pub helo: &'a str,
    /// The `with` keyword: ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS.
    pub protocol: &'a str,
    /// The message had this one recipient (then `for <rcpt>` is in Received).
    pub single_recipient: bool,
    pub queue_id: &'a str,
    /// What the client sent, after dot-unstuffing, with CRLF line ends.
    pub body: &'a [u8],
}

/// Checks a delivered file against `expected`; panics with a precise
/// description of the first difference.
pub fn check(file: &[u8], expected: &Expected) {
    let head = format!(
        "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
        expected.from, expected.rcpt
    );
    assert!(
        file.starts_with(head.as_bytes()),
        "delivered file should start with {head:?}; it starts with {:?}",
        String::from_utf8_lossy(&file[..file.len().min(200)])
    );
    let after_head = &file[head.len()..];
    let body = strip_trace(file);
    let received = &after_head[..after_head.len() - body.len()];
    let received = String::from_utf8(received.to_vec()).expect("Received: is UTF-8");
    check_received(&received, expected);
    assert_same_bytes(body, expected.body);
}

/// The `Received:` header tern adds (RFC 5321 §4.4), folded with CRLF TAB.
fn check_received(received: &str, expected: &Expected) {
    let mut wanted = format!(
        "Received: from {} ([127.0.0.1])\r\n\tby mx.example.org (tern) with {}",
        expected.helo, expected.protocol
    );
    assert!(
        received.starts_with(&wanted),
        "Received should start with {wanted:?}:\n{received}"
    );
    let rest = &received[wanted.len()..];
    let tls = expected.protocol.ends_with('S');
    if tls {
        // e.g. " (TLSv1.3 TLS13_AES_256_GCM_SHA384)"
        assert!(
            rest.starts_with(" (TLSv1.3 TLS13_") || rest.starts_with(" (TLSv1.2 TLS_"),
            "a TLS session should name its protocol and cipher:\n{received}"
        );
    } else {
        assert!(
            rest.starts_with(" id "),
            "a plaintext session names no cipher:\n{received}"
        );
    }
    wanted = format!(" id {}", expected.queue_id);
    assert!(rest.contains(&wanted), "no {wanted:?} in:\n{received}");
    let for_clause = format!("\r\n\tfor <{}>;", expected.rcpt);
    assert_eq!(
        received.contains(&for_clause),
        expected.single_recipient,
        "`for <rcpt>` only for a single recipient:\n{received}"
    );
    assert!(
        received.ends_with(" +0000\r\n"),
        "Received ends with its date:\n{received}"
    );
    assert!(received.contains(";\r\n\t"), "date after `;`:\n{received}");
}

/// Byte-for-byte equality, reported by the first differing offset.
pub fn assert_same_bytes(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |b: &[u8]| {
        let start = at.saturating_sub(40);
        String::from_utf8_lossy(&b[start.min(b.len())..(at + 40).min(b.len())]).into_owned()
    };
    panic!(
        "delivered body differs from what was sent: {} bytes delivered, {} sent, \
         first difference at offset {at}\n delivered: {:?}\n      sent: {:?}",
        got.len(),
        want.len(),
        window(got),
        window(want)
    );
}
