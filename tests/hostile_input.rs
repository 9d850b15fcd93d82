//! Hostile clients against the real listener (DESIGN invariant 5): what one
//! connection can make the daemon hold is bounded, whatever it sends and
//! however it splits or withholds its reads and writes. Each test measures
//! the running `tern` process (peak RSS from /proc, bytes on disk) or the
//! time until it drops the connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

/// A value in kB from /proc/PID/status (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Bytes in the files under `dir` (the spool and its temporary bodies).
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads and drops whatever the server sends until it closes; returns the
/// bytes read.
fn drain(mut stream: TcpStream) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        let mut total = 0;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    })
}

/// Issue 9.1: every write ends in the middle of a command line. The session
/// keeps only the unfinished line, so 50 MB sent this way leaves the peak
/// RSS where a few sessions put it (it grew by ~180 MB per second before).
#[test]
fn writes_ending_mid_line_hold_bounded_memory() {
    let server = TestServer::start("");
    let pid = server.pid();
    let before = status_kb(pid, "VmHWM");
    let mut client = Client::connect(server.mx());
    let replies = drain(client.stream.try_clone().unwrap());
    // 30 whole `NOOP xxx…` lines (2007 octets each, under line_length 2048)
    // and the first half of a 31st, whose rest opens the next write.
    let line = format!("NOOP {}\r\n", "x".repeat(2000));
    let (head, tail) = line.as_bytes().split_at(1000);
    let mut write = Vec::new();
    write.extend_from_slice(tail);
    for _ in 0..30 {
        write.extend_from_slice(line.as_bytes());
    }
    write.extend_from_slice(head);
    let mut sent = 0u64;
    client.send(head);
    while sent < 50_000_000 {
        client.send(&write);
        sent += write.len() as u64;
    }
    client.send(tail);
    client.send(b"QUIT\r\n");
    let answered = replies.join().unwrap();
    drop(client);
    let peak = status_kb(pid, "VmHWM");
    eprintln!(
        "tern peak RSS {before} kB before, {peak} kB after {sent} bytes in writes ending \
         mid-line ({answered} bytes of replies)"
    );
    assert!(answered > 0);
    assert!(
        peak < before + 32 * 1024,
        "peak RSS grew from {before} kB to {peak} kB"
    );
}

/// Issue 9.2: BDAT sizes that would wrap a 64-bit sum are as over the limit
/// as any other: the chunk is read and thrown away, never stored, and the
/// session goes on.
#[test]
fn bdat_sizes_that_wrap_are_refused_and_not_stored() {
    let server = TestServer::start("[limits]\nmessage_size = \"1M\"\n");
    let pid = server.pid();
    let mut client = Client::connect(server.mx());
    client.command("EHLO client.example");
    assert!(client.command("MAIL FROM:<a@b.example>").starts_with("250"));
    assert!(client
        .command("RCPT TO:<me@example.org>")
        .starts_with("250"));
    client.send(b"BDAT 10\r\n0123456789");
    let reply = client.read_reply();
    assert!(reply.starts_with("250"), "{reply}");
    // 10 + this = 2^64: a wrapping sum would be 0, under any limit.
    client.send(format!("BDAT {}\r\n", u64::MAX - 9).as_bytes());
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..30 {
        client.send(&chunk);
    }
    let stored = disk_usage(&server.data());
    let peak = status_kb(pid, "VmHWM");
    eprintln!(
        "after 30 MiB of a wrapping BDAT chunk: {stored} bytes under data_dir, peak RSS {peak} kB"
    );
    assert!(
        stored < 1 << 20,
        "{stored} bytes stored for a refused chunk"
    );
    drop(client);
    let run = server.tern_queue(&["list"]);
    assert!(!run.stdout.contains("a@b.example"), "{run:#?}");

    // A chunk that passes the limit without wrapping: 552 5.3.4 once its
    // bytes are read, nothing queued, and the session carries on.
    let mut client = Client::connect(server.mx());
    client.command("EHLO client.example");
    assert!(client.command("MAIL FROM:<a@b.example>").starts_with("250"));
    assert!(client
        .command("RCPT TO:<me@example.org>")
        .starts_with("250"));
    let half = vec![b'B'; 600 << 10];
    client.send(format!("BDAT {}\r\n", half.len()).as_bytes());
    client.send(&half);
    assert!(client.read_reply().starts_with("250"));
    client.send(format!("BDAT {} LAST\r\n", half.len()).as_bytes());
    client.send(&half);
    let reply = client.read_reply();
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert!(client.command("NOOP").starts_with("250"));
    let reply = client.send_mail(
        "a@b.example",
        &["me@example.org"],
        b"Subject: after\r\n\r\nok\r\n",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let got = server.wait_for_messages("me", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "only the message after the refusal");
}

/// Issue 9.3: a client that pipelines commands and never reads the replies
/// fills the socket; the write of the replies is bounded by the command
/// timeout, so the daemon drops it (before, it held the slot forever).
#[test]
fn a_client_that_never_reads_is_dropped() {
    let server =
        TestServer::start("[limits]\ncommand_timeout = \"2s\"\nsession_timeout = \"60s\"\n");
    let mut client = Client::connect(server.mx());
    client
        .stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let burst = b"NOOP\r\n".repeat(10_000);
    let started = Instant::now();
    let mut blocked_since: Option<Instant> = None;
    let ended = loop {
        if started.elapsed() > Duration::from_secs(40) {
            panic!("still connected after 40s; log:\n{}", server.log());
        }
        match client.stream.write(&burst) {
            Ok(_) => blocked_since = None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
            }
            Err(e) => break e,
        }
    };
    let since = blocked_since.map(|t| t.elapsed()).unwrap_or_default();
    eprintln!(
        "the connection ended ({ended}) {since:?} after the client's writes first blocked, \
         {:?} after it began",
        started.elapsed()
    );
    assert!(
        since < Duration::from_secs(15),
        "dropped only after {since:?}"
    );
    assert!(
        server.log().contains("write timed out"),
        "log:\n{}",
        server.log()
    );
    // The slot is free again: a new session works.
    let mut c = Client::connect(server.mx());
    assert!(c.command("NOOP").starts_with("250"));
}
