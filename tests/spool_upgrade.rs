//! A spool written by an older release is read correctly after an upgrade:
//! `tests/fixtures/spool-v1/` is the spool of a real `tern serve` built from
//! commit aefa3d7 (record format 1, with delivery results as text; its
//! README says how it was made). Opened by today's code, read-only and for
//! writing (recovery), every message comes back with its recipients' states,
//! its attempts, its hold and delay-notice flags and its texts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tern::clock::SystemClock;
use tern::queue::{Entry, QueueId, RcptStatus, Record, Spool, SpoolOptions};
use tern::smtp::EnhancedCode;

/// Where the fixture's paths pointed when it was made.
const FIXDIR: &str = "/work/wt-queue-notes/fx";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1")
}

/// A copy of the fixture's spool directory (opening a spool writes to it).
fn copy_of_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("000000000001.log"),
        dir.path().join("000000000001.log"),
    )
    .unwrap();
    dir
}

/// One entry in words: what the test compares.
fn describe(e: &Entry) -> String {
    let m = &e.message;
    let mut out = format!(
        "{} from <{}> attempts={} held={} delay_notified={} next_attempt>0={}\n  last error: {}\n",
        m.id,
        m.envelope
            .sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        e.attempts,
        e.held,
        e.delay_notified,
        e.next_attempt > 0,
        e.last_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" / "),
    );
    for (r, s) in m.envelope.recipients.iter().zip(&m.statuses) {
        let state = match s {
            RcptStatus::Pending => "pending".to_string(),
            RcptStatus::Delivered(d) => format!("delivered: {d}"),
            RcptStatus::Failed(d) => format!("failed: {d}"),
        };
        out.push_str(&format!("  <{}> {state}\n", r.original));
    }
    out.replace(FIXDIR, "FIXDIR")
}

const EXPECTED: &str = "\
661F836B18F20 from <bob@example.org> attempts=4 held=false delay_notified=true next_attempt>0=true
  last error: cannot write to FIXDIR/data/blocked/stuck: Not a directory (os error 20)
  <me@example.org> delivered: delivered to maildir FIXDIR/data/mail/me/new/1796568557.Q661F836B18F20R0.mx.example.org
  <stuck@example.org> pending
661F836B1A30B from <bob@example.org> attempts=4 held=false delay_notified=true next_attempt>0=true
  last error: 127.0.0.1[127.0.0.1] said: 450 4.2.1 <later@remote.test>: mailbox busy, try later
  <ok@remote.test> delivered: 127.0.0.1[127.0.0.1] said: 250 2.0.0 Ok: queued as SINK1
  <no@remote.test> failed: 127.0.0.1[127.0.0.1] said: 550 5.1.1 <no@remote.test>: Recipient address rejected: no such user
  <later@remote.test> pending
661F836B1B0F6 from <bob@example.org> attempts=1 held=false delay_notified=true next_attempt>0=true
  last error: MX lookup for nowhere.test: DNS lookup failed: request timed out
  <x@nowhere.test> pending
661F836B1BF8A from <bob@example.org> attempts=1 held=true delay_notified=false next_attempt>0=true
  last error: cannot write to FIXDIR/data/blocked/stuck: Not a directory (os error 20)
  <stuck@example.org> pending
661F836B1CE2E from <> attempts=4 held=false delay_notified=true next_attempt>0=true
  last error: 127.0.0.1[127.0.0.1] said: 450 4.2.1 <later@remote.test>: mailbox busy, try later
  <later@remote.test> pending
";

fn all(entries: &[Entry]) -> String {
    entries.iter().map(describe).collect()
}

#[test]
fn the_older_spool_reads_back_read_only() {
    let entries = Spool::inspect(&fixture()).unwrap();
    assert_eq!(all(&entries), EXPECTED);
}

#[test]
fn the_older_spool_is_recovered_and_its_messages_load() {
    let dir = copy_of_fixture();
    let spool = Spool::open(dir.path(), Arc::new(SystemClock), SpoolOptions::default()).unwrap();
    assert_eq!(all(&spool.entries()), EXPECTED);
    for e in spool.entries() {
        let loaded = spool.load(e.message.id).unwrap();
        let text = String::from_utf8_lossy(&loaded.content);
        assert!(
            text.starts_with("Received: by mx.example.org (tern)"),
            "{text}"
        );
        assert!(text.contains("\nhello "), "{text}");
    }
    // Today's code writes a record (in a segment of format 2) about a
    // message of the old segment; reopened, both formats are read.
    let held: QueueId = "661F836B1BF8A".parse().unwrap();
    spool
        .update_blocking(vec![Record::Hold {
            id: held,
            held: false,
        }])
        .unwrap();
    drop(spool);
    let again = Spool::open(dir.path(), Arc::new(SystemClock), SpoolOptions::default()).unwrap();
    let expected = EXPECTED.replace(
        "661F836B1BF8A from <bob@example.org> attempts=1 held=true",
        "661F836B1BF8A from <bob@example.org> attempts=1 held=false",
    );
    assert_eq!(all(&again.entries()), expected);
    assert!(dir.path().join("000000000002.log").exists());
}

#[test]
fn the_older_texts_come_back_typed() {
    let entries = Spool::inspect(&fixture()).unwrap();
    let remote: QueueId = "661F836B1A30B".parse().unwrap();
    let e = entries.iter().find(|e| e.message.id == remote).unwrap();
    let RcptStatus::Failed(failed) = &e.message.statuses[1] else {
        panic!("{:?}", e.message.statuses[1]);
    };
    assert_eq!(failed.code, Some(550));
    assert_eq!(failed.enhanced, Some(EnhancedCode(5, 1, 1)));
    assert_eq!(failed.status(5), EnhancedCode(5, 1, 1));
    let mta = failed.remote.as_ref().unwrap();
    assert_eq!(
        (mta.host.as_str(), mta.ip.to_string().as_str()),
        ("127.0.0.1", "127.0.0.1")
    );
    assert_eq!(
        failed.text,
        "<no@remote.test>: Recipient address rejected: no such user"
    );
    let deferred = &e.last_errors[0];
    assert_eq!(deferred.enhanced, Some(EnhancedCode(4, 2, 1)));
    assert_eq!(deferred.code, Some(450));

    // `tern queue list` names the reason by enhanced code and host.
    let list = tern::queue::listing::inspect_list(&fixture()).unwrap();
    let text = tern::control::display::format_list(&list, std::time::SystemTime::now());
    assert!(text.contains("  4.2.1 127.0.0.1\n"), "{text}");
}
