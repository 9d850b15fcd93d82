//! `tern queue …` and `mailq` as the administrator runs them: the real binary
//! against a real daemon over its control socket, and read-only against the
//! spool when the daemon is down.
//!
//! A message stays queued because one recipient, the user `stuck`, has a
//! Maildir that cannot be created (a regular file is in the way): every local
//! delivery attempt fails with a temporary I/O error and is deferred, with no
//! network involved. (`[relay] nameservers` is not parsed on this branch yet,
//! and a remote recipient would make the daemon ask the machine's resolver.)
//!
//! What strangers wrote (a Subject: with terminal escape sequences, a remote
//! server's 450 with more of them, from the test sink reached by a
//! `[[route]]` to its IP address) is printed escaped by list, show, their
//! `--json` and mailq.

mod support;

use std::path::Path;
use std::time::Duration;
use support::sink::{Sink, SinkOptions, HOSTILE_TEXT};
use support::*;

/// A user whose Maildir lies under a plain file: delivery to it is deferred.
const STUCK_USER: &str = r#"
[[user]]
name = "stuck"
maildir = "blocked/stuck"
"#;

const WAIT: Duration = Duration::from_secs(20);

/// A server with the `stuck` user, its Maildir blocked.
fn start() -> TestServer {
    let server = TestServer::start(STUCK_USER);
    std::fs::write(server.dir.path().join("blocked"), "not a directory").unwrap();
    server
}

/// Sends a message from bob to `to`; returns its queue id.
fn send(server: &TestServer, to: &[&str], subject: &str) -> String {
    let mut c = server.connect("mx");
    assert!(c.command("EHLO client.example").starts_with("250"));
    let data = format!("From: bob@example.org\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let reply = c.send_mail("bob@example.org", to, data.as_bytes());
    c.command("QUIT");
    queued_id(&reply)
}

/// The `Attempts:` of `tern queue show ID`.
fn attempts(server: &TestServer, id: &str) -> u32 {
    let shown = server.tern_queue(&["show", id]).ok().stdout;
    shown
        .lines()
        .find_map(|l| l.strip_prefix("Attempts:"))
        .unwrap_or_else(|| panic!("no Attempts line: {shown}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until message `id` has had at least `n` failed attempts.
fn wait_attempts(server: &TestServer, id: &str, n: u32) {
    wait_until(WAIT, &format!("{n} attempt(s) of {id}"), || {
        attempts(server, id) >= n
    });
}

/// Sends a message to `stuck` (and `me`) and waits until its first attempt
/// was deferred.
fn deferred_message(server: &TestServer) -> String {
    let id = send(
        server,
        &["stuck@example.org", "me@example.org"],
        "stuck test",
    );
    wait_attempts(server, &id, 1);
    id
}

#[test]
fn list_and_show_report_a_deferred_message() {
    let server = start();
    let id = deferred_message(&server);

    let list = server.tern_queue(&["list"]).ok();
    assert!(list.stderr.is_empty(), "{list:#?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", list.stdout);
    assert!(lines[0].starts_with("ID "), "{}", lines[0]);
    for column in ["AGE", "SIZE", "SENDER", "RCPTS", "NEXT", "LAST ERROR"] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], id);
    assert!(
        row[1].ends_with('s') || row[1].ends_with('m'),
        "age: {}",
        row[1]
    );
    let size: u64 = row[2].parse().unwrap();
    assert_eq!(row[3], "bob@example.org");
    assert_eq!(row[4], "1/2", "one of two recipients pending");
    // Retried after 4-5 minutes.
    assert!(
        row[5] == "in" && (row[6] == "4m" || row[6] == "5m"),
        "{row:?}"
    );
    // The last error, short: its enhanced code (RFC 3463 X.2.0, a mailbox
    // trouble) and the start of its text; `show` has it whole.
    assert!(lines[1].contains("4.2.0 cannot write to "), "{}", lines[1]);
    assert_eq!(lines[2].trim(), "to stuck@example.org");
    assert_eq!(lines[3], format!("1 message, {size} bytes"));

    let show = server.tern_queue(&["show", &id]).ok().stdout;
    for expected in [
        format!("Queue ID:     {id}\n"),
        "Sender:       <bob@example.org>\n".to_string(),
        "State:        deferred\n".to_string(),
        "Attempts:     1\n".to_string(),
        "Recipients:   1 pending of 2\n".to_string(),
        "  <stuck@example.org> (local user stuck)\n      pending\n".to_string(),
        "  <me@example.org> (local user me)\n      delivered: delivered to maildir ".to_string(),
        "Headers:\n  Received: from client.example".to_string(),
        "  Subject: stuck test\n".to_string(),
    ] {
        assert!(show.contains(&expected), "missing {expected:?} in:\n{show}");
    }
    assert!(show.contains("Last error:   cannot write to "), "{show}");
    assert!(show.contains("Not a directory"), "the whole text: {show}");
    assert!(!show.contains("hello"), "the body is not shown: {show}");

    // JSON for scripts.
    let json = server.tern_queue(&["list", "--json"]).ok().stdout;
    assert!(json.contains(&format!("\"id\": \"{id}\"")), "{json}");
    assert!(
        json.contains("\"pending\": [\n      \"stuck@example.org\"\n    ]"),
        "{json}"
    );

    let unknown = server.tern_queue(&["show", "ABC"]);
    assert_eq!(unknown.code, Some(1));
    assert_eq!(
        unknown.stderr,
        "tern: no message 0000000000ABC in the queue\n"
    );
}

#[test]
fn hold_release_and_flush_change_what_the_scheduler_does() {
    let server = start();
    let id = deferred_message(&server);

    let held = server.tern_queue(&["hold", &id]).ok();
    assert_eq!(held.stdout, format!("{id}: held\n"));
    let list = server.tern_queue(&["list"]).ok().stdout;
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[5], "held", "{list}");
    let show = server.tern_queue(&["show", &id]).ok().stdout;
    assert!(
        show.contains("State:        held by the administrator"),
        "{show}"
    );
    assert!(show.contains("Next attempt: none while held\n"), "{show}");

    // A held message is not flushed.
    let flush = server.tern_queue(&["flush", &id]);
    assert_eq!(flush.code, Some(1), "{flush:#?}");
    assert!(flush.stderr.contains("is held; release it"), "{flush:#?}");
    let all = server.tern_queue(&["flush"]).ok();
    assert_eq!(
        all.stdout,
        "0 deferred message(s) will be tried now; 1 held message(s) left alone\n"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(attempts(&server, &id), 1, "held: no attempt");

    // Release: tried again at once.
    let released = server.tern_queue(&["release", &id]).ok();
    assert_eq!(
        released.stdout,
        format!("{id}: released; will be tried now\n")
    );
    wait_attempts(&server, &id, 2);
    let show = server.tern_queue(&["show", &id]).ok().stdout;
    assert!(show.contains("State:        deferred\n"), "{show}");

    // Flush one message, then all: one more attempt each time.
    let flushed = server.tern_queue(&["flush", &id]).ok();
    assert_eq!(flushed.stdout, format!("{id}: will be tried now\n"));
    wait_attempts(&server, &id, 3);
    let all = server.tern_queue(&["flush"]).ok();
    assert_eq!(all.stdout, "1 deferred message(s) will be tried now\n");
    wait_attempts(&server, &id, 4);
    let log = server.log();
    let deferrals = log
        .matches(&format!(
            "queue_id={id} to=<stuck@example.org> status=deferred"
        ))
        .count();
    assert_eq!(deferrals, 4, "{log}");
    assert!(log.contains(&format!("queue_id={id} held by the administrator")));
    // `me` got its copy once, on the first attempt.
    assert_eq!(server.messages("me").len(), 1);
}

#[test]
fn delete_with_bounce_tells_the_sender() {
    let server = start();
    let id = deferred_message(&server);
    let deleted = server.tern_queue(&["delete", &id, "--bounce"]).ok();
    assert!(
        deleted.stdout.starts_with(&format!("{id}: deleted")),
        "{deleted:#?}"
    );
    let bounces = server.wait_for_messages("bob", 1, WAIT);
    let bounce = String::from_utf8_lossy(&bounces[0]);
    assert!(
        bounce.contains("Subject: Undelivered Mail Returned to Sender\r\n"),
        "{bounce}"
    );
    assert!(bounce.contains("Return-Path: <>\r\n"), "{bounce}");
    assert!(
        bounce
            .contains("<stuck@example.org>: 550 5.0.0 Deleted from the queue by the administrator"),
        "{bounce}"
    );
    // Only the pending recipient is reported, not the delivered one.
    assert!(
        !bounce.contains("Final-Recipient: rfc822; me@example.org"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Subject: stuck test\r\n"),
        "the original headers: {bounce}"
    );
    // The bounce is delivered and gone; the original is gone.
    wait_until(WAIT, "an empty queue", || {
        server.tern_queue(&["list"]).ok().stdout == "Mail queue is empty\n0 messages, 0 bytes\n"
    });
    assert_eq!(server.tern_queue(&["show", &id]).code, Some(1));
}

#[test]
fn delete_without_bounce_is_silent() {
    let server = start();
    let id = deferred_message(&server);
    let deleted = server.tern_queue(&["delete", &id]).ok();
    assert_eq!(deleted.stdout, format!("{id}: deleted\n"));
    let list = server.tern_queue(&["list"]).ok();
    assert_eq!(list.stdout, "Mail queue is empty\n0 messages, 0 bytes\n");
    assert!(server
        .log()
        .contains(&format!("queue_id={id} deleted by the administrator\n")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.messages("bob").is_empty(), "no bounce");
    let again = server.tern_queue(&["delete", &id]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("no message"), "{again:#?}");
}

#[test]
fn with_the_daemon_down_list_and_show_read_the_spool_and_changes_are_refused() {
    let mut server = start();
    let id = deferred_message(&server);
    let running = server.tern_queue(&["list"]).ok().stdout;
    server.stop().expect("was running");
    let socket = server.data().join("control.sock");
    assert!(!socket.exists(), "a clean stop removes the socket");

    let list = server.tern_queue(&["list"]).ok();
    assert!(
        list.stderr.contains("the daemon is not running"),
        "{list:#?}"
    );
    assert!(list.stderr.contains("read-only"), "{list:#?}");
    // The same rows (the age column may have moved on by a second).
    let first = |s: &str| {
        s.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .map(str::to_owned)
    };
    assert_eq!(first(&list.stdout), first(&running));
    assert!(
        list.stdout.contains("to stuck@example.org\n"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("4.2.0 cannot write to "),
        "{}",
        list.stdout
    );
    assert!(list.stdout.ends_with(" bytes\n"));

    let show = server.tern_queue(&["show", &id]).ok();
    assert!(show.stderr.contains("the daemon is not running"));
    assert!(show.stdout.contains("Attempts:     1\n"), "{}", show.stdout);
    assert!(
        show.stdout.contains("  Subject: stuck test\n"),
        "{}",
        show.stdout
    );

    for change in [
        vec!["hold", id.as_str()],
        vec!["release", &id],
        vec!["flush"],
        vec!["delete", &id, "--bounce"],
    ] {
        let refused = server.tern_queue(&change);
        assert_eq!(refused.code, Some(1), "{change:?}: {refused:#?}");
        assert!(refused.stdout.is_empty());
        assert!(
            refused
                .stderr
                .starts_with("tern: the daemon is not running (nothing answers on "),
            "{refused:#?}"
        );
        assert!(refused.stderr.contains("changes to the queue need it"));
    }

    // After kill -9 the socket file stays behind; the next start replaces it.
    server.spawn();
    server.kill9();
    assert!(socket.exists());
    let list = server.tern_queue(&["list"]).ok();
    assert!(
        list.stderr.contains("the daemon is not running"),
        "{list:#?}"
    );
    server.spawn();
    let list = server.tern_queue(&["list"]).ok();
    assert!(list.stderr.is_empty(), "{list:#?}");
    assert!(list.stdout.contains(&id));
}

#[test]
fn a_second_daemon_on_the_same_data_refuses_to_start() {
    let server = start();
    let second = run_program(
        Path::new(tern_bin()),
        &["serve", "--config", server.config_path.to_str().unwrap()],
    );
    assert_eq!(second.code, Some(1), "{second:#?}");
    assert!(
        second
            .stderr
            .contains("another tern daemon is already running"),
        "{second:#?}"
    );
    // The first one is unharmed.
    server.tern_queue(&["list"]).ok();
}

#[test]
fn mailq_is_tern_queue_list() {
    let server = start();
    let id = deferred_message(&server);
    let mailq = server.dir.path().join("mailq");
    std::os::unix::fs::symlink(tern_bin(), &mailq).unwrap();
    let config = server.config_path.to_str().unwrap();
    let out = run_program(&mailq, &["--config", config]).ok();
    assert!(out.stdout.starts_with("ID "), "{out:#?}");
    assert!(out.stdout.contains(&id));
    assert!(out.stdout.contains("to stuck@example.org\n"));
    assert!(out.stdout.ends_with(" bytes\n"));
    // Without --config it finds the config as every command does
    // (tests/cli_config.rs).
}

#[test]
fn usage_errors_exit_2() {
    let tern = Path::new(tern_bin());
    for args in [
        &["queue", "show"][..],
        &["queue", "show", "not-an-id"],
        &["queue", "hold", "12345678901234567"],
        &["queue", "frobnicate"],
        &["queue", "delete", "ABC", "--bonce"],
    ] {
        let run = run_program(tern, args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
    }
    assert_eq!(run_program(tern, &["queue", "--help"]).ok().code, Some(0));
}

/// What a terminal would act on: C0 controls other than tab and newline,
/// DEL, C1 controls, bidi embeddings, overrides and isolates.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\t' && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[test]
fn escape_sequences_from_strangers_are_shown_escaped() {
    let sink = Sink::start("127.0.0.1:0", SinkOptions::default());
    let server = TestServer::start(&format!(
        "[aliases]\n\"esc@example.org\" = \"escape@remote.example\"\n\n\
         [[route]]\ndomain = \"remote.example\"\nhost = \"127.0.0.1:{}\"\n",
        sink.addr.port()
    ));
    let subject = "\u{1b}[2J\u{1b}]0;root@host\u{7}urgent \u{9b}1m\u{202e}gpj.exe";
    let id = send(&server, &["esc@example.org"], subject);
    wait_attempts(&server, &id, 1);

    let show = server.tern_queue(&["show", &id]).ok().stdout;
    assert!(!show.contains('\u{1b}'), "raw ESC in:\n{show:?}");
    assert_eq!(raw_controls(&show), Vec::<char>::new(), "{show:?}");
    assert!(
        show.contains("  Subject: \\x1b[2J\\x1b]0;root@host\\x07urgent \\x9b1m\\u{202e}gpj.exe\n"),
        "{show}"
    );
    assert!(
        show.contains("450 4.2.1 \\x1b[2J\\x1b]0;owned\\x07 busy \\x9b31m \\u{202e}later"),
        "the remote server's text, escaped: {show}"
    );
    assert!(sink.transactions.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    let mailq = server.dir.path().join("mailq");
    std::os::unix::fs::symlink(tern_bin(), &mailq).unwrap();
    let config = server.config_path.to_str().unwrap();
    let outputs = [
        ("list", server.tern_queue(&["list"]).ok().stdout),
        (
            "list --json",
            server.tern_queue(&["list", "--json"]).ok().stdout,
        ),
        (
            "show --json",
            server.tern_queue(&["show", &id, "--json"]).ok().stdout,
        ),
        (
            "mailq",
            run_program(&mailq, &["--config", config]).ok().stdout,
        ),
    ];
    for (what, out) in &outputs {
        assert!(!out.contains('\u{1b}'), "raw ESC in {what}:\n{out:?}");
        assert_eq!(raw_controls(out), Vec::<char>::new(), "{what}: {out:?}");
        assert!(out.contains(&id), "{what}: {out}");
    }
    // The list names the reason by its enhanced code and the server that
    // gave it; `show` (above) has the text.
    assert!(
        outputs[0].1.contains("  4.2.1 127.0.0.1\n"),
        "{}",
        outputs[0].1
    );
    // The JSON still carries the exact texts, as JSON escapes.
    let json = &outputs[2].1;
    assert!(json.contains("\\u001b[2J"), "{json}");
    assert!(json.contains("\\u202e"), "{json}");
    assert!(HOSTILE_TEXT.contains('\u{1b}'));
}

/// Issue 14.4: a spool segment that cannot be read does not stop tern; it is
/// moved aside, the log says what and where, and `tern queue list` says how
/// many pieces were set aside.
#[test]
fn a_damaged_segment_is_set_aside_and_counted_by_queue_list() {
    let mut server = TestServer::start("");
    server.stop();
    // An older segment than any tern wrote, empty: not a readable segment.
    let spool = server.data().join("spool");
    std::fs::write(spool.join("000000000000.log"), b"").unwrap();
    server.spawn();
    let log = server.log();
    assert!(
        log.contains("000000000000.log is not a readable segment (0 bytes); moved aside to"),
        "{log}"
    );
    assert!(spool.join("damaged/000000000000.log.bin").is_file());
    let mut c = server.connect("mx");
    c.command("EHLO client.example");
    let reply = c.send_mail(
        "a@b.example",
        &["me@example.org"],
        b"Subject: after\r\n\r\nok\r\n",
    );
    assert!(reply.starts_with("250"), "{reply}");
    let list = server.tern_queue(&["list"]);
    assert!(
        list.stdout
            .contains("1 damaged piece(s) of the spool (0 bytes) set aside in"),
        "{list:#?}"
    );
}
