//! Two real tern processes, server to server: the source finds the sink by an
//! MX record on a real DNS server on loopback, and relays to it with
//! opportunistic STARTTLS — mail forwarded by an alias, and mail a user
//! submits on port 587 with AUTH (whose Received: keeps the client's address
//! private unless `[submission] trace = true`). Forwarded mail leaves with an
//! SRS sender, and a bounce to it comes back to the original sender; a
//! forged SRS address is refused.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::dns::DnsServer;
use support::TestServer;

const PASSWORD: &str = "correct horse";

/// The sink: mx.remote.test on 127.0.0.10, user friend@remote.test.
fn sink() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "hostname = \"mx.remote.test\"\ndata_dir = \"{}\"\ndomains = [\"remote.test\"]\n\
         [[listener]]\naddress = \"127.0.0.10:0\"\nrole = \"mx\"\n[[user]]\nname = \"friend\"\n\
         [relay]\nnameservers = [\"127.0.0.1:9\"]\n[mx]\nverify_sender_domain = false\n",
        dir.path().join("data").display()
    );
    TestServer::start_with_config(dir, &config)
}

/// The source: the base test config plus a submission listener, a password
/// for `me`, an alias forwarding to the sink, and DNS on loopback.
fn source(dns: &DnsServer, sink_port: u16, trace: bool) -> TestServer {
    let hash = tern::inbound::auth::hash_password(PASSWORD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\ndomains = [\"example.org\"]\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
         [[user]]\nname = \"me\"\npassword = \"{hash}\"\n\
         [aliases]\n\"fwd@example.org\" = \"friend@remote.test\"\n\
         [relay]\nnameservers = [\"{}\"]\nport = {sink_port}\n\
         [submission]\ntrace = {trace}\n",
        dir.path().join("data").display(),
        dns.addr
    );
    TestServer::start_with_config(dir, &config)
}

fn dns() -> DnsServer {
    let dns = DnsServer::start();
    dns.mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", "127.0.0.10")
        // The outside sender's domain exists: the source checks it at MAIL.
        .mx("b.example", 10, "mx.b.example");
    dns
}

#[test]
fn an_alias_forwards_to_another_tern_by_mx_over_tls() {
    let sink = sink();
    let dns = dns();
    let src = source(&dns, sink.addr("mx").port(), false);
    let mut c = src.connect("mx");
    c.command("EHLO client.example");
    // Sent dot-stuffed (the test client does not stuff): ".dot line" arrives.
    let data = b"From: a@b.example\r\nSubject: forwarded\r\n\r\n..dot line\r\nbody\r\n";
    let reply = c.send_mail("a@b.example", &["fwd@example.org"], data);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let got = sink.wait_for_messages("friend", 1, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&got[0]);
    // The sink's Received (TLS from the source), then the source's own.
    assert!(
        text.contains("by mx.remote.test (tern) with ESMTPS (TLSv1.3"),
        "{text}"
    );
    assert!(
        text.contains(
            "Received: from client.example ([127.0.0.1])\r\n\tby mx.example.org (tern) with ESMTP"
        ),
        "{text}"
    );
    // Issue 13.4: the forwarded copy's sender is rewritten by SRS at our
    // domain, so SPF at the destination checks example.org, not b.example.
    let return_path = text.lines().next().unwrap_or_default();
    assert!(
        return_path.starts_with("Return-Path: <SRS0=")
            && return_path.ends_with("=b.example=a@example.org>"),
        "{text}"
    );
    assert!(
        text.contains("\r\nDelivered-To: friend@remote.test\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n.dot line\r\nbody\r\n"), "{text:?}");
    // The source's queue is empty again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !src.log().contains("removed") {
        assert!(std::time::Instant::now() < deadline, "{}", src.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Submits over 587 (STARTTLS + AUTH) with Python's smtplib.
fn submit(src: &TestServer, to: &str, data: &[u8]) {
    let file = src.dir.path().join("submit.eml");
    std::fs::write(&file, data).unwrap();
    let cert = src.data().join("tls/cert.pem");
    let out = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_send.py"))
        .args([
            "--host",
            "localhost",
            "--port",
            &src.addr("submission").port().to_string(),
        ])
        .args(["--from", "me@example.org", "--to", to, "--starttls"])
        .arg(format!("--auth=me:{PASSWORD}"))
        .arg("--cafile")
        .arg(&cert)
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_submitted_message_relays_and_the_owner_stays_private() {
    let sink = sink();
    let dns = dns();
    for (trace, n) in [(false, 1), (true, 2)] {
        let src = source(&dns, sink.addr("mx").port(), trace);
        let data =
            format!("From: me@example.org\r\nSubject: submitted, trace {trace}\r\n\r\nhi\r\n");
        submit(&src, "friend@remote.test", data.as_bytes());
        let got = sink.wait_for_messages("friend", n, Duration::from_secs(15));
        let text = String::from_utf8_lossy(&got[n - 1]).into_owned();
        let source_received = text
            .split("Received: ")
            .find(|r| r.contains("by mx.example.org"))
            .unwrap_or_else(|| panic!("no Received of the source: {text}"))
            .to_string();
        if trace {
            assert!(source_received.contains("[127.0.0.1]"), "{source_received}");
            assert!(
                source_received.contains("authenticated as me"),
                "{source_received}"
            );
        } else {
            assert!(!source_received.contains("127.0.0.1"), "{source_received}");
            assert!(
                !source_received.contains("authenticated"),
                "{source_received}"
            );
        }
        assert!(text.contains(&format!("Subject: submitted, trace {trace}")));
    }
}

/// The sink also hosts b.example (user `a`), the outside sender's domain, so
/// a bounce the source sends back to the original sender can be seen.
fn sink_with_sender_domain() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "hostname = \"mx.remote.test\"\ndata_dir = \"{}\"\ndomains = [\"remote.test\", \"b.example\"]\n\
         [[listener]]\naddress = \"127.0.0.10:0\"\nrole = \"mx\"\n[[user]]\nname = \"friend\"\n\
         [[user]]\nname = \"a\"\n\
         [relay]\nnameservers = [\"127.0.0.1:9\"]\n[mx]\nverify_sender_domain = false\n\
         authenticate = false\n",
        dir.path().join("data").display()
    );
    TestServer::start_with_config(dir, &config)
}

#[test]
fn a_bounce_to_the_srs_address_returns_to_the_original_sender() {
    let sink = sink_with_sender_domain();
    let dns = DnsServer::start();
    dns.mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", "127.0.0.10")
        .mx("b.example", 10, "mx.remote.test");
    let src = source(&dns, sink.addr("mx").port(), false);
    let mut c = src.connect("mx");
    c.command("EHLO client.example");
    let data = b"From: a@b.example\r\nSubject: forwarded\r\n\r\nbody\r\n";
    let reply = c.send_mail("a@b.example", &["fwd@example.org"], data);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let got = sink.wait_for_messages("friend", 1, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&got[0]);
    let srs = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Return-Path: <"))
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("no Return-Path: {text}"))
        .to_string();
    assert!(srs.starts_with("SRS0="), "{srs}");

    // The destination bounces: to the SRS address, from <>. The source
    // accepts it and sends it on to a@b.example.
    let mut bounce = src.connect("mx");
    bounce.command("EHLO mx.remote.test");
    let reply = bounce.send_mail(
        "",
        &[&srs],
        b"From: MAILER-DAEMON@remote.test\r\nSubject: Undeliverable\r\n\r\nsorry\r\n",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let back = sink.wait_for_messages("a", 1, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&back[0]);
    assert!(text.starts_with("Return-Path: <>\r\n"), "{text}");
    assert!(text.contains("Subject: Undeliverable"), "{text}");
    // Lowercased by some MTA on the way: still ours.
    let mut lower = src.connect("mx");
    lower.command("EHLO mx.remote.test");
    lower.command("MAIL FROM:<>");
    let r = lower.command(&format!("RCPT TO:<{}>", srs.to_lowercase()));
    assert!(r.starts_with("250"), "{r}");

    // Forged: a hash we never made, or a made-up address.
    let forged = {
        let mut parts: Vec<&str> = srs.splitn(3, '=').collect();
        parts[1] = if parts[1] == "AAAA" { "BBBB" } else { "AAAA" };
        parts.join("=")
    };
    for address in [forged.as_str(), "SRS0=abcd=ZZ=evil.example=x@example.org"] {
        let mut c = src.connect("mx");
        c.command("EHLO forger.example");
        c.command("MAIL FROM:<>");
        let r = c.command(&format!("RCPT TO:<{address}>"));
        assert_eq!(r, "550 5.1.1 Bad or expired SRS address", "{address}");
    }
}
