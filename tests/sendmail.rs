//! The sendmail interface against the real daemon: `tern sendmail` and the
//! `sendmail` name (argv[0]) hand messages over the control socket; -t reads
//! and hides Bcc; unknown local users and a stopped daemon fail loudly with
//! sysexits.h codes; a message to a remote recipient leaves DKIM-signed,
//! verified by dkimpy. Any other local user (uid 65534 here) sends over the
//! submission socket, held to the sender rules: only as
//! `<login>@<hostname>` or what `[local_senders]` maps to it (else 77),
//! signed only when mapped, within `limits.recipients` and
//! `limits.local_messages_per_hour` (else 65 and 75); bare CR or LF is
//! refused there as on port 25.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::dkimpy::{dkimpy, require_dkimpy};
use support::dns::DnsServer;
use support::sink::{Sink, SinkOptions};
use support::{tern_bin, TestServer};

/// Runs sendmail (as `tern sendmail` or through a `sendmail` symlink) with
/// `input` on stdin; returns (exit code, stderr).
fn sendmail(program: &Path, pre: &[&str], args: &[&str], input: &[u8]) -> (i32, String) {
    let mut child = Command::new(program)
        .args(pre)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tern_sendmail(server: &TestServer, args: &[&str], input: &[u8]) -> (i32, String) {
    let config = server.config_path.to_str().unwrap().to_string();
    let mut all = vec!["-C", config.as_str()];
    all.extend_from_slice(args);
    sendmail(Path::new(tern_bin()), &["sendmail"], &all, input)
}

#[test]
fn t_delivers_locally_hides_bcc_and_adds_missing_headers() {
    let server = TestServer::start("");
    let input = b"To: Me <me@example.org>\nBcc: bob@example.org\nSubject: from cron\n\nline one\n.\nline after a dot\n";
    let (code, err) = tern_sendmail(&server, &["-t", "-oi", "-f", "cron@example.org"], input);
    assert_eq!(code, 0, "{err}");
    let me = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let bob = server.wait_for_messages("bob", 1, Duration::from_secs(10));
    for copy in [&me[0], &bob[0]] {
        let text = String::from_utf8_lossy(copy);
        assert!(
            text.starts_with("Return-Path: <cron@example.org>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("via sendmail (root uid 0)") || text.contains("via sendmail (uid"),
            "{text}"
        );
        assert!(
            !text.contains("Bcc") && !text.contains("bob@example.org\r\nSubject"),
            "Bcc must be gone: {text}"
        );
        assert!(text.contains("\r\nFrom: cron@example.org\r\n"), "{text}");
        assert!(
            text.contains("\r\nDate: ") && text.contains("\r\nMessage-ID: <"),
            "{text}"
        );
        assert!(
            text.ends_with("\r\n\r\nline one\r\n.\r\nline after a dot\r\n"),
            "-oi keeps the dot: {text:?}"
        );
    }
}

#[test]
fn invoked_as_sendmail_with_recipients_as_arguments() {
    let server = TestServer::start("");
    let link = server.dir.path().join("sendmail");
    std::os::unix::fs::symlink(tern_bin(), &link).unwrap();
    let config = server.config_path.to_str().unwrap();
    let (code, err) = sendmail(
        &link,
        &[],
        &["-C", config, "me"],
        b"Subject: short name\n\nhello\n.\nnot sent\n",
    );
    assert_eq!(code, 0, "{err}");
    let got = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("Delivered-To: me@example.org"),
        "a bare name is a local user: {text}"
    );
    assert!(
        text.ends_with("\r\n\r\nhello\r\n"),
        "without -i a lone dot ends the input: {text:?}"
    );
}

#[test]
fn cron_output_to_root_reaches_the_owner() {
    // Debian's cron runs `sendmail -FCronDaemon -i -B8BITMIME -oem <user>`
    // with a bare login; root's mail and a system login's are system mail
    // at the hostname, for the postmaster (here the first user, me).
    let server = TestServer::start("");
    let input =
        b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@mx> run-parts\n\nbackup done\n";
    let cron = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem"];
    let (code, err) = tern_sendmail(&server, &[&cron[..], &["root"]].concat(), input);
    assert_eq!(code, 0, "{err}");
    let (code, err) = tern_sendmail(&server, &[&cron[..], &["daemon"]].concat(), input);
    assert_eq!(code, 0, "daemon is a login in /etc/passwd: {err}");
    let got = server.wait_for_messages("me", 2, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.starts_with(
            "Return-Path: <root@mx.example.org>\r\nDelivered-To: root@mx.example.org\r\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nbackup done\r\n"), "{text}");
    let text = String::from_utf8_lossy(&got[1]);
    assert!(
        text.contains("Delivered-To: daemon@mx.example.org\r\n"),
        "{text}"
    );
    // A bare name that is a user is still that user at the first domain,
    // and one that is neither a user nor a login is refused.
    let (code, err) = tern_sendmail(&server, &["no-such-login-here"], input);
    assert_eq!(code, 67, "EX_NOUSER: {err}");
}

#[test]
fn failures_are_loud_with_sysexits_codes() {
    let mut server = TestServer::start("");
    let (code, err) = tern_sendmail(&server, &["nobody@example.org"], b"Subject: x\n\nx\n");
    assert_eq!(code, 67, "EX_NOUSER: {err}");
    assert!(
        err.contains("no such user here: nobody@example.org"),
        "{err}"
    );
    let (code, err) = tern_sendmail(&server, &["-t"], b"Subject: no recipients\n\nx\n");
    assert_eq!(code, 64, "EX_USAGE: {err}");
    let (code, err) = tern_sendmail(&server, &["-q"], b"");
    assert_eq!(code, 64, "{err}");
    server.stop();
    let (code, err) = tern_sendmail(&server, &["me@example.org"], b"Subject: x\n\nx\n");
    assert_eq!(code, 69, "EX_UNAVAILABLE: {err}");
    assert!(err.contains("NOT sent"), "{err}");
}

#[test]
fn a_remote_recipient_gets_the_message_dkim_signed() {
    require_dkimpy();
    let sink = Sink::start("127.0.0.9:0", SinkOptions::default());
    let dns = DnsServer::start();
    dns.mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", "127.0.0.9");
    let keys = tempfile::tempdir().unwrap();
    let keygen = Command::new(tern_bin())
        .args(["dkim", "keygen", "--domain", "example.org", "--dir"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let server = TestServer::start(&format!(
        "[relay]\nnameservers = [\"{}\"]\nport = {}\n[dkim]\nkeys = \"{}\"\ndomains = [\"example.org\"]\n",
        dns.addr,
        sink.addr.port(),
        keys.path().display()
    ));
    let input = b"From: Me <me@example.org>\nTo: friend@remote.test\nSubject: signed from a script\n\n8-bit body: gr\xc3\xbc\xc3\x9fe\nbye\n";
    let (code, err) = tern_sendmail(&server, &["-t", "-i", "-f", "me@example.org"], input);
    assert_eq!(code, 0, "{err}");
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got[0].rcpts, ["friend@remote.test"]);
    let message = &got[0].data;
    let text = String::from_utf8_lossy(message);
    assert!(
        text.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{text}"
    );
    let zone = String::from_utf8(keygen.stdout).unwrap();
    dkimpy(message, &zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
}

/// `tern dkim keygen --all-missing` for the server's config; must succeed.
fn keygen_all_missing(server: &TestServer) -> std::process::Output {
    let made = Command::new(tern_bin())
        .args(["dkim", "keygen", "--all-missing", "--config"])
        .arg(&server.config_path)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    made
}

#[test]
fn without_a_dkim_table_keys_made_by_all_missing_are_used() {
    let mut server = TestServer::start("");
    server.stop();
    let made = keygen_all_missing(&server);
    let records = String::from_utf8_lossy(&made.stdout);
    assert_eq!(
        records
            .lines()
            .filter(|l| l.contains("._domainkey."))
            .count(),
        4,
        "two domains, two keys each: {records}"
    );
    // Again: nothing is missing, nothing is made.
    assert!(keygen_all_missing(&server).stdout.is_empty());
    server.spawn();
    let (code, err) = tern_sendmail(
        &server,
        &["-f", "me@example.org", "bob"],
        b"From: me@example.org\nSubject: signed\n\nhi\n",
    );
    assert_eq!(code, 0, "{err}");
    let got = server.wait_for_messages("bob", 1, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{text}"
    );
    assert!(
        text.contains("DKIM-Signature: v=1; a=ed25519-sha256;"),
        "{text}"
    );
}

#[test]
fn keys_made_while_running_sign_after_a_reload() {
    let server = TestServer::start("");
    let send = |subject: &str| {
        let input = format!("From: me@example.org\nSubject: {subject}\n\nhi\n");
        let (code, err) =
            tern_sendmail(&server, &["-f", "me@example.org", "bob"], input.as_bytes());
        assert_eq!(code, 0, "{err}");
    };
    // SIGHUP; waits for `outcome` in the log, which must also say `says`.
    let reload = |outcome: &str, says: &str| {
        support::unsafe_kill(server.pid(), "HUP");
        support::wait_until(Duration::from_secs(10), outcome, || {
            server.log().contains(outcome)
        });
        assert!(server.log().contains(says), "{}", server.log());
    };
    send("before");
    let got = server.wait_for_messages("bob", 1, Duration::from_secs(10));
    assert!(!String::from_utf8_lossy(&got[0]).contains("DKIM-Signature:"));

    keygen_all_missing(&server);
    // Until the reload, the running server goes on as it started.
    send("made, not reloaded");
    let got = server.wait_for_messages("bob", 2, Duration::from_secs(10));
    assert!(got
        .iter()
        .all(|m| !String::from_utf8_lossy(m).contains("DKIM-Signature:")));

    reload("reloaded:", "dkim: signing mail from example.org");
    send("after");
    let got = server.wait_for_messages("bob", 3, Duration::from_secs(10));
    let signed: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .filter(|m| m.contains("Subject: after"))
        .collect();
    assert_eq!(signed.len(), 1);
    assert!(
        signed[0].contains("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{}",
        signed[0]
    );
    assert!(
        signed[0].contains("DKIM-Signature: v=1; a=ed25519-sha256;"),
        "{}",
        signed[0]
    );

    // A [dkim] table naming keys that do not exist: the reload is refused
    // and the keys in force keep signing.
    let original = std::fs::read_to_string(&server.config_path).unwrap();
    let keys = server.data().join("dkim");
    std::fs::write(
        &server.config_path,
        format!(
            "{original}\n[dkim]\nkeys = \"{}\"\ndomains = [\"example.org\"]\nselector = \"other\"\n",
            keys.display()
        ),
    )
    .unwrap();
    reload("reload refused", "example.org.other.rsa.pem");
    send("after the refused reload");
    let got = server.wait_for_messages("bob", 4, Duration::from_secs(10));
    assert!(got.iter().any(|m| {
        let m = String::from_utf8_lossy(m);
        m.contains("Subject: after the refused reload") && m.contains("DKIM-Signature:")
    }));
}

/// A daemon with the submission socket in a runtime directory (as under
/// systemd: RuntimeDirectory=tern, 0755), a copy of the binary that uid
/// 65534 may run, and a tern.toml that user cannot read (0640 root:tern on
/// the appliance), so its sendmail asks the daemon on the submission socket.
struct LocalUsers {
    server: TestServer,
    runtime: tempfile::TempDir,
    socket: std::path::PathBuf,
    bin: std::path::PathBuf,
    /// The DNS records of the DKIM keys, when made.
    zone: String,
}

impl LocalUsers {
    /// `extra` as for [`TestServer::start`]; `keys`: make DKIM keys for
    /// every local domain first, so that signing is on.
    fn start(extra: &str, keys: bool) -> LocalUsers {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::getuid().is_root(),
            "this test runs sendmail as uid 65534; run the tests as root (CI does)"
        );
        let runtime = tempfile::tempdir().unwrap();
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut server = TestServer::start(extra);
        server.stop();
        let zone = if keys {
            String::from_utf8(keygen_all_missing(&server).stdout).unwrap()
        } else {
            String::new()
        };
        server
            .env
            .push(("RUNTIME_DIRECTORY".into(), runtime.path().to_path_buf()));
        server.spawn();
        let socket = runtime.path().join("submit.sock");
        support::wait_until(Duration::from_secs(10), "the submission socket", || {
            socket.exists()
        });
        let bin = runtime.path().join("tern");
        std::fs::copy(tern_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&server.config_path, std::fs::Permissions::from_mode(0o600))
            .unwrap();
        LocalUsers {
            server,
            runtime,
            socket,
            bin,
            zone,
        }
    }

    /// Runs `sendmail args` as uid 65534 (nobody) with `input`; returns
    /// (exit code, stderr).
    fn nobody(&self, args: &[&str], input: &[u8]) -> (i32, String) {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(&self.bin);
        command
            .arg("sendmail")
            .arg("-C")
            .arg(&self.server.config_path)
            .args(args)
            .env("TERN_SUBMIT_SOCKET", &self.socket)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The copied binary is briefly "busy" (ETXTBSY) while a process
        // forked by another test thread still holds the copy's write
        // descriptor, until that process execs.
        let mut tries = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                spawned => break spawned.unwrap(),
            }
        };
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// How many messages the daemon has queued so far.
    fn queued(&self) -> usize {
        self.server.log().matches("status=queued").count()
    }
}

#[test]
fn any_local_user_sends_through_the_submission_socket() {
    use std::os::unix::fs::PermissionsExt;
    let local = LocalUsers::start("", false);
    let mode = std::fs::metadata(&local.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
    assert!(local.runtime.path().is_dir());
    let (code, err) = local.nobody(&["bob"], b"Subject: from a web app\n\nhello\n");
    assert_eq!(code, 0, "{err}");
    let got = local
        .server
        .wait_for_messages("bob", 1, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("Subject: from a web app"), "{text}");
    assert!(text.contains("From: nobody@mx.example.org"), "{text}");

    // That socket queues mail and does nothing else.
    let mut client = tern::control::Client::connect(&local.socket).unwrap();
    match client.list() {
        Err(tern::control::ControlError::Refused(f)) => {
            assert_eq!(f.kind, tern::control::FailureKind::NotAllowed)
        }
        other => panic!("queue list on the submission socket: {other:?}"),
    }
}

/// Issue 9 point 8: a local user other than root and group tern sends as
/// `<login>@<hostname>` only. A -f or a From: (at our domains or not) it is
/// not mapped to is refused with EX_NOPERM (77), logged with its uid, and
/// nothing is queued; its own mail, to local and remote recipients, queues
/// with envelope sender nobody@mx.example.org and is not DKIM-signed,
/// although signing is on for the domains.
#[test]
fn an_unmapped_local_user_sends_only_as_itself_and_unsigned() {
    let local = LocalUsers::start("", true);
    let refusals: [(&[&str], &[u8], &str); 5] = [
        (
            &["-f", "me@example.org", "bob"],
            b"Subject: x\n\nx\n",
            "envelope sender <me@example.org> is not one that Unix user nobody may send as",
        ),
        (
            &["-f", "<>", "bob"],
            b"Subject: x\n\nx\n",
            "envelope sender <> is not one",
        ),
        (
            &["-f", "nobody@example.org", "bob"],
            b"Subject: x\n\nx\n",
            "envelope sender <nobody@example.org> is not one",
        ),
        (
            &["bob"],
            b"From: Me <me@example.org>\nSubject: x\n\nx\n",
            "From: address <me@example.org> is not one that Unix user nobody may send as",
        ),
        (
            &["bob"],
            b"From: nobody@mx.example.org\nSender: boss@bank.example\n\nx\n",
            "Sender: address <boss@bank.example> is not one",
        ),
    ];
    for (args, input, says) in refusals {
        let (code, err) = local.nobody(args, input);
        assert_eq!(code, 77, "EX_NOPERM for {args:?}: {err}");
        assert!(err.contains(says), "{says:?}: {err}");
        assert!(err.contains("message not sent"), "{err}");
    }
    let log = local.server.log();
    assert_eq!(
        log.matches("sendmail submission from uid Some(65534) refused")
            .count(),
        5,
        "{log}"
    );
    assert_eq!(local.queued(), 0, "{log}");

    let (code, err) = local.nobody(
        &["-t"],
        b"To: bob@example.org, friend@remote.example\nSubject: report\n\nall well\n",
    );
    assert_eq!(code, 0, "{err}");
    let got = local
        .server
        .wait_for_messages("bob", 1, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.starts_with("Return-Path: <nobody@mx.example.org>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: nobody@mx.example.org\r\n"),
        "{text}"
    );
    assert!(!text.contains("DKIM-Signature"), "{text}");
    let log = local.server.log();
    assert!(
        log.contains("from=<nobody@mx.example.org>") && log.contains("nrcpt=2 status=queued"),
        "the remote recipient is queued too: {log}"
    );
}

/// With `[local_senders] nobody = [...]`, nobody may use the mapped address
/// as -f and in From:, and that mail is DKIM-signed (verified by dkimpy);
/// an address next to it is still refused.
#[test]
fn a_mapped_local_user_sends_as_the_mapped_address_signed() {
    require_dkimpy();
    let local = LocalUsers::start(
        "[local_senders]\nnobody = [\"noreply@example.org\"]\n",
        true,
    );
    let (code, err) = local.nobody(
        &["-f", "noreply@example.org", "-t"],
        b"From: Web App <noreply@example.org>\nTo: bob@example.org\nSubject: signed\n\nhello\n",
    );
    assert_eq!(code, 0, "{err}");
    let got = local
        .server
        .wait_for_messages("bob", 1, Duration::from_secs(10));
    assert!(got[0].starts_with(b"Return-Path: <noreply@example.org>\r\n"));
    dkimpy(&got[0], &local.zone).assert_pass(&["rsa-sha256", "ed25519-sha256"]);
    let (code, err) = local.nobody(
        &["-f", "noreply@example.org", "bob"],
        b"From: support@example.org\nSubject: x\n\nx\n",
    );
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("<support@example.org>"), "{err}");
}

/// A local user may name at most `limits.recipients` recipients (EX_DATAERR
/// beyond) and queue `limits.local_messages_per_hour` messages an hour;
/// more get EX_TEMPFAIL (75). Refused messages do not count.
#[test]
fn local_users_have_a_recipient_limit_and_an_hourly_rate() {
    let local = LocalUsers::start(
        "[limits]\nrecipients = 2\nlocal_messages_per_hour = 2\n",
        false,
    );
    let (code, err) = local.nobody(&["me", "bob", "x@remote.example"], b"Subject: x\n\nx\n");
    assert_eq!(code, 65, "EX_DATAERR: {err}");
    assert!(
        err.contains("3 recipients; the limit is 2 (limits.recipients)"),
        "{err}"
    );
    assert_eq!(local.queued(), 0);
    for n in 1..=2 {
        let (code, err) = local.nobody(&["me", "bob"], b"Subject: x\n\nx\n");
        assert_eq!(code, 0, "message {n}: {err}");
    }
    let (code, err) = local.nobody(&["bob"], b"Subject: x\n\nx\n");
    assert_eq!(code, 75, "EX_TEMPFAIL: {err}");
    assert!(
        err.contains("Unix user nobody queued 2 messages in the last hour"),
        "{err}"
    );
    assert_eq!(local.queued(), 2, "{}", local.server.log());
    // Root is not held to either.
    let root = Command::new(tern_bin())
        .args(["sendmail", "-C"])
        .arg(&local.server.config_path)
        .args(["me", "bob", "x@remote.example"])
        .env("TERN_SUBMIT_SOCKET", &local.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        root.status.success(),
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );
    assert_eq!(local.queued(), 3);
}

/// The submission socket takes only what port 25 would: a bare CR or a bare
/// LF in the data is refused (sendmail itself sends CRLF), from anyone.
#[test]
fn the_submission_socket_refuses_bare_cr_and_lf() {
    let local = LocalUsers::start("", false);
    for content in [
        &b"From: root@mx.example.org\r\nSubject: x\r\n\r\nbare\rCR\r\n"[..],
        b"From: root@mx.example.org\r\nSubject: x\r\n\r\nbare\nLF\r\n",
        b"From: root@mx.example.org\r\nSubject: x\r\n\r\nends in CR\r",
    ] {
        let mut client = tern::control::Client::connect(&local.socket).unwrap();
        match client.submit("root@mx.example.org", &["bob".into()], content) {
            Err(tern::control::ControlError::Refused(f)) => {
                assert_eq!(f.kind, tern::control::FailureKind::BadMessage);
                assert!(f.message.contains("bare CR or LF"), "{}", f.message);
            }
            other => panic!("{content:?}: {other:?}"),
        }
    }
    assert_eq!(local.queued(), 0);
    let mut client = tern::control::Client::connect(&local.socket).unwrap();
    let good = b"From: root@mx.example.org\r\nSubject: x\r\n\r\nfine\r\n";
    client
        .submit("root@mx.example.org", &["bob".into()], good)
        .unwrap();
    assert_eq!(local.queued(), 1);
}
