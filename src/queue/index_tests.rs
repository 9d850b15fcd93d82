//! Tests of the in-memory index: trace lines kept on disk, reasons shared.

use super::*;
use crate::queue::diagnostic::Diagnostic;
use crate::queue::record::{Folder, RcptStatus};
use crate::smtp::{EnhancedCode, Envelope, Recipient, Route};

fn message(id: u64) -> MessageRecord {
    MessageRecord {
        id: QueueId(id),
        received_at: 1_800_000_000_000,
        envelope: Envelope {
            sender: None,
            recipients: vec![Recipient {
                original: "a@example.org".into(),
                route: Route::Local("a".into()),
            }],
            eight_bit: false,
            smtputf8: false,
        },
        statuses: vec![RcptStatus::Pending],
        prepend: b"Received: by here\r\n".to_vec(),
        body_len: 10,
        body_crc: 0,
        folder: Folder::Inbox,
    }
}

fn at(body_offset: u64) -> Location {
    Location {
        segment: 1,
        body_offset,
    }
}

fn attempt(id: u64, text: &str) -> Record {
    Record::Attempt {
        id: QueueId(id),
        attempts: 1,
        next_attempt: 5,
        errors: vec![Diagnostic::note(EnhancedCode(4, 2, 0), text)],
    }
}

#[test]
fn the_trace_lines_stay_on_disk_and_come_back_checked() {
    let mut index = Index::default();
    index.apply(Record::Message(message(1)), at(1000));
    let entry = (*index.messages[&QueueId(1)]).clone();
    assert!(entry.message.prepend.is_empty());
    assert_eq!(entry.size(), 19 + 10);
    // They end the frame's last fields (12 bytes) before the body.
    assert_eq!(entry.prepend_at(), Some((at(1000 - 12 - 19), 19)));
    let back = entry
        .clone()
        .with_prepend(b"Received: by here\r\n".to_vec());
    assert_eq!(back.unwrap().message, message(1));
    assert!(entry
        .clone()
        .with_prepend(b"Received: by HERE\r\n".to_vec())
        .is_none());
    assert!(entry.with_prepend(b"Received: by here".to_vec()).is_none());
    // A location that cannot hold them is damage, not a panic.
    index.apply(Record::Message(message(2)), at(20));
    assert_eq!(index.messages[&QueueId(2)].prepend_at(), None);
}

#[test]
fn the_same_reasons_are_held_once() {
    let mut index = Index::default();
    for id in 1..=100 {
        index.apply(Record::Message(message(id)), at(1000 * id));
        index.apply(attempt(id, if id % 2 == 0 { "even" } else { "odd" }), at(0));
    }
    let even = &index.messages[&QueueId(2)].last_errors;
    let odd = &index.messages[&QueueId(3)].last_errors;
    assert_eq!(even[0].text, "even");
    assert_eq!(odd[0].text, "odd");
    assert!(Arc::ptr_eq(
        even,
        &index.messages[&QueueId(100)].last_errors
    ));
    assert!(Arc::ptr_eq(odd, &index.messages[&QueueId(99)].last_errors));
    assert!(!Arc::ptr_eq(even, odd));
    // Only a bounded number of sets is remembered; older ones are still
    // right, just no longer shared with new entries.
    for id in 1..=100 {
        index.apply(attempt(id, &format!("reason {id}")), at(0));
    }
    assert_eq!(index.recent_errors.len(), RECENT_ERRORS);
    for id in 1..=100 {
        assert_eq!(
            index.messages[&QueueId(id)].last_errors[0].text,
            format!("reason {id}")
        );
    }
    index.apply(attempt(7, "reason 100"), at(0));
    assert!(Arc::ptr_eq(
        &index.messages[&QueueId(7)].last_errors,
        &index.messages[&QueueId(100)].last_errors
    ));
}
