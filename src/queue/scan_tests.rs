//! Unit tests of the start-up scan against damaged spools (issue 14.4): a
//! truncated or garbled segment, a zero-length file, a record with a bad
//! checksum, a missing body. tern starts anyway, moves what it cannot read
//! aside into `spool/damaged/`, keeps everything else; a torn write at the
//! end of the newest segment is dropped without a trace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::clock::SystemClock;
use crate::queue::log::LogOptions;
use crate::queue::spool::{Spool, SpoolOptions};
use crate::queue::{Body, QueueId};
use crate::smtp::{Address, Envelope, Recipient, Route};

fn open(dir: &Path) -> Spool {
    let options = SpoolOptions {
        log: LogOptions {
            segment_size: 512,
            ..LogOptions::default()
        },
    };
    Spool::open(dir, Arc::new(SystemClock), options).expect("the spool opens")
}

/// Four messages of 700 bytes, one per segment (segments of 512 bytes rotate after each).
async fn four_messages(dir: &Path) -> Vec<QueueId> {
    let spool = open(dir);
    let mut ids = Vec::new();
    for n in 0..4u8 {
        let id = spool.new_id();
        let envelope = Envelope {
            sender: Some(Address::parse("a@b.example").unwrap()),
            recipients: vec![Recipient {
                original: "me@example.org".into(),
                route: Route::Local("me".into()),
            }],
            eight_bit: false,
            smtputf8: false,
        };
        let body = Body::from_bytes(vec![b'a' + n; 700]);
        spool.enqueue(id, envelope, Vec::new(), body).await.unwrap();
        ids.push(id);
    }
    ids
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Damages the second segment with `harm`, reopens, and returns the ids
/// still queued and what was set aside.
async fn after(harm: impl FnOnce(&Path)) -> (Vec<QueueId>, Vec<QueueId>, (usize, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let ids = four_messages(dir.path()).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "one message per segment: {segs:?}");
    harm(&segs[1]);
    let spool = open(dir.path());
    let kept: Vec<QueueId> = spool.entries().iter().map(|e| e.message.id).collect();
    for id in &kept {
        spool.load(*id).expect("what is kept reads back");
    }
    let summary = damaged_summary(dir.path());
    drop(spool);
    // Stable: a second start finds nothing new to set aside.
    let again = open(dir.path());
    assert_eq!(again.entries().len(), kept.len());
    assert_eq!(damaged_summary(dir.path()), summary);
    (ids, kept, summary)
}

fn expect_one_lost(ids: &[QueueId], kept: &[QueueId]) {
    let want: Vec<QueueId> = ids.iter().copied().filter(|id| *id != ids[1]).collect();
    assert_eq!(kept, want, "the other three messages are kept");
}

#[tokio::test]
async fn a_record_with_a_bad_checksum_is_moved_aside() {
    let (ids, kept, (pieces, bytes)) = after(|seg| {
        let mut b = std::fs::read(seg).unwrap();
        b[8 + FRAME_HEADER + 3] ^= 0x5a; // inside the record's payload
        std::fs::write(seg, b).unwrap();
    })
    .await;
    expect_one_lost(&ids, &kept);
    assert_eq!(pieces, 1);
    assert!(
        bytes > 700,
        "the record and its body are kept aside: {bytes}"
    );
}

#[tokio::test]
async fn a_garbled_frame_header_is_moved_aside() {
    let (ids, kept, (pieces, _)) = after(|seg| {
        let mut b = std::fs::read(seg).unwrap();
        for x in &mut b[8..8 + FRAME_HEADER] {
            *x = 0xff;
        }
        std::fs::write(seg, b).unwrap();
    })
    .await;
    expect_one_lost(&ids, &kept);
    assert_eq!(pieces, 1);
}

#[tokio::test]
async fn a_missing_body_in_a_truncated_segment_is_moved_aside() {
    let (ids, kept, (pieces, _)) = after(|seg| {
        let len = std::fs::metadata(seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(len - 300).unwrap(); // in the middle of the body
    })
    .await;
    expect_one_lost(&ids, &kept);
    assert_eq!(pieces, 1);
}

#[tokio::test]
async fn a_zero_length_segment_is_moved_aside_whole() {
    let (ids, kept, (pieces, bytes)) = after(|seg| {
        std::fs::write(seg, b"").unwrap();
    })
    .await;
    expect_one_lost(&ids, &kept);
    assert_eq!((pieces, bytes), (1, 0));
}

#[tokio::test]
async fn a_file_that_is_not_a_segment_is_moved_aside_whole() {
    let (ids, kept, (pieces, bytes)) = after(|seg| {
        std::fs::write(seg, b"this is not a spool segment\n").unwrap();
    })
    .await;
    expect_one_lost(&ids, &kept);
    assert_eq!((pieces, bytes), (1, 28));
}

#[tokio::test]
async fn a_torn_write_at_the_end_of_the_newest_segment_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ids = four_messages(dir.path()).await;
    let newest = segments(dir.path()).pop().unwrap();
    let mut b = std::fs::read(&newest).unwrap();
    // Half a frame: a header announcing 500 bytes, then 20 of them.
    b.extend_from_slice(&500u32.to_le_bytes());
    b.extend_from_slice(&[7u8; 24]);
    std::fs::write(&newest, b).unwrap();
    let spool = open(dir.path());
    assert_eq!(spool.entries().len(), ids.len());
    assert_eq!(
        damaged_summary(dir.path()),
        (0, 0),
        "a torn write is no damage"
    );
}

#[tokio::test]
async fn read_only_inspection_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    four_messages(dir.path()).await;
    let seg = segments(dir.path())[1].clone();
    std::fs::write(&seg, b"garbage").unwrap();
    let entries = Spool::inspect(dir.path()).expect("inspect reads around damage");
    assert_eq!(entries.len(), 3);
    assert_eq!(std::fs::read(&seg).unwrap(), b"garbage");
    assert_eq!(damaged_summary(dir.path()), (0, 0));
}
