//! `tern status` as the administrator runs it: the real binary against a
//! real daemon (queued, deferred and held messages, last hour's
//! deliveries), and with the daemon stopped (read from disk, and saying
//! so). As in tests/queue_cli.rs, mail to the user `stuck` is deferred: its
//! Maildir lies under a plain file.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::*;

const STUCK_USER: &str = r#"
[[user]]
name = "stuck"
maildir = "blocked/stuck"
"#;

const WAIT: Duration = Duration::from_secs(20);

fn status(server: &TestServer, json: bool) -> Run {
    let config = server.config_path.to_str().unwrap();
    let mut args = vec!["status", "--config", config];
    if json {
        args.push("--json");
    }
    run_program(Path::new(tern_bin()), &args).ok()
}

fn status_json(server: &TestServer) -> Value {
    let run = status(server, true);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

fn send(server: &TestServer, to: &[&str]) -> String {
    let mut c = server.connect("mx");
    assert!(c.command("EHLO client.example").starts_with("250"));
    let reply = c.send_mail(
        "bob@example.org",
        to,
        b"From: bob@example.org\r\nSubject: status\r\n\r\nhello\r\n",
    );
    c.command("QUIT");
    queued_id(&reply)
}

#[test]
fn status_counts_the_queue_with_the_daemon_running_and_stopped() {
    let mut server = TestServer::start(STUCK_USER);
    std::fs::write(server.dir.path().join("blocked"), "not a directory").unwrap();
    // Deferred: one recipient delivered, one stuck.
    send(&server, &["stuck@example.org", "me@example.org"]);
    // Held after its first attempt.
    let held = send(&server, &["stuck@example.org"]);
    wait_until(WAIT, "two deferred messages", || {
        status_json(&server)["queue"]["deferred"] == 2
    });
    server.tern_queue(&["hold", &held]).ok();

    let json = status_json(&server);
    assert_eq!(json["running"], true, "{json:#}");
    assert_eq!(json["pid"], server.pid(), "{json:#}");
    assert!(json["uptime_secs"].as_u64().is_some(), "{json:#}");
    let queue = &json["queue"];
    assert_eq!(
        (
            &queue["total"],
            &queue["deferred"],
            &queue["held"],
            &queue["waiting"]
        ),
        (
            &Value::from(2),
            &Value::from(1),
            &Value::from(1),
            &Value::from(0)
        ),
        "{json:#}"
    );
    let hour = &json["last_hour"];
    assert_eq!(hour["delivered"], 1, "{json:#}");
    assert_eq!(hour["deferred"], 2, "{json:#}");
    assert_eq!(hour["bounced"], 0, "{json:#}");
    assert_eq!(hour["inbound_plain"], 2, "{json:#}");
    assert_eq!(hour["inbound_tls"], 0, "{json:#}");
    let mx = server.mx().to_string();
    assert_eq!(json["listeners"][0]["address"], mx.as_str(), "{json:#}");
    assert_eq!(json["listeners"][0]["role"], "mx");
    // The self-signed certificate tern made on its first start.
    assert_eq!(json["certificate"]["self_signed"], true, "{json:#}");
    assert!(json["certificate"]["not_after"].as_i64().is_some());
    assert!(json["disk_free"].as_u64().is_some());

    let text = status(&server, false).stdout;
    println!("{text}");
    for line in [
        format!(
            "tern {}: running (pid {}), up ",
            env!("CARGO_PKG_VERSION"),
            server.pid()
        ),
        format!("listeners:    mx {mx}\n"),
        "queue:        2 message(s): 1 deferred, 1 held, 0 waiting; oldest ".to_string(),
        "last hour:    1 delivered, 2 deferred, 0 bounced (recipients)\n".to_string(),
        "TLS:          inbound 0 of 2 messages (0%), outbound no sessions yet\n".to_string(),
        ", self-signed\n".to_string(),
        "last reload:  none since start\n".to_string(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }

    // A reload is shown with its result.
    unsafe_kill(server.pid(), "HUP");
    wait_until(WAIT, "the reload in tern status", || {
        status_json(&server)["last_reload"]["ok"] == true
    });

    // Stopped: the counts come from the spool, and the screen says so.
    server.stop();
    let json = status_json(&server);
    assert_eq!(json["running"], false, "{json:#}");
    assert_eq!(json["queue"]["total"], 2, "{json:#}");
    assert_eq!(json["queue"]["deferred"], 1, "{json:#}");
    assert_eq!(json["queue"]["held"], 1, "{json:#}");
    assert!(json["last_hour"].is_null(), "{json:#}");
    let text = status(&server, false).stdout;
    println!("{text}");
    for line in [
        "NOT RUNNING: what follows is read from disk\n",
        "queue:        2 message(s): 1 deferred, 1 held, 0 waiting",
        "last hour:    unknown (the daemon is not running)\n",
        " (configured)\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}
