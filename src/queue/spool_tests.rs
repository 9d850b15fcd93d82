//! Unit tests of the spool: recovery after restart, torn writes, segment
//! rotation and deletion, compaction.

use super::*;
use crate::clock::SystemClock;
use crate::smtp::{Address, Recipient, Route};
use std::io::Write;

fn envelope(n: usize) -> Envelope {
    Envelope {
        sender: Some(Address::parse("sender@b.example").unwrap()),
        recipients: (0..n)
            .map(|i| Recipient {
                original: format!("user{i}@example.org"),
                route: Route::Local(format!("user{i}")),
            })
            .collect(),
        eight_bit: false,
        smtputf8: false,
    }
}

fn open(dir: &Path, segment_size: u64) -> Spool {
    let options = SpoolOptions {
        log: LogOptions {
            segment_size,
            ..LogOptions::default()
        },
    };
    Spool::open(dir, Arc::new(SystemClock), options).unwrap()
}

async fn put(spool: &Spool, body: &[u8]) -> QueueId {
    let id = spool.new_id();
    spool
        .enqueue(
            id,
            envelope(2),
            b"Received: test\r\n".to_vec(),
            Body::from_bytes(body.to_vec()),
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn messages_survive_a_restart_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let spool = open(dir.path(), 64 << 20);
        (
            put(&spool, b"first\r\n").await,
            put(&spool, b"second\r\n").await,
        )
    };
    let spool = open(dir.path(), 64 << 20);
    assert_eq!(spool.len(), 2);
    let loaded = spool.load(a).unwrap();
    assert_eq!(loaded.content, b"Received: test\r\nfirst\r\n");
    assert_eq!(loaded.entry.message.envelope, envelope(2));
    assert_eq!(
        spool.load(b).unwrap().content,
        b"Received: test\r\nsecond\r\n"
    );
    // New ids never repeat recovered ones.
    assert!(spool.new_id() > b);
}

#[tokio::test]
async fn state_records_are_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let spool = open(dir.path(), 64 << 20);
        let a = put(&spool, b"a\r\n").await;
        let b = put(&spool, b"b\r\n").await;
        spool
            .update(vec![
                Record::Recipient {
                    id: a,
                    index: 1,
                    status: RcptStatus::Delivered(crate::queue::Diagnostic::from_v1_text("ok")),
                },
                Record::Attempt {
                    id: a,
                    attempts: 3,
                    next_attempt: 12345,
                    errors: vec![crate::queue::Diagnostic::from_v1_text("451 later")],
                },
                Record::Hold { id: a, held: true },
                Record::Done { id: b },
            ])
            .await
            .unwrap();
        (a, b)
    };
    let spool = open(dir.path(), 64 << 20);
    assert!(spool.entry(b).is_none());
    let e = spool.entry(a).unwrap();
    assert_eq!(
        e.message.statuses,
        vec![
            RcptStatus::Pending,
            RcptStatus::Delivered(crate::queue::Diagnostic::from_v1_text("ok"))
        ]
    );
    assert_eq!((e.attempts, e.next_attempt, e.held), (3, 12345, true));
    assert_eq!(e.last_errors[0].to_string(), "451 later");
    assert_eq!(e.last_errors[0].code, Some(451));
}

#[tokio::test]
async fn a_torn_tail_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = {
        let spool = open(dir.path(), 64 << 20);
        put(&spool, b"kept\r\n").await
    };
    // Simulate a crash in the middle of the next write: half a frame.
    let seg = *list_segments(dir.path()).unwrap().last().unwrap();
    let path = super::super::log::segment_path(dir.path(), seg);
    let frame = Record::Done { id: a }.encode();
    let before = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&frame[..frame.len() - 3])
        .unwrap();
    let spool = open(dir.path(), 64 << 20);
    assert_eq!(
        spool.load(a).unwrap().content,
        b"Received: test\r\nkept\r\n"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
}

#[tokio::test]
async fn a_body_cut_short_is_not_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let spool = open(dir.path(), 64 << 20);
        (
            put(&spool, b"whole\r\n").await,
            put(&spool, &[b'x'; 5000]).await,
        )
    };
    let seg = *list_segments(dir.path()).unwrap().last().unwrap();
    let path = super::super::log::segment_path(dir.path(), seg);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let spool = open(dir.path(), 64 << 20);
    assert!(spool.entry(a).is_some());
    assert!(spool.entry(b).is_none());
}

#[tokio::test]
async fn finished_segments_are_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1024);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(put(&spool, &[b'y'; 600]).await);
    }
    let on_disk = list_segments(dir.path()).unwrap().len();
    assert!(on_disk >= 10, "expected rotation, got {on_disk} segments");
    // Finishing the newest messages frees nothing: the oldest still pin them.
    for id in ids[10..].iter() {
        spool.update(vec![Record::Done { id: *id }]).await.unwrap();
    }
    assert!(list_segments(dir.path()).unwrap().len() >= on_disk);
    for id in ids[..10].iter() {
        spool.update(vec![Record::Done { id: *id }]).await.unwrap();
    }
    // Deletion runs on the writer thread; give it a moment.
    for _ in 0..100 {
        if list_segments(dir.path()).unwrap().len() <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(list_segments(dir.path()).unwrap().len() <= 2);
    drop(spool);
    let spool = open(dir.path(), 1024);
    assert!(spool.is_empty());
}

#[tokio::test]
async fn trace_lines_are_read_back_from_disk_in_every_folder() {
    let dir = tempfile::tempdir().unwrap();
    let trace = b"Received: from client\r\n\tby here; Sun, 6 Dec 2026\r\n".to_vec();
    let mut ids = Vec::new();
    {
        let spool = open(dir.path(), 64 << 20);
        for folder in [Folder::Inbox, Folder::Junk, Folder::Inbox] {
            let id = spool.new_id();
            let body = Body::from_bytes(format!("{folder:?} body\r\n").into_bytes());
            spool
                .enqueue_into(id, envelope(1), trace.clone(), body, folder)
                .await
                .unwrap();
            // In memory the index holds no trace lines; the size counts them.
            let entry = spool.entry(id).unwrap();
            assert!(entry.message.prepend.is_empty());
            assert_eq!(
                entry.size(),
                (trace.len() + format!("{folder:?} body\r\n").len()) as u64
            );
            ids.push((id, folder));
        }
        // Before and after a restart, and read-only while the daemon is down.
        for &(id, folder) in &ids {
            let want = [&trace[..], format!("{folder:?} body\r\n").as_bytes()].concat();
            let loaded = spool.load(id).unwrap();
            assert_eq!(loaded.content, want);
            assert_eq!(loaded.entry.message.prepend, trace);
            assert_eq!(loaded.entry.message.folder, folder);
        }
    }
    for entry in Spool::inspect(dir.path()).unwrap() {
        let folder = entry.message.folder;
        let want = [&trace[..], format!("{folder:?} body\r\n").as_bytes()].concat();
        assert_eq!(Spool::inspect_content(dir.path(), &entry).unwrap(), want);
    }
    let spool = open(dir.path(), 64 << 20);
    for &(id, folder) in &ids {
        let want = [&trace[..], format!("{folder:?} body\r\n").as_bytes()].concat();
        assert_eq!(spool.load(id).unwrap().content, want);
    }
}

#[tokio::test]
async fn compaction_moves_a_long_lived_message_and_frees_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1024);
    let old = put(&spool, b"deferred for days\r\n").await;
    spool
        .update(vec![Record::Attempt {
            id: old,
            attempts: 2,
            next_attempt: 99,
            errors: vec![crate::queue::Diagnostic::from_v1_text("451 try later")],
        }])
        .await
        .unwrap();
    for _ in 0..5 {
        let id = put(&spool, &[b'z'; 700]).await;
        spool.update(vec![Record::Done { id }]).await.unwrap();
    }
    let first = list_segments(dir.path()).unwrap()[0];
    let moved = tokio::task::spawn_blocking({
        let spool = spool.clone();
        move || spool.compact_oldest()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(moved, 1);
    for _ in 0..100 {
        if list_segments(dir.path()).unwrap()[0] != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(list_segments(dir.path()).unwrap()[0], first);
    drop(spool);
    let spool = open(dir.path(), 1024);
    let e = spool.entry(old).unwrap();
    assert_eq!((e.attempts, e.next_attempt), (2, 99));
    assert_eq!(
        spool.load(old).unwrap().content,
        b"Received: test\r\ndeferred for days\r\n"
    );
}

#[tokio::test]
async fn concurrent_enqueues_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 64 << 20);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            put(&spool, format!("m{i}\r\n").as_bytes()).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    drop(spool);
    let spool = open(dir.path(), 64 << 20);
    assert_eq!(spool.len(), 200);
    for id in ids {
        assert!(spool.entry(id).is_some());
    }
}

#[tokio::test]
async fn leases_hand_out_each_due_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 64 << 20);
    let a = put(&spool, b"a\r\n").await;
    let now = SystemTime::now();
    assert_eq!(spool.lease_due(now, 10), vec![a]);
    assert!(spool.lease_due(now, 10).is_empty());
    spool.release(a);
    assert_eq!(spool.lease_due(now, 10), vec![a]);
}

#[tokio::test]
async fn housekeeping_leaves_young_backlogs_alone_and_moves_old_ones() {
    use crate::clock::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let options = SpoolOptions {
        log: LogOptions {
            segment_size: 1024,
            ..LogOptions::default()
        },
    };
    let spool = Spool::open(dir.path(), clock.clone(), options).unwrap();
    let old = put(&spool, b"waits for days\r\n").await;
    for _ in 0..4 {
        let id = put(&spool, &[b'z'; 700]).await;
        spool.update(vec![Record::Done { id }]).await.unwrap();
    }
    let housekeeping = |spool: &Spool| {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.housekeeping(1000))
    };
    assert_eq!(
        housekeeping(&spool).await.unwrap().unwrap(),
        0,
        "young: left alone"
    );
    clock.advance(PINNED_AFTER + Duration::from_secs(1));
    // Use up the wake-up the enqueues left.
    let _ = tokio::time::timeout(Duration::from_millis(10), spool.changed()).await;
    assert_eq!(
        housekeeping(&spool).await.unwrap().unwrap(),
        1,
        "old: moved forward"
    );
    // Moved messages are due again and the scheduler is told.
    tokio::time::timeout(Duration::from_secs(1), spool.changed())
        .await
        .unwrap();
    assert_eq!(spool.lease_due(clock.now(), 10), vec![old]);
}

/// Found by the fuzzer (fuzz/regressions/spool_segment/): repairing a newest
/// segment whose magic never reached the disk wrote the magic after the
/// bytes read, not at the start, so the segment still had no magic and the
/// next start, reading it as an older segment, failed ("is not a spool
/// segment") unless it had been deleted first.
#[test]
fn a_segment_with_a_torn_magic_is_repaired_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    std::fs::write(&path, [0u8; 24]).unwrap();
    let newest = Scan::Recover { newest: true };
    scan_segment(dir.path(), 1, newest, |_| panic!("no records")).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        super::super::record::SEGMENT_MAGIC
    );
    scan_segment(dir.path(), 1, Scan::ReadOnly, |_| panic!("no records")).unwrap();
}

/// Found by the fuzzer (fuzz/regressions/spool_segment/): a message record
/// (checksum right) whose body length reaches past u64::MAX overflowed the
/// scan's offset: a panic in a debug build, and in a release build a wrapped
/// offset that could send the scan backwards, forever.
#[test]
fn a_body_length_past_the_end_of_u64_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let good = Record::Done { id: QueueId(1) }.encode();
    let Record::Message(mut m) = Record::Message(MessageRecord {
        id: QueueId(2),
        received_at: 0,
        envelope: envelope(1),
        statuses: vec![RcptStatus::Pending],
        prepend: Vec::new(),
        body_len: 0,
        body_crc: 0,
        folder: Default::default(),
    }) else {
        unreachable!()
    };
    m.body_len = u64::MAX - 20;
    let mut file = super::super::record::SEGMENT_MAGIC.to_vec();
    file.extend_from_slice(&good);
    file.extend_from_slice(&Record::Message(m).encode());
    std::fs::write(segment_path(dir.path(), 1), &file).unwrap();
    for scan in [Scan::ReadOnly, Scan::Recover { newest: true }] {
        let mut found = Vec::new();
        scan_segment(dir.path(), 1, scan, |f| found.push(f.record)).unwrap();
        assert_eq!(found, vec![Record::Done { id: QueueId(1) }], "{scan:?}");
    }
}

#[tokio::test]
async fn only_what_this_process_wrote_lately_is_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let old = {
        let spool = open(dir.path(), 64 << 20);
        put(&spool, b"before the restart\r\n").await
    };
    // Small segments: every message below starts a new one.
    let spool = open(dir.path(), 256);
    assert!(
        spool.load_if_recent(old).is_none(),
        "written before the restart"
    );
    assert!(spool.load(old).is_ok());
    let first = put(&spool, b"first\r\n").await;
    let loaded = spool.load_if_recent(first).unwrap().unwrap();
    assert_eq!(loaded.content, b"Received: test\r\nfirst\r\n");
    let mut last = first;
    for _ in 0..10 {
        last = put(&spool, &[b'x'; 300]).await;
    }
    assert!(spool.load_if_recent(first).is_none(), "ten segments back");
    assert!(spool.load(first).is_ok());
    assert!(spool.load_if_recent(last).unwrap().is_ok());
}
