//! `systemctl reload tern` is SIGHUP: the new tern.toml takes effect for new
//! sessions, open sessions keep going, and a broken file is refused with the
//! old configuration still serving.

mod support;

use std::time::{Duration, Instant};
use support::*;

fn wait_for_log(server: &TestServer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let server = TestServer::start("");
    let original = std::fs::read_to_string(&server.config_path).unwrap();

    // A session opened before the reload.
    let mut before = server.connect("mx");
    before.command("EHLO early.example");
    assert!(before.command("MAIL FROM:<a@b.example>").starts_with("250"));

    let mut c = server.connect("mx");
    c.command("EHLO c.example");
    c.command("MAIL FROM:<a@b.example>");
    assert!(c
        .command("RCPT TO:<carol@example.org>")
        .starts_with("550 5.1.1"));
    c.command("QUIT");

    std::fs::write(
        &server.config_path,
        format!("{original}\n[[user]]\nname = \"carol\"\n"),
    )
    .unwrap();
    unsafe_kill(server.pid(), "HUP");
    wait_for_log(&server, "reloaded:");

    let mut c = server.connect("mx");
    c.command("EHLO c.example");
    let reply = c.send_mail(
        "a@b.example",
        &["carol@example.org"],
        b"Subject: hi carol\r\n\r\nwelcome\r\n",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    server.wait_for_messages("carol", 1, Duration::from_secs(10));

    // The session from before the reload still works.
    assert!(before
        .command("RCPT TO:<me@example.org>")
        .starts_with("250"));
    assert!(before.command("QUIT").starts_with("221"));

    // A broken file changes nothing.
    std::fs::write(
        &server.config_path,
        format!("{original}\n[[user]]\nname = \"dave\"\nmailbox = 1\n"),
    )
    .unwrap();
    unsafe_kill(server.pid(), "HUP");
    wait_for_log(&server, "reload refused");
    assert!(
        server.log().contains("unknown key \"mailbox\""),
        "{}",
        server.log()
    );
    let mut c = server.connect("mx");
    c.command("EHLO c.example");
    c.command("MAIL FROM:<a@b.example>");
    assert!(
        c.command("RCPT TO:<carol@example.org>").starts_with("250"),
        "carol still exists"
    );
    assert!(
        c.command("RCPT TO:<dave@example.org>").starts_with("550"),
        "dave was never added"
    );
}
