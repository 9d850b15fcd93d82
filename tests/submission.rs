//! Authenticated submission with real mail clients: Python's smtplib
//! (`tests/fixtures/smtp_submit.py`: `login()` + `send_message()`) and swaks,
//! on port 587 (STARTTLS) and port 465 (TLS from the first byte, RFC 8314),
//! logging in with AUTH PLAIN and LOGIN as user `sub`, whose password hash
//! comes from `tern user passwd` itself.
//!
//! Every submitted message must reach the local Maildir with our trace
//! headers — a `Received:` that names the client's EHLO but neither its
//! address nor the login (submission privacy) — followed, byte for byte, by
//! what the client sent. Failed logins get 535 and are logged with the
//! peer's address; the sixth failure in a row from one address gets 454
//! (the throttle), the right password included, while other addresses still
//! log in. A forged sender is refused with 553 at MAIL FROM; a From: or
//! Sender: that is not the login's (the null sender too) with 550 5.7.1
//! after DATA, unless the user's `send_as` lists it (issue 9 point 7).
//!
//! TLS is verified by the clients wherever they connect by name: the server's
//! self-signed certificate (data_dir/tls/cert.pem) is the trust anchor and
//! names `localhost`.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::delivered::{assert_same_bytes, wait_for_queue_id};
use support::peers::{fixture, run, swaks, unique_file, Run, PEER_TIMEOUT, PYTHON};
use support::{strip_trace, tern_bin, TestServer};

const USER: &str = "sub";
const PASSWORD: &str = "secret";
const SENDER: &str = "sub@example.org";
const HELO: &str = "client.example";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `password = "$argon2id$..."` line `tern user passwd` prints for
/// [`PASSWORD`] (made once: argon2 is slow by design).
fn password_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        let mut child = Command::new(tern_bin())
            .args(["user", "passwd", USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tern user passwd");
        // Not a terminal: it reads one line from standard input.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                // Our own child, by its pid.
                let _ = child.kill();
                panic!("tern user passwd did not finish in 60s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().expect("output");
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert!(out.status.success(), "tern user passwd: {stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("password = \"$argon2id$"))
            .unwrap_or_else(|| panic!("no password line in {stdout:?}"));
        line.to_string()
    })
}

/// A server with both submission listeners and user `sub`.
fn server() -> TestServer {
    TestServer::start(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
         [[user]]\nname = \"{USER}\"\n{}\n",
        password_line()
    ))
}

/// The message a client submits: 8-bit UTF-8, and lines that only survive
/// dot-stuffing when both sides get it right.
fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Sub <{SENDER}>\r\nTo: Me <me@example.org>\r\nSubject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n\
         Message-ID: <{}.{subject}@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
         \r\nGrüße aus Köln — submitted with {subject}.\r\n\r\n.a line starting with a dot\r\n\
         .\r\n..\r\n\r\n-- \r\nSub\r\n",
        std::process::id()
    )
    .into_bytes()
}

/// Checks the copy of `queue_id` delivered to me@example.org: our trace
/// headers (a Received: without the client's address or login) and then
/// exactly `body`.
fn check_delivered(server: &TestServer, queue_id: &str, body: &[u8]) {
    let (path, file) = wait_for_queue_id(server, "me", queue_id, DELIVERY_TIMEOUT);
    let head = format!("Return-Path: <{SENDER}>\r\nDelivered-To: me@example.org\r\n");
    assert!(
        file.starts_with(head.as_bytes()),
        "{} should start with {head:?}",
        path.display()
    );
    let after_head = &file[head.len()..];
    let rest = strip_trace(&file);
    let received = String::from_utf8(after_head[..after_head.len() - rest.len()].to_vec())
        .expect("Received: is UTF-8");
    check_received(&received, queue_id);
    assert_same_bytes(rest, body);
}

/// Submission's `Received:`: the client's EHLO name, TLS, the queue id, and
/// nothing that says where the user is or who they are.
fn check_received(received: &str, queue_id: &str) {
    let wanted = format!("Received: from {HELO}\r\n\tby mx.example.org (tern) with ");
    assert!(
        received.starts_with(&wanted),
        "Received should start with {wanted:?} (no client address):\n{received}"
    );
    assert!(
        received.contains(" (TLSv1.3 TLS13_") || received.contains(" (TLSv1.2 TLS_"),
        "the TLS version and cipher:\n{received}"
    );
    assert!(received.contains(&format!(" id {queue_id}")), "{received}");
    for secret in ["127.0.0.1", "[127.", "authenticated", USER] {
        assert!(
            !received.contains(secret),
            "Received names {secret:?}:\n{received}"
        );
    }
}

// ---------------------------------------------------------------------------
// Python smtplib
// ---------------------------------------------------------------------------

/// smtplib over `tls` ("starttls" on 587, "implicit" on 465), with `AUTH
/// mechanism` (smtplib's choice if `None`) and these extra MAIL parameters.
fn python_submit(tls: &str, mechanism: Option<&str>, mail_options: &[&str]) {
    assert!(Path::new(PYTHON).is_file(), "{PYTHON} is missing");
    let server = server();
    let role = if tls == "implicit" {
        "submissions"
    } else {
        "submission"
    };
    let subject = format!("smtplib-{tls}");
    let sent = message(&subject);
    let file = unique_file(server.dir.path(), "python", &sent);
    let sent_path = server.dir.path().join("python-sent.eml");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("smtp_submit.py"))
        .args(["--host", "localhost"])
        .args(["--port", &server.addr(role).port().to_string()])
        .args(["--tls", tls, "--helo", HELO])
        .args(["--user", USER, "--password", PASSWORD])
        .arg("--cafile")
        .arg(server.data().join("tls/cert.pem"))
        .arg("--file")
        .arg(&file)
        .arg("--sent")
        .arg(&sent_path);
    if let Some(m) = mechanism {
        cmd.args(["--mechanism", m]);
    }
    for option in mail_options {
        cmd.arg(format!("--mail-option={option}"));
    }
    let out = run(cmd, PEER_TIMEOUT);
    assert!(out.success, "smtplib failed:\n{}", out.transcript());
    for line in [
        "offered PLAIN LOGIN\n",
        "auth 235 2.7.0 Authentication successful\n",
        "reply 250 2.0.0 Ok: queued as ",
    ] {
        assert!(out.stdout.contains(line), "{line:?}:\n{}", out.transcript());
    }
    assert!(
        out.stdout.contains("tls TLSv1.3 ") || out.stdout.contains("tls TLSv1.2 "),
        "{}",
        out.transcript()
    );
    let auth = format!("send: 'AUTH {}", mechanism.unwrap_or("PLAIN"));
    assert!(
        out.stderr.contains(&auth),
        "{auth:?}:\n{}",
        out.transcript()
    );
    // send_message() gave DATA the message exactly as we wrote it.
    let handed = std::fs::read(&sent_path).expect("what smtplib sent");
    assert_same_bytes(&handed, &sent);
    let queue_id = out.queue_id().expect("queue id");
    check_delivered(&server, &queue_id, &sent);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("peer=127.0.0.1:") && l.contains("authenticated as sub")),
        "no `peer=127.0.0.1:… authenticated as sub` in the log:\n{log}"
    );
}

#[test]
fn python_587_starttls_login_send_message() {
    python_submit("starttls", None, &[]);
}

#[test]
fn python_465_implicit_tls_login_send_message() {
    python_submit("implicit", None, &[]);
}

#[test]
fn python_465_implicit_tls_auth_login() {
    python_submit("implicit", Some("LOGIN"), &[]);
}

/// RFC 4954 §3 (5): the AUTH extension adds the `AUTH=` parameter to MAIL
/// FROM, so a server that advertises AUTH must accept it — `<>` or the
/// mailbox the client vouches for. MTAs that relay through a smarthost
/// with a login may send it (sendmail does once authenticated; Exim with
/// `authenticated_sender`).
///
/// (This test found that `AUTH=<>` used to be refused with 555; the MAIL
/// parameter parser now accepts and ignores it.)
#[test]
fn python_587_mail_from_with_auth_parameter() {
    python_submit("starttls", None, &["AUTH=<>"]);
}

// ---------------------------------------------------------------------------
// swaks
// ---------------------------------------------------------------------------

/// How swaks connects and logs in.
struct Swaks<'a> {
    /// "submission" (STARTTLS) or "submissions" (--tls-on-connect).
    role: &'a str,
    mechanism: &'a str,
    password: &'a str,
    from: &'a str,
    /// Source address (`--local-interface`); then swaks connects to
    /// 127.0.0.1 by address and does not check the certificate's name.
    source: Option<&'a str>,
}

impl Default for Swaks<'_> {
    fn default() -> Self {
        Swaks {
            role: "submission",
            mechanism: "PLAIN",
            password: PASSWORD,
            from: SENDER,
            source: None,
        }
    }
}

/// Runs swaks (which must be installed: .ci/run installs it).
fn swaks_submit(server: &TestServer, how: &Swaks, message: &[u8]) -> Run {
    let swaks = swaks();
    // The message with its closing dot: swaks sends it as is, quoting
    // leading dots, and adds no line of its own.
    let mut data = message.to_vec();
    data.extend_from_slice(b".\r\n");
    let file = unique_file(server.dir.path(), "swaks", &data);
    let port = server.addr(how.role).port();
    let mut cmd = Command::new(swaks);
    match how.source {
        None => {
            cmd.args(["--server", &format!("localhost:{port}")])
                .args(["--tls-verify", "--tls-ca-path"])
                .arg(server.data().join("tls/cert.pem"));
        }
        Some(ip) => {
            cmd.args(["--server", &format!("127.0.0.1:{port}")])
                .args(["--local-interface", ip]);
        }
    }
    cmd.arg(if how.role == "submissions" {
        "--tls-on-connect"
    } else {
        "--tls"
    })
    .args(["--ehlo", HELO, "--from", how.from, "--to", "me@example.org"])
    .args(["--auth", how.mechanism, "--auth-user", USER])
    .args(["--auth-password", how.password])
    .args(["--timeout", "60"])
    .arg("--data")
    .arg(format!("@{}", file.display()));
    run(cmd, PEER_TIMEOUT)
}

fn swaks_delivers(role: &str, mechanism: &str) {
    let server = server();
    let message = message(&format!("swaks-{role}-{mechanism}"));
    let how = Swaks {
        role,
        mechanism,
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &how, &message);
    assert!(out.success, "swaks failed:\n{}", out.transcript());
    for line in [
        "=== TLS started with cipher TLSv1.",
        "250 AUTH PLAIN LOGIN",
        &format!("~> AUTH {mechanism}"),
        "235 2.7.0 Authentication successful",
    ] {
        assert!(out.stdout.contains(line), "{line:?}:\n{}", out.transcript());
    }
    if role == "submissions" {
        assert!(
            !out.stdout.contains("STARTTLS"),
            "465 is TLS from the first byte:\n{}",
            out.transcript()
        );
    }
    let queue_id = out
        .queue_id()
        .unwrap_or_else(|| panic!("no `queued as`:\n{}", out.transcript()));
    check_delivered(&server, &queue_id, &message);
    assert!(
        server.log().contains("authenticated as sub"),
        "{}",
        server.log()
    );
}

#[test]
fn swaks_587_starttls_auth_plain() {
    swaks_delivers("submission", "PLAIN");
}

#[test]
fn swaks_587_starttls_auth_login() {
    swaks_delivers("submission", "LOGIN");
}

#[test]
fn swaks_465_tls_on_connect_auth_plain() {
    swaks_delivers("submissions", "PLAIN");
}

#[test]
fn swaks_465_tls_on_connect_auth_login() {
    swaks_delivers("submissions", "LOGIN");
}

/// A wrong password: 535 5.7.8, nothing queued, and the log names the
/// peer's address and the login that failed.
#[test]
fn swaks_wrong_password_gets_535_and_is_logged_with_the_peer() {
    let server = server();
    let how = Swaks {
        password: "not the password",
        source: Some("127.0.0.3"),
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &how, &message("wrong"));
    assert!(!out.success, "swaks should fail:\n{}", out.transcript());
    assert!(
        out.stdout
            .contains("535 5.7.8 Authentication credentials invalid"),
        "{}",
        out.transcript()
    );
    assert!(!out.stdout.contains("MAIL FROM"), "{}", out.transcript());
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("peer=127.0.0.3:")
            && l.contains("AUTH failed")
            && l.contains("\"sub\"")),
        "no `peer=127.0.0.3:… AUTH failed for \"sub\"` in the log:\n{log}"
    );
    assert!(!log.contains("status=queued"), "{log}");
    assert!(server.messages("me").is_empty());
}

/// Logged in as sub, MAIL FROM another user's address: 553 5.7.1.
#[test]
fn swaks_forged_sender_gets_553() {
    let server = server();
    let how = Swaks {
        from: "bob@example.org",
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &how, &message("forged"));
    assert!(!out.success, "swaks should fail:\n{}", out.transcript());
    assert!(
        out.stdout.contains("235 2.7.0") && out.stdout.contains("553 5.7.1"),
        "{}",
        out.transcript()
    );
    assert!(!server.log().contains("status=queued"));
}

/// [`message`] with its `From:` line replaced by `from` (and `extra`
/// header lines after it).
fn message_from(subject: &str, from: &str, extra: &str) -> Vec<u8> {
    let text = String::from_utf8(message(subject)).expect("UTF-8");
    let own = format!("From: Sub <{SENDER}>\r\n");
    assert!(text.starts_with(&own));
    format!("From: {from}\r\n{extra}{}", &text[own.len()..]).into_bytes()
}

/// swaks as sub, MAIL FROM `envelope`, with `message`: must end in a
/// refusal after DATA that says `says`, and nothing is queued.
fn refused_after_data(server: &TestServer, envelope: &str, message: &[u8], says: &str) {
    let how = Swaks {
        from: envelope,
        ..Swaks::default()
    };
    let out = swaks_submit(server, &how, message);
    assert!(!out.success, "swaks should fail:\n{}", out.transcript());
    assert!(
        out.stdout.contains("235 2.7.0") && out.stdout.contains(says),
        "{says:?}:\n{}",
        out.transcript()
    );
    let log = server.log();
    assert!(!log.contains("status=queued"), "{log}");
    assert!(
        log.contains("user=sub message refused: "),
        "the refusal is logged: {log}"
    );
    assert!(server.messages("me").is_empty());
}

/// Issue 9 point 7: logged in as sub with its own MAIL FROM, a From: naming
/// another user (Alice) gets 550 5.7.1 after DATA, naming the address.
#[test]
fn swaks_foreign_from_header_gets_550_after_data() {
    let server = server();
    let forged = message_from("forged-from", "Alice <me@example.org>", "");
    refused_after_data(
        &server,
        SENDER,
        &forged,
        "550 5.7.1 From: address <me@example.org> is not one that user sub may send as",
    );
}

/// The null sender does not lift the From: rule.
#[test]
fn swaks_null_sender_with_foreign_from_gets_550() {
    let server = server();
    let forged = message_from("null-sender", "Postmaster <postmaster@example.org>", "");
    refused_after_data(
        &server,
        "<>",
        &forged,
        "550 5.7.1 From: address <postmaster@example.org> is not one",
    );
}

/// A Sender: field is held to the same rule as From:.
#[test]
fn swaks_foreign_sender_header_gets_550() {
    let server = server();
    let forged = message_from(
        "sender",
        "Sub <sub@example.org>",
        "Sender: bob@example.net\r\n",
    );
    refused_after_data(
        &server,
        SENDER,
        &forged,
        "550 5.7.1 Sender: address <bob@example.net> is not one",
    );
}

/// Two From: fields cannot be checked: 550 5.6.0.
#[test]
fn swaks_two_from_fields_get_550_5_6_0() {
    let server = server();
    let two = message_from("two", "sub@example.org", "From: me@example.org\r\n");
    refused_after_data(&server, SENDER, &two, "550 5.6.0 the message has 2 From:");
}

/// sub's own address with a display name and a +tag is delivered as sent.
#[test]
fn swaks_own_from_with_display_name_and_tag_is_delivered() {
    let server = server();
    let own = message_from("tagged", "\"Sub, the first\" <Sub+news@Example.NET>", "");
    let out = swaks_submit(&server, &Swaks::default(), &own);
    assert!(out.success, "swaks failed:\n{}", out.transcript());
    let queue_id = out.queue_id().expect("queue id");
    check_delivered(&server, &queue_id, &own);
}

/// `send_as` lets sub use a shared address, at MAIL FROM and in From:, and
/// such mail is DKIM-signed like sub's own; a user without it may not.
#[test]
fn send_as_allows_a_shared_address_and_it_is_signed() {
    let mut server = TestServer::start(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
         [[user]]\nname = \"{USER}\"\n{}\nsend_as = [\"shared@example.org\"]\n",
        password_line()
    ));
    server.stop();
    let keygen = Command::new(tern_bin())
        .args(["dkim", "keygen", "--all-missing", "--config"])
        .arg(&server.config_path)
        .output()
        .expect("run keygen");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    server.spawn();
    let shared = message_from("shared", "Shared Box <shared+x@example.org>", "");
    let how = Swaks {
        from: "shared@example.org",
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &how, &shared);
    assert!(out.success, "swaks failed:\n{}", out.transcript());
    let queue_id = out.queue_id().expect("queue id");
    let (_, file) = wait_for_queue_id(&server, "me", &queue_id, DELIVERY_TIMEOUT);
    let text = String::from_utf8_lossy(&file);
    assert!(
        text.starts_with("Return-Path: <shared@example.org>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{text}"
    );
    assert!(file.ends_with(&shared), "delivered as sent: {text}");
    // Without send_as, bob's address stays out of reach at MAIL FROM.
    let bob = Swaks {
        from: "bob@example.org",
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &bob, &shared);
    assert!(out.stdout.contains("553 5.7.1"), "{}", out.transcript());
}

/// Six wrong passwords in a row from one address, each on its own
/// connection: five get 535, the sixth 454 4.7.0, and so does the right
/// password afterwards (logged with the peer). Another address still logs in.
#[test]
fn swaks_throttle_sixth_failure_gets_454() {
    let server = server();
    let wrong = Swaks {
        password: "guess",
        source: Some("127.0.0.4"),
        ..Swaks::default()
    };
    let message = message("throttle");
    for attempt in 1..=6 {
        let out = swaks_submit(&server, &wrong, &message);
        assert!(!out.success, "attempt {attempt}:\n{}", out.transcript());
        let expected = if attempt <= 5 {
            "535 5.7.8"
        } else {
            "454 4.7.0"
        };
        assert!(
            out.stdout.contains(expected),
            "attempt {attempt} should get {expected}:\n{}",
            out.transcript()
        );
    }
    let right = Swaks {
        source: Some("127.0.0.4"),
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &right, &message);
    assert!(
        !out.success && out.stdout.contains("454 4.7.0"),
        "the right password is refused too while throttled:\n{}",
        out.transcript()
    );
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("peer=127.0.0.4:")
            && l.contains("AUTH refused: too many failed attempts")),
        "{log}"
    );
    // Another address is not affected.
    let other = Swaks {
        source: Some("127.0.0.5"),
        ..Swaks::default()
    };
    let out = swaks_submit(&server, &other, &message);
    assert!(out.success, "{}", out.transcript());
    let queue_id = out.queue_id().expect("queue id");
    check_delivered(&server, &queue_id, &message);
}

/// The throttle must also hold when the attempts overlap: eight wrong
/// passwords sent at the same moment on eight connections from one address
/// may have at most five checked (535); the rest must get 454.
///
/// (This test found that attempts in flight were not counted: all eight
/// were checked. `Throttle::begin` now counts them from the moment they are
/// let through.)
#[test]
fn overlapping_failures_from_one_address_are_throttled_too() {
    assert!(Path::new(PYTHON).is_file(), "{PYTHON} is missing");
    let server = server();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("auth_burst.py"))
        .args(["--port", &server.addr("submission").port().to_string()])
        .args([
            "--source",
            "127.0.0.6",
            "--connections",
            "8",
            "--user",
            USER,
        ]);
    let out = run(cmd, PEER_TIMEOUT);
    assert!(out.success, "{}", out.transcript());
    let codes: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("code "))
        .collect();
    assert_eq!(codes.len(), 8, "{}", out.transcript());
    let checked = codes.iter().filter(|c| **c == "535").count();
    let throttled = codes.iter().filter(|c| **c == "454").count();
    assert_eq!(checked + throttled, 8, "only 535 or 454: {codes:?}");
    let logged = server
        .log()
        .lines()
        .filter(|l| l.contains("peer=127.0.0.6:") && l.contains("AUTH failed"))
        .count();
    assert!(
        checked <= 5 && logged <= 5,
        "{checked} of 8 overlapping wrong passwords were checked ({logged} logged as \
         failed); the throttle allows 5: {codes:?}"
    );
}
