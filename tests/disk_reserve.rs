//! The free-space reserve and a full disk (issue 9, point 13), on a small
//! tmpfs mounted for the test as data_dir: below `[limits] free_space` MAIL
//! gets 452 4.3.1 and sendmail exits 75; a DATA or BDAT that runs out of
//! space gets 452 4.3.1 and the daemon keeps serving; a message accepted
//! before is delivered once space is freed, and everything resumes by itself.
//! Also: the systemd unit carries the memory and task ceilings.
//!
//! Mounting needs root (the tests run as root); a test that cannot mount
//! fails, it is never skipped.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{read_maildir, tern_bin, wait_until, Client, ServfailDns, TestServer, BASE_CONFIG};
use tern::queue::free_space::available_now;

/// The tmpfs's size, and the reserve tern keeps on it.
const TMPFS_SIZE: &str = "16m";
const RESERVE: u64 = 512 << 10;

/// A size-limited tmpfs on a fresh directory; unmounted when dropped
/// (declare it before the server, so the server is stopped first).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("mount is not installed: apt-get install -y mount")
            }
            other => panic!(
                "cannot mount a {size} tmpfs on {} ({other:?}): this test needs root \
                 (CAP_SYS_ADMIN) to make a small filesystem; run the tests as root",
                dir.path().display()
            ),
        }
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let plain = Command::new("umount").arg(path).status();
        if !plain.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

/// Free bytes on the filesystem of `dir`, as tern measures them.
fn free(dir: &Path) -> u64 {
    available_now(dir).expect("statvfs")
}

/// Grows or shrinks `filler` until `left` bytes (within 64 KiB below) are
/// free on its filesystem.
fn set_free(filler: &Path, left: u64) {
    let dir = filler.parent().expect("parent");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .expect("filler");
    let chunk = vec![0u8; 4096];
    // Bounded: at most the whole tmpfs, in 4 KiB steps.
    for _ in 0..(64 << 20) / 4096 {
        let now = free(dir);
        if now > left {
            let want = (now - left).min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..want]).expect("fill");
        } else if now + 64 * 1024 <= left {
            let len = file.metadata().expect("filler").len();
            file.set_len(len.saturating_sub(left - now))
                .expect("shrink");
        } else {
            return;
        }
    }
    panic!("cannot bring free space to {left}: {}", free(dir));
}

/// A body of about `size` bytes: a Subject: with `token`, then 78-octet lines.
fn body(token: &str, size: usize) -> Vec<u8> {
    let mut out = format!("Subject: {token}\r\n\r\n").into_bytes();
    let line = format!("{}\r\n", "x".repeat(76));
    while out.len() < size {
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Runs `tern sendmail -C CONFIG me@example.org` with `input`; (code, stderr).
fn sendmail(server: &TestServer, input: &[u8]) -> (i32, String) {
    let mut child = Command::new(tern_bin())
        .arg("sendmail")
        .arg("-C")
        .arg(&server.config_path)
        .arg("me@example.org")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("sendmail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lets the daemon's cached measurement of free space expire.
fn past_the_cache() {
    std::thread::sleep(tern::queue::free_space::REFRESH + Duration::from_millis(200));
}

#[test]
fn the_free_space_reserve_and_a_full_disk() {
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let data: PathBuf = tmpfs.path().join("data");
    let dns = ServfailDns::start();
    let config = format!(
        "{}\n[limits]\nfree_space = {RESERVE}\n[queue]\nretry_first = \"1s\"\n\
         retry_max = \"1s\"\n[relay]\nnameservers = [\"{}\"]\n",
        BASE_CONFIG.replace("{data}", data.to_str().expect("utf-8")),
        dns.addr
    );
    let mut server = TestServer::start_with_config(tempfile::tempdir().expect("temp dir"), &config);
    server.dns = Some(dns);
    let maildir = data.join("mail/me/new");
    let filler = tmpfs.path().join("filler");

    // 1.5 MiB free, above the 512 KiB reserve: MAIL is taken, but a 3 MB
    // DATA (spilled to disk past 1 MiB) runs out of space: 452 4.3.1, not 250.
    set_free(&filler, 1536 << 10);
    past_the_cache();
    let mut c = Client::connect(server.mx());
    assert!(c.command("EHLO client.example").starts_with("250"));
    assert!(c.command("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(c.command("RCPT TO:<me@example.org>").starts_with("250"));
    assert!(c.command("DATA").starts_with("354"));
    c.send(&body("too-big-data", 3_000_000));
    c.send(b".\r\n");
    let reply = c.read_reply();
    assert!(reply.starts_with("452 4.3.1 "), "{reply}\n{}", server.log());
    // The same with BDAT, in the same session: the daemon is still there.
    assert!(c.command("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(c.command("RCPT TO:<me@example.org>").starts_with("250"));
    let chunk = body("too-big-bdat", 3_000_000);
    c.send(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    c.send(&chunk);
    let reply = c.read_reply();
    assert!(reply.starts_with("452 4.3.1 "), "{reply}");
    assert!(c.command("QUIT").starts_with("221"));

    // The failed bodies gave their space back.
    assert!(
        free(tmpfs.path()) >= (1536 << 10) - 64 * 1024,
        "free {} after the failed messages",
        free(tmpfs.path())
    );

    // 700 KiB free: MAIL is taken, the 900 kB body is held in memory, and
    // the spool's append runs out of space: 452 4.3.1. The spool cuts its
    // torn write off, so the space comes back.
    set_free(&filler, 700 << 10);
    past_the_cache();
    let mut c = Client::connect(server.mx());
    assert!(c.command("EHLO client.example").starts_with("250"));
    assert!(c.command("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(c.command("RCPT TO:<me@example.org>").starts_with("250"));
    assert!(c.command("DATA").starts_with("354"));
    c.send(&body("too-big-spool", 900_000));
    c.send(b".\r\n");
    let reply = c.read_reply();
    assert!(reply.starts_with("452 4.3.1 "), "{reply}\n{}", server.log());
    assert!(
        free(tmpfs.path()) >= (700 << 10) - 64 * 1024,
        "free {} after the failed append",
        free(tmpfs.path())
    );

    // 1.4 MiB free: a 1,000,000-octet message fits the spool, but then less
    // than the reserve is left, and too little to deliver it to the
    // Maildir: it waits in the queue.
    set_free(&filler, 1434 << 10);
    past_the_cache();
    let reply = c.send_mail(
        "a@example.net",
        &["me@example.org"],
        &body("kept-token", 1_000_000),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}\n{}", server.log());
    past_the_cache();
    assert!(free(tmpfs.path()) < RESERVE, "{}", free(tmpfs.path()));
    assert!(read_maildir(&maildir).is_empty(), "no room to deliver yet");

    // Below the reserve: MAIL gets 452 4.3.1, on a session open from before
    // and on a new one; sendmail exits 75 (EX_TEMPFAIL) and says why.
    let reply = c.command("MAIL FROM:<a@example.net>");
    assert_eq!(reply, "452 4.3.1 Insufficient system storage");
    let mut fresh = Client::connect(server.mx());
    assert!(fresh.command("EHLO client.example").starts_with("250"));
    let reply = fresh.command("MAIL FROM:<b@example.net>");
    assert!(reply.starts_with("452 4.3.1 "), "{reply}");
    let (code, stderr) = sendmail(&server, b"Subject: cron\n\nhello\n");
    assert_eq!(code, 75, "{stderr}");
    assert!(stderr.contains("reserve"), "{stderr}");
    assert!(
        server.log().contains("MAIL refused"),
        "the refusal is logged"
    );

    // Space is freed: within a second MAIL works again, by itself, and the
    // message accepted before is delivered by the retry.
    std::fs::remove_file(&filler).expect("remove filler");
    past_the_cache();
    let reply = fresh.send_mail(
        "b@example.net",
        &["me@example.org"],
        &body("after-token", 2000),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let (code, stderr) = sendmail(&server, b"Subject: cron-after\n\nhello\n");
    assert_eq!(code, 0, "{stderr}");
    wait_until(Duration::from_secs(30), "three deliveries", || {
        read_maildir(&maildir).len() >= 3
    });
    let delivered = read_maildir(&maildir);
    let text: Vec<String> = delivered
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    for token in ["kept-token", "after-token", "cron-after"] {
        assert_eq!(
            text.iter().filter(|t| t.contains(token)).count(),
            1,
            "{token} delivered once"
        );
    }
    assert!(
        !text.iter().any(|t| t.contains("too-big")),
        "nothing refused was delivered"
    );
    let kept = text
        .iter()
        .find(|t| t.contains("kept-token"))
        .expect("found");
    assert!(kept.len() > 1_000_000, "the whole message");
    assert!(fresh.command("QUIT").starts_with("221"));
    drop(server);
}

#[test]
fn the_unit_caps_memory_and_tasks() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/tern.service"))
            .expect("readable");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("tern.service sets no {key}="))
            .to_string()
    };
    let mib = |v: String| -> u64 {
        v.strip_suffix('M')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{v} is not in M"))
    };
    let (high, max) = (mib(value("MemoryHigh")), mib(value("MemoryMax")));
    assert!(
        high < max && max <= 1024 / 2,
        "{high}M / {max}M on a 1 GiB VM"
    );
    let tasks: u64 = value("TasksMax").parse().expect("a number");
    assert!((64..=1024).contains(&tasks), "TasksMax={tasks}");
}
