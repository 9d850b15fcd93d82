//! `systemctl reload tern` and `tern reload`: the new tern.toml takes effect
//! for new sessions, open sessions keep going, and a broken file is refused
//! with the old configuration still serving. SIGHUP does it in the
//! background (the journal says how it went); `tern reload` prints the
//! file's mistake without asking the daemon, or the daemon's own answer,
//! which also covers the certificates and keys the file names.

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

/// `tern reload --config <this server's config>`, finding the daemon's
/// submission socket (for when the file does not parse) in `runtime`.
fn tern_reload(server: &TestServer, runtime: &std::path::Path) -> Run {
    let output = std::process::Command::new(tern_bin())
        .args(["reload", "--config", server.config_path.to_str().unwrap()])
        .env("TERN_SUBMIT_SOCKET", runtime.join("submit.sock"))
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn tern_reload_prints_the_mistake_or_the_daemons_answer() {
    // As under systemd: a runtime directory with the submission socket.
    let runtime = tempfile::tempdir().unwrap();
    let mut server = TestServer::start("");
    server.stop();
    server
        .env
        .push(("RUNTIME_DIRECTORY".into(), runtime.path().to_path_buf()));
    server.spawn();
    let runtime = runtime.path();
    let original = std::fs::read_to_string(&server.config_path).unwrap();
    let path = server.config_path.display().to_string();

    // A good file: in force when the command returns.
    std::fs::write(
        &server.config_path,
        format!("{original}\n[[user]]\nname = \"carol\"\n"),
    )
    .unwrap();
    let run = tern_reload(&server, runtime).ok();
    assert!(
        run.stdout
            .starts_with(&format!("reloaded: {path}: hostname mx.example.org")),
        "{run:#?}"
    );
    let mut c = server.connect("mx");
    c.command("EHLO c.example");
    c.command("MAIL FROM:<a@b.example>");
    assert!(c.command("RCPT TO:<carol@example.org>").starts_with("250"));
    c.command("QUIT");

    // A file that does not check: its mistake; the daemon, asked on its
    // submission socket (the file names no data directory now), refuses it
    // too and keeps the reason for `tern status` and systemd's status line.
    let broken = format!("{original}\n[[user]]\nname = \"dave\"\nmailbox = 1\n");
    std::fs::write(&server.config_path, &broken).unwrap();
    let line = broken.lines().count();
    let mistake = format!("{path}:{line}:1: unknown key \"mailbox\"");
    let run = tern_reload(&server, runtime);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.starts_with(&mistake), "{run:#?}");
    assert!(run.stderr.contains("not reloaded"), "{run:#?}");
    wait_for_log(&server, "reload refused");
    assert!(server.log().contains(&mistake), "{}", server.log());
    std::fs::write(&server.config_path, &original).unwrap();
    let status = run_program(
        std::path::Path::new(tern_bin()),
        &["status", "--config", &path],
    )
    .ok();
    assert!(status.stdout.contains(&mistake), "{status:#?}");

    // A file that checks but names a certificate that is not there: only
    // the daemon finds out, and says so.
    let missing = server.dir.path().join("no-such-cert.pem");
    std::fs::write(
        &server.config_path,
        format!(
            "{original}\n[tls]\ncert = \"{0}\"\nkey = \"{0}\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let run = tern_reload(&server, runtime);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("no-such-cert.pem"), "{run:#?}");
    assert!(run.stderr.contains("reload refused"), "{run:#?}");
    // carol, from the last good reload, is still here; dave never came.
    let mut c = server.connect("mx");
    c.command("EHLO c.example");
    c.command("MAIL FROM:<a@b.example>");
    assert!(c.command("RCPT TO:<carol@example.org>").starts_with("250"));
    assert!(c.command("RCPT TO:<dave@example.org>").starts_with("550"));
    c.command("QUIT");

    // No daemon: said plainly.
    std::fs::write(&server.config_path, &original).unwrap();
    server.stop();
    let run = tern_reload(&server, runtime);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("not running"), "{run:#?}");
}
