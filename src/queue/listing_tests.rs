//! Unit tests of the queue listing's data: the header section shown, and
//! the read-only view of a spool on disk.

use super::*;
use crate::clock::SystemClock;
use crate::queue::{Body, Record, SpoolOptions};
use crate::smtp::{Address, Envelope, Recipient};
use std::sync::Arc;

/// 2027-01-15 08:00:00 UTC.
const NOW_MS: u64 = 1_800_000_000_000;

#[test]
fn the_header_section_stops_at_the_empty_line() {
    assert_eq!(
        header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"),
        "A: 1\r\nB: 2\r\n"
    );
    assert_eq!(header_section(b"A: 1\r\n"), "A: 1\r\n");
    let long = format!("X: {}\r\n\r\n", "y".repeat(MAX_HEADERS));
    let cut = header_section(long.as_bytes());
    assert!(cut.ends_with("[... headers cut ...]\r\n"));
    assert!(cut.len() < MAX_HEADERS + 100);
}

#[tokio::test]
async fn the_spool_is_read_without_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    assert_eq!(inspect_list(&spool_dir).unwrap(), Vec::new());
    let spool = Spool::open(&spool_dir, Arc::new(SystemClock), SpoolOptions::default()).unwrap();
    let id = spool.new_id();
    let envelope = Envelope {
        sender: Some(Address::parse("bob@example.org").unwrap()),
        recipients: vec![
            Recipient {
                original: "me@example.org".into(),
                route: Route::Local("me".into()),
            },
            Recipient {
                original: "fwd@example.org".into(),
                route: Route::Remote(Address::parse("someone@remote.example").unwrap()),
            },
        ],
        eight_bit: false,
        smtputf8: false,
    };
    let body = b"Subject: offline\r\n\r\nhello\r\n".to_vec();
    spool
        .enqueue(
            id,
            envelope,
            b"Received: x\r\n".to_vec(),
            Body::from_bytes(body),
        )
        .await
        .unwrap();
    spool
        .update(vec![
            Record::Recipient {
                id,
                index: 0,
                status: RcptStatus::Delivered(crate::queue::Diagnostic::from_v1_text(
                    "delivered to maildir /m",
                )),
            },
            Record::Attempt {
                id,
                attempts: 1,
                next_attempt: NOW_MS,
                errors: vec![crate::queue::Diagnostic::from_v1_text("connection refused")],
            },
        ])
        .await
        .unwrap();
    drop(spool);

    let list = inspect_list(&spool_dir).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].pending, ["fwd@example.org"]);
    assert_eq!(list[0].size, 13 + 27);
    let details = inspect_details(&spool_dir, id).unwrap();
    assert_eq!(
        details.headers,
        Headers::Text("Received: x\r\nSubject: offline\r\n".into())
    );
    assert_eq!(details.recipients[0].state, RecipientState::Delivered);
    assert_eq!(details.recipients[1].route, "remote someone@remote.example");
    assert!(matches!(
        inspect_details(&spool_dir, QueueId(1)),
        Err(SpoolError::NotFound(_))
    ));
}
