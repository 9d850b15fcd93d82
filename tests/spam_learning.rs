//! Issue 15: the owner teaches rspamd by moving mail. A real tern delivers
//! into its Maildirs, a real Dovecot (scripts/dovecot-instance --learn: the
//! appliance's image/dovecot/tern-sieve.conf and sieve scripts) serves them,
//! and a real rspamd (scripts/rspamd-instance --controller) learns: a message
//! moved into Junk over IMAP is learnt as spam, one moved out as ham, which
//! `rspamc stat` counts.
//!
//! tern runs as nobody with Dovecot's group, as in tests/dovecot.rs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::dns::DnsServer;
use support::peers::{run, PYTHON};
use support::*;

/// Stops the instance under `dir` with `script stop` when dropped.
struct Instance {
    script: &'static str,
    dir: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new(script(self.script))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn start(script_name: &'static str, dir: &Path, args: &[String], log: &str) -> Instance {
    let out = Command::new(script(script_name))
        .arg("start")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script_name}: {e}"));
    assert!(
        out.status.success(),
        "{script_name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join(log)).unwrap_or_default()
    );
    Instance {
        script: script_name,
        dir: dir.to_path_buf(),
    }
}

/// `learned: N` of a statfile in `rspamc stat`.
fn learned(controller: u16, statfile: &str) -> u64 {
    let out = Command::new("/usr/bin/rspamc")
        .args(["-h", &format!("127.0.0.1:{controller}"), "stat"])
        .output()
        .expect("run rspamc");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with(&format!("Statfile: {statfile} ")))
        .and_then(|l| l.split("learned: ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {statfile} in rspamc stat:\n{text}"))
}

/// Moves every message of `from` to `to` over IMAPS with Python's imaplib
/// (MOVE, RFC 6851, as mail clients do); prints how many.
const MOVE: &str = r#"
import imaplib, ssl, sys
port, cafile, user, password, src, dst = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
m.login(user, password)
typ, data = m.select(src)
assert typ == "OK", data
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
assert uids, "nothing in " + src
typ, data = m.uid("MOVE", b",".join(uids).decode(), dst)
assert typ == "OK", data
print("moved", len(uids))
m.logout()
"#;

fn imap_move(port: u16, cafile: &Path, from: &str, to: &str) {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c")
        .arg(MOVE)
        .arg(port.to_string())
        .arg(cafile)
        .args(["alice", "alice's secret", from, to]);
    let result = run(cmd, Duration::from_secs(60));
    assert!(
        result.success && result.stdout.contains("moved 1"),
        "{}",
        result.transcript()
    );
}

#[test]
fn moving_mail_into_and_out_of_junk_teaches_rspamd() {
    for (path, package) in [
        ("/usr/bin/rspamd", "rspamd"),
        ("/usr/sbin/dovecot", "dovecot-core dovecot-imapd"),
        (
            "/usr/lib/dovecot/modules/lib90_sieve_plugin.so",
            "dovecot-sieve",
        ),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: apt-get install -y {package}"
        );
    }
    let dns = DnsServer::start();
    let rspamd_dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(rspamd_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let controller = free_port();
    let _rspamd = start(
        "rspamd-instance",
        &rspamd_dir.path().join("rspamd"),
        &[
            "--port".into(),
            free_port().to_string(),
            "--dns".into(),
            dns.addr.to_string(),
            "--controller".into(),
            controller.to_string(),
        ],
        "rspamd.log",
    );
    assert_eq!(learned(controller, "BAYES_SPAM"), 0);
    assert_eq!(learned(controller, "BAYES_HAM"), 0);

    let (server, users) = tern_for_dovecot("alice's secret", "");
    let dovecot_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dovecot_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tls = server.data().join("tls");
    let imaps = free_port();
    let _dovecot = start(
        "dovecot-instance",
        dovecot_dir.path(),
        &[
            "--users".into(),
            users.display().to_string(),
            "--cert".into(),
            tls.join("cert.pem").display().to_string(),
            "--key".into(),
            tls.join("key.pem").display().to_string(),
            "--imap".into(),
            free_port().to_string(),
            "--imaps".into(),
            imaps.to_string(),
            "--pop3s".into(),
            free_port().to_string(),
            "--learn".into(),
            format!("127.0.0.1:{controller}"),
        ],
        "dovecot.log",
    );

    // Enough words for Bayes (rspamd learns from 11 tokens on).
    let words: String = (0..40)
        .map(|i| format!("offer{i} cheap pills discount winner prize "))
        .collect();
    let message = format!(
        "From: <promo@example.com>\r\nTo: <alice@example.org>\r\nSubject: you won\r\n\
         Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <won.1@example.com>\r\n\r\n{words}\r\n"
    );
    let mut client = server.connect("mx");
    client.command("EHLO client.example.com");
    let reply = client.send_mail(
        "promo@example.com",
        &["alice@example.org"],
        message.as_bytes(),
    );
    assert!(reply.starts_with("250"), "{reply}");
    server.wait_for_messages("alice", 1, Duration::from_secs(20));

    let cafile = tls.join("cert.pem");
    let dovecot_log =
        || std::fs::read_to_string(dovecot_dir.path().join("dovecot.log")).unwrap_or_default();
    let rspamd_log =
        || std::fs::read_to_string(rspamd_dir.path().join("rspamd/rspamd.log")).unwrap_or_default();
    imap_move(imaps, &cafile, "INBOX", "Junk");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while learned(controller, "BAYES_SPAM") != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "rspamd learnt no spam; dovecot.log:\n{}\nrspamd.log (end):\n{}",
            dovecot_log(),
            rspamd_log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(learned(controller, "BAYES_HAM"), 0, "{}", dovecot_log());

    imap_move(imaps, &cafile, "Junk", "INBOX");
    wait_until(Duration::from_secs(30), "rspamd learns ham", || {
        learned(controller, "BAYES_HAM") == 1
    });
}
