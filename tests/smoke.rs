//! The shortest end-to-end path: one message over the real listener lands in
//! the Maildir, byte for byte after our trace headers.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn one_message_reaches_the_maildir() {
    let server = TestServer::start("");
    let mut c = server.connect("mx");
    assert!(c
        .command("EHLO client.example")
        .starts_with("250-mx.example.org"));
    let data = b"From: a@b.example\r\nSubject: smoke\r\n\r\nhello\r\n";
    let reply = c.send_mail("a@b.example", &["me@example.org"], data);
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    assert!(c.command("QUIT").starts_with("221"));
    let msgs = server.wait_for_messages("me", 1, Duration::from_secs(10));
    assert_eq!(strip_trace(&msgs[0]), data);
    let text = String::from_utf8_lossy(&msgs[0]);
    assert!(text.starts_with("Return-Path: <a@b.example>\r\nDelivered-To: me@example.org\r\nReceived: from client.example ([127.0.0.1])\r\n"), "{text}");
}
