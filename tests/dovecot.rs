//! Issue 12: the owner collects mail with IMAP and POP3 from a real Dovecot
//! (scripts/dovecot-instance: private, on loopback ports) that reads the
//! Maildirs of a real tern and the user database tern writes from tern.toml
//! (`[dovecot] users_file`), with tern's own certificate. Python's imaplib
//! and poplib are the clients (tests/fixtures/mail_client.py).
//!
//! tern runs as an unprivileged uid (nobody) with Dovecot's group, as on the
//! appliance (user tern, a member of group dovecot): Dovecot refuses mail
//! processes as root, and its auth process reads the users file through the
//! group.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::peers::{run, PYTHON};
use support::*;

/// A running private Dovecot; stopped when dropped.
struct Dovecot {
    dir: PathBuf,
    imap: u16,
    imaps: u16,
    pop3s: u16,
}

impl Dovecot {
    fn start(dir: &Path, users: &Path, tls: &Path) -> Dovecot {
        let (imap, imaps, pop3s) = (free_port(), free_port(), free_port());
        let out = Command::new(script("dovecot-instance"))
            .arg("start")
            .arg(dir)
            .args(["--users", &users.display().to_string()])
            .args(["--cert", &tls.join("cert.pem").display().to_string()])
            .args(["--key", &tls.join("key.pem").display().to_string()])
            .args(["--imap", &imap.to_string(), "--imaps", &imaps.to_string()])
            .args(["--pop3s", &pop3s.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/dovecot-instance");
        assert!(
            out.status.success(),
            "Dovecot did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
        Dovecot {
            dir: dir.to_path_buf(),
            imap,
            imaps,
            pop3s,
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new(script("dovecot-instance"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn require_dovecot() {
    assert!(
        Path::new("/usr/sbin/dovecot").exists()
            && Path::new("/usr/lib/dovecot/imap").exists()
            && Path::new("/usr/lib/dovecot/pop3").exists(),
        "Dovecot is not installed: scripts/dovecot-instance install \
         (apt-get install -y dovecot-core dovecot-imapd dovecot-pop3d)"
    );
}

struct Setup {
    server: TestServer,
    dovecot: Dovecot,
    _dovecot_dir: tempfile::TempDir,
    users: PathBuf,
}

fn setup() -> Setup {
    require_dovecot();
    let (server, users) = tern_for_dovecot("alice's secret", "");
    let dovecot_dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dovecot_dir.path(), &users, &server.data().join("tls"));
    Setup {
        server,
        dovecot,
        _dovecot_dir: dovecot_dir,
        users,
    }
}

fn client(s: &Setup, check: &str, user: &str, password: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(support::peers::fixture("mail_client.py"))
        .arg(check)
        .args(["--imap", &s.dovecot.imap.to_string()])
        .args(["--imaps", &s.dovecot.imaps.to_string()])
        .args(["--pop3s", &s.dovecot.pop3s.to_string()])
        .args(["--smtp", &s.server.mx().port().to_string()])
        .args([
            "--cafile",
            &s.server.data().join("tls/cert.pem").display().to_string(),
        ])
        .args(["--user", user, "--password", password])
        .args(extra);
    let result = run(cmd, Duration::from_secs(60));
    let log = std::fs::read_to_string(s.dovecot.dir.join("dovecot.log")).unwrap_or_default();
    assert!(
        result.success,
        "{check} as {user}:\n{}\n{}\ndovecot.log:\n{log}",
        result.stdout, result.stderr
    );
    eprintln!("{check}: {}", result.stdout.trim());
    result.stdout
}

#[test]
fn imap_and_pop3_over_terns_maildirs_and_users() {
    let s = setup();
    let mode = std::fs::metadata(&s.users).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(mode.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        mode.gid(),
        gid_of("dovecot", "apt-get install -y dovecot-core")
    );

    // A message through SMTP, fetched over IMAP byte for byte.
    let token = "tok-fetch-1";
    let mut c = s.server.connect("mx");
    c.command("EHLO client.example");
    let body = format!("From: a@b.example\r\nSubject: {token}\r\n\r\nline one\r\n..dot\r\n");
    let reply = c.send_mail("a@b.example", &["alice@example.org"], body.as_bytes());
    assert!(reply.starts_with("250"), "{reply}");
    let files = s
        .server
        .wait_for_messages("alice", 1, Duration::from_secs(20));
    let expect = s.server.dir.path().join("expected.eml");
    std::fs::write(&expect, &files[0]).unwrap();

    let pw = "alice's secret";
    client(&s, "login", "alice", pw, &[]);
    client(&s, "login", "alice@example.org", pw, &[]);
    client(&s, "wrong", "alice", pw, &[]);
    client(&s, "plaintext", "alice", pw, &[]);
    let e = expect.display().to_string();
    client(
        &s,
        "fetch",
        "alice",
        pw,
        &["--token", token, "--expect", &e],
    );
    client(&s, "append", "alice", pw, &["--token", "tok-append"]);
    // Maildir++: a folder is a `.Name/` Maildir inside the user's, the
    // layout in which tern files spam into `.Junk/`.
    let sent = s.server.data().join("mail/alice/.Sent");
    assert!(sent.join("cur").is_dir(), "{}", sent.display());
    client(&s, "idle", "alice", pw, &["--token", "tok-idle"]);
    client(&s, "pop3", "alice", pw, &["--token", token]);
    let log = std::fs::read_to_string(s.dovecot.dir.join("dovecot.log")).unwrap_or_default();
    assert!(
        log.contains("rip=127.0.0.1") && log.contains("auth failed"),
        "failed logins are logged with the peer:\n{log}"
    );
}

#[test]
fn a_user_added_by_reload_logs_in_without_restarting_dovecot() {
    let mut s = setup();
    let config = std::fs::read_to_string(&s.server.config_path).unwrap();
    let bob = password_line("bob's secret");
    let config = config.replacen(
        "[[user]]\nname = \"bob\"\n",
        &format!("[[user]]\nname = \"bob\"\n{bob}\n"),
        1,
    );
    std::fs::write(&s.server.config_path, config).unwrap();
    let before = std::fs::read_to_string(&s.users).unwrap();
    assert!(!before.contains("\nbob:"), "{before}");
    unsafe_kill(s.server.pid(), "HUP");
    wait_until(Duration::from_secs(10), "bob in the users file", || {
        std::fs::read_to_string(&s.users).is_ok_and(|t| t.contains("\nbob:"))
    });
    // bob has no Maildir yet: Dovecot makes it at login, as tern would.
    client(&s, "login", "bob@example.net", "bob's secret", &[]);
    s.server.stop();
}
