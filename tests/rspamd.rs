//! Issue 15: spam filtering with a real rspamd (Debian's 3.4, started
//! privately on a loopback port by scripts/rspamd-instance, its DNS a
//! loopback server of the test) in front of the real tern: GTUBE is refused
//! with 550, a message rspamd scores into `add header` lands in `.Junk/new`
//! with X-Spam fields, a clean one in `new/`; a stopped rspamd gives what
//! `[spam] on_failure` says. Loopback stubs stand in for what a real rspamd
//! cannot be made to do: never answer, or answer garbage or too much.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::dns::DnsServer;
use support::*;

const GTUBE: &[u8] = b"From: <spammer@example.com>\r\nTo: <me@example.org>\r\n\
Subject: test\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <gtube@example.com>\r\n\r\n\
XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

/// No Date: and no Message-ID: rspamd's MISSING_DATE (1.0) and MISSING_MID
/// (2.5) fire, over the instance's add_header threshold of 3.
const SLOPPY: &[u8] = b"From: <sender@example.com>\r\nTo: <me@example.org>\r\n\
Subject: hello\r\n\r\nA message its program forgot to date.\r\n";

const CLEAN: &[u8] = b"From: <sender@example.com>\r\nTo: <me@example.org>\r\n\
Subject: lunch\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <lunch.1@example.com>\r\n\r\nLunch at noon tomorrow?\r\n";

/// A running private rspamd; stopped when dropped.
struct Rspamd {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl Rspamd {
    fn start(dns: &DnsServer) -> Rspamd {
        assert!(
            Path::new("/usr/bin/rspamd").exists(),
            "rspamd is not installed: apt-get install -y rspamd"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        // The workers run as _rspamd (the test runs as root): they must
        // reach their directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let out = Command::new(script("rspamd-instance"))
            .arg("start")
            .arg(dir.path().join("rspamd"))
            .args(["--port", &port.to_string()])
            .args(["--dns", &dns.addr.to_string()])
            .args(["--add-header", "3", "--reject", "15"])
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/rspamd-instance");
        assert!(
            out.status.success(),
            "rspamd did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("rspamd/rspamd.log")).unwrap_or_default()
        );
        Rspamd {
            dir,
            port,
            running: true,
        }
    }

    fn stop(&mut self) {
        if self.running {
            let status = Command::new(script("rspamd-instance"))
                .arg("stop")
                .arg(self.dir.path().join("rspamd"))
                .status()
                .expect("run scripts/rspamd-instance stop");
            assert!(status.success());
            self.running = false;
        }
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new(script("rspamd-instance"))
                .arg("stop")
                .arg(self.dir.path().join("rspamd"))
                .status();
        }
    }
}

fn spam_config(port: u16, extra: &str) -> String {
    format!("[spam]\nrspamd = \"127.0.0.1:{port}\"\n{extra}")
}

fn junk_dir(server: &TestServer) -> PathBuf {
    server.data().join("mail/me/.Junk/new")
}

fn send(server: &TestServer, data: &[u8]) -> String {
    let mut client = server.connect("mx");
    let reply = client.command("EHLO client.example.com");
    assert!(reply.starts_with("250"), "{reply}");
    client.send_mail("sender@example.com", &["me@example.org"], data)
}

#[test]
fn rspamd_decides_reply_and_folder() {
    let dns = DnsServer::start();
    let mut rspamd = Rspamd::start(&dns);
    let server = TestServer::start(&spam_config(rspamd.port, "timeout = \"10s\"\n"));

    let reply = send(&server, GTUBE);
    assert!(
        reply.starts_with("550 5.7.1 "),
        "GTUBE: {reply}; log:\n{}",
        server.log()
    );
    assert!(reply.contains("Gtube pattern"), "rspamd's message: {reply}");

    let reply = send(&server, SLOPPY);
    assert!(reply.starts_with("250"), "sloppy: {reply}");
    let junk = junk_dir(&server);
    wait_until(Duration::from_secs(10), "delivery to .Junk/new", || {
        read_maildir(&junk).len() == 1
    });
    let message = String::from_utf8(read_maildir(&junk).remove(0)).unwrap();
    let head = message.split("\r\n\r\n").next().unwrap();
    assert!(head.contains("\r\nX-Spam-Flag: YES\r\n"), "{head}");
    assert!(head.contains("\r\nX-Spam-Score: 3.40\r\n"), "{head}");
    assert!(
        head.contains("X-Spam-Status: Yes, score=3.40 action=\"add header\""),
        "{head}"
    );
    assert!(
        head.contains("MISSING_MID(2.50)") && head.contains("MISSING_DATE(1.00)"),
        "{head}"
    );
    assert!(message.ends_with("forgot to date.\r\n"));

    // A clean message that brings X-Spam fields of its own: only ours stay.
    let forged = [
        &b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n\ttests=[TRUST_ME]\r\n"[..],
        CLEAN,
    ]
    .concat();
    let reply = send(&server, &forged);
    assert!(reply.starts_with("250"), "clean: {reply}");
    let inbox = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let message = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(
        !message.contains("TRUST_ME") && !message.contains("X-Spam-Flag: NO"),
        "{message}"
    );
    assert_eq!(message.matches("X-Spam-Status:").count(), 1, "{message}");
    assert!(
        server.log().contains("removed 2 X-Spam field(s)"),
        "{}",
        server.log()
    );
    assert!(message.contains("\r\nX-Spam-Score: "), "{message}");
    assert!(
        message.contains("X-Spam-Status: No, score=") && !message.contains("X-Spam-Flag"),
        "{message}"
    );
    assert_eq!(read_maildir(&junk).len(), 1, "the clean one is not in Junk");

    let log = server.log();
    assert!(log.contains("spam action=\"reject\""), "{log}");
    assert!(
        log.contains("spam action=\"add header\" score=3.40"),
        "{log}"
    );

    // rspamd stopped: the default delivers unscanned, with a warning;
    // on_failure = "tempfail" answers 451 4.7.1.
    rspamd.stop();
    let reply = send(&server, CLEAN);
    assert!(reply.starts_with("250"), "rspamd down, accept: {reply}");
    let inbox = server.wait_for_messages("me", 2, Duration::from_secs(10));
    assert!(
        inbox
            .iter()
            .any(|m| !String::from_utf8_lossy(m).contains("X-Spam-")),
        "delivered unscanned"
    );
    assert!(
        server
            .log()
            .contains("delivered unscanned (on_failure = accept)"),
        "{}",
        server.log()
    );
    let strict = TestServer::start(&spam_config(rspamd.port, "on_failure = \"tempfail\"\n"));
    let reply = send(&strict, CLEAN);
    assert!(
        reply.starts_with("451 4.7.1 "),
        "rspamd down, tempfail: {reply}"
    );
}

/// A stub rspamd on loopback: every connection gets `answer` (after
/// reading the request head), or nothing at all for `None`, held open.
fn stub(answer: Option<Vec<u8>>) -> u16 {
    stub_recording(answer).0
}

/// [`stub`], keeping the start of each request it was sent.
fn stub_recording(answer: Option<Vec<u8>>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if let Some(answer) = answer {
                let _ = stream.write_all(&answer);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            } else {
                held.push(stream);
            }
        }
    });
    (port, requests)
}

/// An answer of rspamd's with this action.
fn verdict(action: &str, message: &str) -> Vec<u8> {
    let body =
        format!(r#"{{"action":"{action}","score":99,"messages":{{"smtp_message":"{message}"}}}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_silent_rspamd_costs_the_timeout_and_no_more_and_sessions_do_not_wait_in_line() {
    let port = stub(None);
    let server = TestServer::start(&spam_config(port, "timeout = \"2s\"\n"));
    let started = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = server.mx();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.command("EHLO client.example.com");
                let start = Instant::now();
                let reply = client.send_mail("sender@example.com", &["me@example.org"], CLEAN);
                (reply, start.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (reply, took) = client.join().unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "one session took {took:?}"
        );
    }
    // Three sessions waiting at once cost one timeout, not three.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.log().contains("did not answer within 2s"),
        "{}",
        server.log()
    );
}

#[test]
fn garbage_and_oversized_answers_count_as_rspamd_down() {
    let garbage = stub(Some(
        b"HTTP/1.1 200 OK\r\n\r\n<html>not a verdict</html>".to_vec(),
    ));
    let not_http = stub(Some(b"\x00\xff\r\n\r\n\r\n".to_vec()));
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n{\"action\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2_000_000));
    let oversized = stub(Some(huge));
    for (port, why) in [
        (garbage, "not a verdict: JSON"),
        (not_http, "not a verdict: header section not UTF-8"),
        (oversized, "larger than 65536 bytes"),
    ] {
        let server = TestServer::start(&spam_config(port, ""));
        let reply = send(&server, CLEAN);
        assert!(reply.starts_with("250"), "{why}: {reply}");
        server.wait_for_messages("me", 1, Duration::from_secs(10));
        assert!(server.log().contains(why), "{why}: {}", server.log());
        let strict = TestServer::start(&spam_config(port, "on_failure = \"tempfail\"\n"));
        let reply = send(&strict, CLEAN);
        assert!(reply.starts_with("451 4.7.1"), "{why}: {reply}");
        // Still serving.
        let reply = send(&strict, CLEAN);
        assert!(reply.starts_with("451 4.7.1"), "{why}: {reply}");
    }
}

#[test]
fn rspamds_message_becomes_one_safe_reply_line() {
    // A verdict whose message tries to add a reply line of its own.
    let refuse = stub(Some(verdict("reject", "Spam\\r\\n250 2.0.0 Ok: queued")));
    let server = TestServer::start(&spam_config(refuse, ""));
    let mut client = server.connect("mx");
    client.command("EHLO client.example.com");
    let reply = client.send_mail("sender@example.com", &["me@example.org"], CLEAN);
    assert_eq!(reply, "550 5.7.1 Spam 250 2.0.0 Ok: queued");
    // Nothing else is waiting: the next reply answers the next command.
    assert_eq!(client.command("NOOP"), "250 2.0.0 Ok");
    assert!(server.messages("me").is_empty());
}

#[test]
fn soft_reject_and_greylist_get_451() {
    for action in ["soft reject", "greylist"] {
        let server = TestServer::start(&spam_config(stub(Some(verdict(action, ""))), ""));
        let reply = send(&server, CLEAN);
        assert!(reply.starts_with("451 4.7.1 "), "{action}: {reply}");
    }
}

/// Logs in as `sub` on the submissions port and sends CLEAN with Python's
/// smtplib; what it printed.
fn submit(server: &TestServer) -> support::peers::Run {
    let file = support::peers::unique_file(server.dir.path(), "submit", CLEAN_FROM_SUB);
    let mut cmd = Command::new(support::peers::PYTHON);
    cmd.arg(support::peers::fixture("smtp_submit.py"))
        .args(["--host", "localhost"])
        .args(["--port", &server.addr("submissions").port().to_string()])
        .args(["--tls", "implicit", "--helo", "client.example"])
        .args(["--user", "sub", "--password", "secret"])
        .arg("--cafile")
        .arg(server.data().join("tls/cert.pem"))
        .arg("--file")
        .arg(&file)
        .arg("--sent")
        .arg(server.dir.path().join("sent.eml"));
    support::peers::run(cmd, Duration::from_secs(60))
}

const CLEAN_FROM_SUB: &[u8] = b"From: <sub@example.org>\r\nTo: <me@example.org>\r\n\
Subject: lunch\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <lunch.2@example.org>\r\n\r\nLunch at noon tomorrow?\r\n";

#[test]
fn logged_in_users_are_scanned_only_with_scan_authenticated() {
    let password = password_line("secret");
    for scan in [false, true] {
        let (port, requests) = stub_recording(Some(verdict("reject", "Spam")));
        let server = TestServer::start(&format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
             [[user]]\nname = \"sub\"\n{password}\n{}",
            spam_config(port, &format!("scan_authenticated = {scan}\n"))
        ));
        let run = submit(&server);
        let transcript = run.transcript();
        if scan {
            assert!(
                transcript.contains("550") && transcript.contains("Spam"),
                "{transcript}"
            );
            let requests = requests.lock().unwrap();
            assert_eq!(requests.len(), 1, "{requests:?}");
            assert!(requests[0].contains("\r\nUser: sub\r\n"), "{}", requests[0]);
            assert!(
                requests[0].contains("\r\nRcpt: me@example.org\r\n"),
                "{}",
                requests[0]
            );
            assert!(
                requests[0].contains("\r\nFrom: sub@example.org\r\n"),
                "{}",
                requests[0]
            );
        } else {
            assert!(
                transcript.contains("reply 250 2.0.0 Ok: queued as "),
                "{transcript}"
            );
            assert!(requests.lock().unwrap().is_empty(), "not scanned");
        }
    }
}

/// Local `sendmail` (as root, a privileged caller) of CLEAN to me; (exit
/// code, stderr).
fn local_sendmail(server: &TestServer) -> (i32, String) {
    let mut child = Command::new(tern_bin())
        .args(["sendmail", "-C", server.config_path.to_str().unwrap()])
        .args(["-f", "sender@example.org", "me@example.org"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tern sendmail");
    child.stdin.take().unwrap().write_all(CLEAN).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn local_sendmail_is_scanned_only_with_scan_authenticated() {
    for (action, scan, code, says) in [
        ("reject", false, 0, ""),
        ("reject", true, 65, "refused by the spam filter: Spam"),
        ("soft reject", true, 75, "deferred by the spam filter"),
    ] {
        let (port, requests) = stub_recording(Some(verdict(action, "Spam")));
        let server = TestServer::start(&spam_config(
            port,
            &format!("scan_authenticated = {scan}\n"),
        ));
        let (got, stderr) = local_sendmail(&server);
        assert_eq!(got, code, "{action} scan={scan}: {stderr}");
        assert!(stderr.contains(says), "{stderr}");
        let requests = requests.lock().unwrap();
        if scan {
            assert_eq!(requests.len(), 1, "{requests:?}");
            assert!(
                requests[0].contains("\r\nIP: 127.0.0.1\r\nHelo: localhost\r\n")
                    && requests[0].contains("\r\nRcpt: me@example.org\r\n"),
                "{}",
                requests[0]
            );
        } else {
            assert!(requests.is_empty(), "not scanned: {requests:?}");
            server.wait_for_messages("me", 1, Duration::from_secs(10));
        }
    }
}
