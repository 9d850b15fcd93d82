//! DKIM signatures checked independently: dkimpy (Debian's python3-dkim, with
//! python3-nacl for Ed25519) verifies what tern signs, fed our public keys
//! from the records `tern dkim dns` prints (`tests/fixtures/dkim_verify.py`;
//! no real DNS).
//!
//! - The signer alone: rsa-sha256 and ed25519-sha256 each verify on their
//!   own, on messages with 8-bit UTF-8 bodies, long folded headers, lines
//!   ending in white space, an empty body, a From: with display name and
//!   comment, and signatures whose `b=` fills its last line; what relaxed
//!   canonicalization forgives still verifies; a changed body or header, or
//!   a second From:, fails, and so does a Subject:, To:, second Date: or
//!   other field a reader sees added after signing (they are oversigned).
//!   Keys made by `openssl genpkey` work as well as ours.
//! - End to end: `tern dkim keygen` and `tern dkim dns` through the real
//!   binary, then a message submitted on 587 with STARTTLS and AUTH PLAIN
//!   (Python's smtplib) is delivered to a local Maildir, where both
//!   signatures verify on the file as it is; mail whose From: is not at a signing domain,
//!   and mail from outside on port 25 whose From: is, are not signed; a missing key stops `tern config check` and `tern serve`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::delivered::wait_for_queue_id;
use support::dkimpy::{dkimpy, require_dkimpy};
use support::peers::{fixture, run, unique_file, Run, PEER_TIMEOUT, PYTHON};
use support::{tern_bin, TestServer};
use tern::dkim::keys::{keygen, DomainKeys, KeyKind};
use tern::dkim::Signer;

/// The signing time of the signer tests: 2026-01-01T00:00:00Z.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// One key pair for example.org (selector base `tern`), generated once: the
/// key files' bytes.
fn key_files() -> &'static Vec<(KeyKind, Vec<u8>)> {
    static FILES: OnceLock<Vec<(KeyKind, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        keygen(dir.path(), "example.org", "tern", false).expect("keygen");
        KeyKind::ALL
            .into_iter()
            .map(|kind| {
                let path = kind.path(dir.path(), "example.org", "tern");
                (kind, std::fs::read(path).expect("key file"))
            })
            .collect()
    })
}

/// A signer with the shared keys, and their DNS records as zone-file lines.
fn signer() -> (Signer, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (kind, bytes) in key_files() {
        std::fs::write(kind.path(dir.path(), "example.org", "tern"), bytes).expect("write");
    }
    let keys = DomainKeys::load(dir.path(), "example.org", "tern").expect("load keys");
    let zone: String = keys
        .dns_records()
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    (Signer::new(vec![keys]), zone)
}

/// `message` with its signature fields on top (as tern spools it), and the
/// fields on their own.
fn signed(signer: &Signer, message: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let headers = signer
        .sign(message, signing_time())
        .expect("signing works")
        .expect("the message is ours to sign");
    let mut whole = headers.clone();
    whole.extend_from_slice(message);
    (whole, split_fields(&headers))
}

/// Splits CRLF-terminated, folded header lines into whole fields.
fn split_fields(headers: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in headers.split_inclusive(|&b| b == b'\n') {
        match line.first() {
            Some(b' ' | b'\t') => fields.last_mut().expect("first line").extend(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

/// Signs `message` and checks that dkimpy verifies both signatures together
/// and each one alone.
fn verifies(message: &[u8]) {
    let (signer, zone) = signer();
    let (whole, fields) = signed(&signer, message);
    dkimpy(&whole, &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
    for (field, a) in fields.iter().zip(["rsa-sha256", "ed25519-sha256"]) {
        let mut alone = field.clone();
        alone.extend_from_slice(message);
        dkimpy(&alone, &zone).assert_pass(&[a]);
    }
}

#[test]
fn a_plain_message_verifies_with_each_algorithm() {
    verifies(
        b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Hello\r\n\
          Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n\
          Hello Bob.\r\n",
    );
}

#[test]
fn an_8bit_utf8_message_verifies() {
    verifies(
        "From: Zoë Ångström <zoe@example.org>\r\nTo: bob@example.net\r\n\
         Subject: Grüße aus Köln – 日本語のテキスト\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Schöne Grüße, ça va? Ελληνικά, русский, 中文, emoji 🦆.\r\n\
         \u{00a0}non-breaking spaces\u{00a0}\r\n"
            .as_bytes(),
    );
}

#[test]
fn long_folded_headers_verify() {
    let subject: String = (0..60).map(|i| format!("word{i} ")).collect();
    let folded_subject = subject.trim_end().replace("word20 ", "word20\r\n\t");
    let to: Vec<String> = (0..30).map(|i| format!("user{i}@example.net")).collect();
    let message = format!(
        "From: alice@example.org\r\nTo: {}\r\nSubject: {folded_subject}\r\n\
         References: <a@example.org>\r\n <b@example.org>\r\n\t<c@example.org>\r\n\
         Content-Type: multipart/mixed;\r\n boundary=\"xyz\"\r\n\r\n--xyz\r\n\r\npart\r\n--xyz--\r\n",
        to.join(",\r\n ")
    );
    verifies(message.as_bytes());
}

#[test]
fn lines_ending_in_white_space_verify() {
    verifies(
        b"From: alice@example.org \r\nSubject:   spaced    out   \r\nTo:\tbob@example.net\t\r\n\r\n\
          trailing spaces   \r\ntrailing tab\t\r\n  \t \r\nin  between\t\tgaps\r\n\r\n\r\n\r\n",
    );
}

#[test]
fn an_empty_body_verifies() {
    verifies(b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: nothing\r\n\r\n");
}

#[test]
fn a_from_with_display_name_and_comment_verifies() {
    verifies(
        b"From: \"Liddell, Alice\" (at work) <alice@Example.ORG> (sent by tern)\r\n\
          To: bob@example.net\r\nSubject: who\r\n\r\nme\r\n",
    );
}

#[test]
fn what_relaxed_canonicalization_forgives_still_verifies() {
    let (signer, zone) = signer();
    let message = b"From: alice@example.org\r\nSubject: a  long\r\n subject\r\n\r\nline \r\n\r\n";
    let (whole, _) = signed(&signer, message);
    // Re-folded header, white space runs changed, trailing white space and
    // empty lines at the end dropped: relaxed/relaxed does not care.
    let changed = String::from_utf8(whole)
        .expect("ASCII")
        .replace("Subject: a  long\r\n subject", "Subject: a long subject")
        .replace("line \r\n\r\n", "line\r\n");
    dkimpy(changed.as_bytes(), &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
}

#[test]
fn a_changed_body_or_header_fails() {
    let (signer, zone) = signer();
    let message = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: pay 10 EUR\r\n\r\n\
                    Please pay 10 EUR.\r\n";
    let (whole, _) = signed(&signer, message);
    let text = String::from_utf8(whole).expect("ASCII");
    dkimpy(text.as_bytes(), &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
    for (from, to) in [
        ("Please pay 10 EUR.", "Please pay 99 EUR."),
        ("Subject: pay 10 EUR", "Subject: pay 99 EUR"),
        ("To: bob@example.net", "To: mallory@example.net"),
    ] {
        let tampered = text.replacen(from, to, 1);
        assert_ne!(tampered, text);
        dkimpy(tampered.as_bytes(), &zone).assert_fail();
    }
}

#[test]
fn a_second_from_added_later_fails_because_from_is_oversigned() {
    let (signer, zone) = signer();
    let message = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nhi\r\n";
    let (whole, fields) = signed(&signer, message);
    let signatures: Vec<u8> = fields.concat();
    // A From: added above the original, and one added below it.
    let mut above = signatures.clone();
    above.extend_from_slice(b"From: mallory@example.com\r\n");
    above.extend_from_slice(message);
    dkimpy(&above, &zone).assert_fail();
    let below = String::from_utf8(whole).expect("ASCII").replacen(
        "To: bob",
        "From: mallory@example.com\r\nTo: bob",
        1,
    );
    dkimpy(below.as_bytes(), &zone).assert_fail();
}

#[test]
fn signatures_whose_b_fills_its_last_line_verify() {
    // The number of Cc: fields moves where the lines of b= end; where one
    // ends exactly at the fold width, mail-auth's own output (a fold before
    // the final `;`) failed in dkimpy.
    let (signer, zone) = signer();
    let mut checked = 0;
    for n in 0..=80 {
        let mut message = b"From: alice@example.org\r\nSubject: s\r\n".to_vec();
        for i in 0..n {
            message.extend_from_slice(format!("Cc: c{i}@example.net\r\n").as_bytes());
        }
        message.extend_from_slice(b"\r\nbody\r\n");
        let (whole, fields) = signed(&signer, &message);
        let full_last_line = fields.iter().any(|f| {
            String::from_utf8_lossy(f)
                .split_terminator("\r\n")
                .last()
                .is_some_and(|l| l.len() == 77 && l.ends_with(';'))
        });
        if full_last_line && checked < 3 {
            dkimpy(&whole, &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
            checked += 1;
        }
    }
    assert!(checked > 0, "no signature's b= filled its last line");
}

#[test]
fn fields_a_reader_sees_added_after_signing_fail_because_they_are_oversigned() {
    let (signer, zone) = signer();
    let head = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: lunch?\r\n\
                Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <2@example.org>\r\n";
    let body = "\r\nNoon at the usual place?\r\n";
    let message = format!("{head}{body}");
    let (whole, fields) = signed(&signer, message.as_bytes());
    dkimpy(&whole, &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
    let signatures = String::from_utf8(fields.concat()).expect("ASCII");
    // Above the original fields (where a later hop prepends) and below them.
    let with = |added: &str| {
        [
            format!("{signatures}{added}{head}{body}"),
            format!("{signatures}{head}{added}{body}"),
        ]
    };
    for added in [
        "Subject: URGENT: new bank details\r\n",
        "To: mallory@example.com\r\n",
        "Date: Fri, 2 Jan 2026 09:00:00 +0000\r\n",
        "Cc: everyone@example.net\r\n",
        "Reply-To: mallory@example.com\r\n",
        "Message-ID: <other@example.com>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/html\r\n",
    ] {
        for tampered in with(added) {
            dkimpy(tampered.as_bytes(), &zone).assert_fail();
        }
    }
    // A field nobody is shown as the author's (a later hop's own) still
    // verifies: the failures above are the oversigning's doing.
    for tampered in with("X-Spam-Score: 0.1\r\n") {
        dkimpy(tampered.as_bytes(), &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
    }
}

#[test]
fn a_signature_without_its_published_key_fails() {
    let (signer, zone) = signer();
    let (whole, _) = signed(&signer, b"From: alice@example.org\r\n\r\nbody\r\n");
    let only_rsa: String = zone.lines().take(1).map(|l| format!("{l}\n")).collect();
    let verdict = dkimpy(&whole, &only_rsa);
    assert!(!verdict.run.success, "{}", verdict.run.transcript());
    assert!(
        verdict.lines()[0].starts_with("pass a=rsa-sha256")
            && verdict.lines()[1].starts_with("fail a=ed25519-sha256"),
        "{}",
        verdict.run.transcript()
    );
}

#[test]
fn keys_made_by_openssl_genpkey_sign_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (kind, args) in [
        (
            KeyKind::Rsa,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (KeyKind::Ed25519, &["-algorithm", "ed25519"][..]),
    ] {
        let path = kind.path(dir.path(), "example.org", "ossl");
        let mut cmd = Command::new("openssl");
        cmd.arg("genpkey").args(args).arg("-out").arg(&path);
        let made = run(cmd, PEER_TIMEOUT);
        assert!(made.success, "openssl genpkey: {}", made.transcript());
    }
    let keys = DomainKeys::load(dir.path(), "example.org", "ossl").expect("openssl keys load");
    let zone: String = keys
        .dns_records()
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let signer = Signer::new(vec![keys]);
    let (whole, _) = signed(&signer, b"From: alice@example.org\r\n\r\nbody\r\n");
    dkimpy(&whole, &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
}

// ---------------------------------------------------------------------------
// End to end, through the real binary
// ---------------------------------------------------------------------------

const PASSWORD: &str = "correct horse battery staple";

/// A config with an MX and a submission listener, a user with a password and
/// `[dkim]`.
fn submission_config(data: &Path) -> String {
    let hash = tern::inbound::auth::hash_password(PASSWORD).expect("hash");
    format!(
        r#"hostname = "mx.example.org"
data_dir = "{data}"
domains = ["example.org", "example.net"]

[[listener]]
address = "127.0.0.1:0"
role = "submission"

[[user]]
name = "me"
password = "{hash}"

[[user]]
name = "bob"

[dkim]
domains = ["example.org"]

[[listener]]
address = "127.0.0.1:0"
role = "mx"
"#,
        data = data.display()
    )
}

/// Runs the tern binary with `args`.
fn tern(args: &[&str]) -> Run {
    let mut cmd = Command::new(tern_bin());
    cmd.args(args);
    run(cmd, PEER_TIMEOUT)
}

/// Submits `message` as `me` on the submission port: STARTTLS, AUTH PLAIN,
/// to bob@example.org. Returns the queue id.
fn submit(server: &TestServer, message: &[u8]) -> String {
    let file = unique_file(server.dir.path(), "submit", message);
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("smtp_send.py"))
        .args(["--host", "localhost"])
        .args(["--port", &server.addr("submission").port().to_string()])
        .args(["--helo", "laptop.example", "--from", "me@example.org"])
        .args(["--to", "bob@example.org", "--starttls"])
        .arg("--cafile")
        .arg(server.data().join("tls/cert.pem"))
        .arg(format!("--auth=me:{PASSWORD}"))
        .arg("--file")
        .arg(&file);
    let run = run(cmd, PEER_TIMEOUT);
    assert!(run.success, "smtplib failed:\n{}", run.transcript());
    assert!(run.stdout.contains("auth 235"), "{}", run.transcript());
    run.queue_id()
        .unwrap_or_else(|| panic!("no queue id:\n{}", run.transcript()))
}

#[test]
fn submitted_mail_is_signed_and_verifies_in_the_delivered_maildir_file() {
    require_dkimpy();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config_path = dir.path().join("tern.toml");
    std::fs::write(&config_path, submission_config(&data)).expect("write config");
    let config = config_path.to_str().expect("UTF-8 path");

    // Without keys, the config is refused, naming the file and the command.
    let check = tern(&["config", "check", config]);
    assert!(!check.success, "{}", check.transcript());
    let key = data.join("dkim/example.org.tern.rsa.pem");
    assert_eq!(
        check.stderr,
        format!(
            "{config}:16:1: DKIM key {} is missing: run tern dkim keygen --domain example.org\n",
            key.display()
        )
    );

    // keygen writes the keys (0600) and prints the records; dns prints the same.
    let keygen = tern(&[
        "dkim",
        "keygen",
        "--config",
        config,
        "--domain",
        "Example.ORG",
    ]);
    assert!(keygen.success, "{}", keygen.transcript());
    for kind in ["rsa", "ed25519"] {
        let path = data.join(format!("dkim/example.org.tern.{kind}.pem"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("key written").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    let records: Vec<&str> = keygen.stdout.lines().collect();
    assert_eq!(records.len(), 2, "{}", keygen.transcript());
    assert!(records[0]
        .starts_with("tern-rsa._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=MIIBIjANBg"));
    assert!(records[1]
        .starts_with("tern-ed25519._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p="));
    let dns = tern(&["dkim", "dns", "--config", config]);
    assert!(dns.success, "{}", dns.transcript());
    assert_eq!(dns.stdout, keygen.stdout);
    let again = tern(&[
        "dkim",
        "keygen",
        "--config",
        config,
        "--domain",
        "example.org",
    ]);
    assert!(!again.success, "keygen replaced keys without --force");
    assert!(
        again.stderr.contains("already exists"),
        "{}",
        again.transcript()
    );
    let check = tern(&["config", "check", config]);
    assert!(check.success, "{}", check.transcript());

    let server =
        TestServer::start_with_config(dir, &std::fs::read_to_string(&config_path).expect("config"));
    let ours = "From: Me Myself (laptop) <me@example.org>\r\nTo: Bob <bob@example.org>\r\n\
        Subject: signed =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße, Bob.  \r\n"
        .as_bytes()
        .to_vec();
    // Over the spill threshold (1 MiB): signed from the temporary file.
    let mut large =
        b"From: me@example.org\r\nTo: bob@example.org\r\nSubject: large\r\n\r\n".to_vec();
    while large.len() < (1 << 20) + 100_000 {
        large.extend_from_slice("0123456789 abcdefghij ÄÖÜ trailing space \r\n".as_bytes());
    }
    // Ours to send (me's name at every local domain) but not a signing
    // domain; a From: outside our domains is refused (DESIGN invariant 7).
    let foreign = b"From: me@example.net\r\nTo: bob@example.org\r\nSubject: not ours\r\n\r\nhi\r\n";
    let zone = dns.stdout.clone();
    for message in [&ours, &large] {
        let id = submit(&server, message);
        let (path, file) = wait_for_queue_id(&server, "bob", &id, Duration::from_secs(30));
        // The file as delivered: Return-Path and Delivered-To on top of our
        // signatures, then Received, then the message.
        assert!(file.starts_with(b"Return-Path: <me@example.org>\r\nDelivered-To: "));
        let text = String::from_utf8_lossy(&file);
        let signature = text
            .find("DKIM-Signature: v=1; a=rsa-sha256")
            .expect("signed");
        assert!(signature < text.find("Received: ").expect("Received"));
        let verdict = dkimpy(&file, &zone);
        verdict.assert_pass(&["rsa-sha256", "ed25519-sha256"]);
        eprintln!("{}: {}", path.display(), verdict.run.stdout.trim_end());
    }
    let id = submit(&server, foreign);
    let (_, file) = wait_for_queue_id(&server, "bob", &id, Duration::from_secs(30));
    assert!(!String::from_utf8_lossy(&file).contains("DKIM-Signature"));
    let log = server.log();
    assert!(log.contains(&format!("queue_id={id} ")), "{log}");
    assert_eq!(log.matches("dkim=signed").count(), 2, "{log}");
    assert_eq!(log.matches("dkim=none").count(), 1, "{log}");

    // Mail from outside with a From: at our domain, on port 25, is never
    // signed: only our own users' mail carries our signature.
    let mut mx = support::Client::connect(server.addr("mx"));
    mx.command("EHLO outsider.example");
    let reply = mx.send_mail("me@example.org", &["bob@example.org"], &ours);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let id = support::queued_id(&reply);
    let (_, file) = wait_for_queue_id(&server, "bob", &id, Duration::from_secs(30));
    assert!(!String::from_utf8_lossy(&file).contains("DKIM-Signature"));
}

#[test]
fn the_server_does_not_start_without_its_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config_path = dir.path().join("tern.toml");
    std::fs::write(&config_path, submission_config(&data)).expect("write config");
    let serve = tern(&["serve", "--config", config_path.to_str().expect("UTF-8")]);
    assert!(!serve.success);
    let missing: PathBuf = data.join("dkim/example.org.tern.rsa.pem");
    assert!(
        serve.stderr.contains(&format!(
            "tern.toml:16:1: DKIM key {} is missing: run tern dkim keygen --domain example.org",
            missing.display()
        )),
        "{}",
        serve.transcript()
    );
}
