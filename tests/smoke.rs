//! The shortest end-to-end path: one message over the real listener lands in
//! the Maildir, byte for byte after our trace headers.

mod support;

use std::time::Duration;
use support::*;

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

/// A machine without CA certificates (the appliance image before
/// ca-certificates, a container) still runs tern: only verified outbound TLS
/// needs them, and it says so when used.
#[test]
fn starts_without_any_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let config = BASE_CONFIG.replace("{data}", dir.path().join("data").to_str().unwrap())
        + "\n[relay]\nnameservers = [\"127.0.0.1:9\"]\n";
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(tern_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("SSL_CERT_FILE", "/nonexistent")
        .env("SSL_CERT_DIR", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a tern that neither gets ready nor exits is stopped.
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(100));
            if finished.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        unsafe_kill(pid, "KILL");
    });
    let stderr = child.stderr.take().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines.map_while(Result::ok).take(30) {
        let ready = line.contains("ready:");
        seen.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Reaped: the watchdog must not signal a pid that may be reused.
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        seen.iter().any(|l| l.contains("ready:")),
        "tern did not get ready:\n{}",
        seen.join("\n")
    );
}
