//! Unit tests of how the queue looks on a terminal: exact `tern queue list`
//! and `show` output at a fixed time, and nothing raw from strangers (with
//! the tests of [`crate::terminal`]'s escaping, on the same hostile text).

use super::*;
use crate::queue::listing::{Headers, RecipientState, RecipientView};
use crate::queue::{Diagnostic, QueueId};
use crate::smtp::EnhancedCode;
use crate::terminal::to_json;
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// 2027-01-15 08:00:00 UTC.
const NOW_MS: u64 = 1_800_000_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS)
}

fn deferred() -> MessageSummary {
    MessageSummary {
        id: QueueId(0x18C4F0A2B3D41),
        received_at: NOW_MS - 12 * 60_000,
        size: 1204,
        sender: "bob@example.org".into(),
        pending: vec!["someone@remote.example".into()],
        recipients: 2,
        attempts: 2,
        next_attempt: NOW_MS + 4 * 60_000 + 5_000,
        held: false,
        last_errors: vec![Diagnostic::note(
            EnhancedCode(4, 4, 3),
            "MX lookup for remote.example: timed out",
        )],
    }
}

fn held_bounce() -> MessageSummary {
    MessageSummary {
        id: QueueId(0x18C4F0A2B3D42),
        received_at: NOW_MS - (26 * 3600 + 5 * 60) * 1000,
        size: 98765,
        sender: String::new(),
        pending: (0..7).map(|i| format!("r{i}@remote.example")).collect(),
        recipients: 7,
        attempts: 0,
        next_attempt: 0,
        held: true,
        last_errors: vec![
            Diagnostic::from_remote(
                "mx.remote.example",
                "192.0.2.7".parse().unwrap(),
                450,
                Some(EnhancedCode(4, 2, 0)),
                format!("{}\r\nsecond line", "x".repeat(80)),
            ),
            Diagnostic::note(
                EnhancedCode(4, 4, 1),
                "mx2.remote.example[192.0.2.8]: timed out",
            ),
        ],
    }
}

#[test]
fn durations_are_compact() {
    assert_eq!(compact(Duration::from_secs(0)), "0s");
    assert_eq!(compact(Duration::from_secs(59)), "59s");
    assert_eq!(compact(Duration::from_secs(60)), "1m");
    assert_eq!(compact(Duration::from_secs(3599)), "59m");
    assert_eq!(compact(Duration::from_secs(3600 + 5 * 60)), "1h05m");
    assert_eq!(compact(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d04h");
}

#[test]
fn the_list_has_aligned_columns_pending_recipients_and_a_total() {
    let text = format_list(&[deferred(), held_bounce()], now());
    let expected =         "\
ID               AGE   SIZE  SENDER           RCPTS  NEXT   LAST ERROR
18C4F0A2B3D41    12m   1204  bob@example.org    1/2  in 4m  4.4.3 MX lookup for remote.example: timed out
                             to someone@remote.example
18C4F0A2B3D42  1d02h  98765  <>                 7/7  held   (+1 more) 4.2.0 mx.remote.example
                             to r0@remote.example
                             to r1@remote.example
                             to r2@remote.example
                             to r3@remote.example
                             to r4@remote.example
                             ... and 2 more
2 messages, 99969 bytes
";
    assert_eq!(text, expected);
}

#[test]
fn an_empty_queue_says_so() {
    assert_eq!(
        format_list(&[], now()),
        "Mail queue is empty\n0 messages, 0 bytes\n"
    );
    let mut one = deferred();
    one.size = 1;
    assert_eq!(total_line(&[one]), "1 message, 1 byte");
}

#[test]
fn show_prints_the_envelope_state_recipients_and_headers() {
    let details = MessageDetails {
        summary: deferred(),
        recipients: vec![
            RecipientView {
                address: "me@example.org".into(),
                route: "local user me".into(),
                state: RecipientState::Delivered,
                detail: Some(crate::queue::Diagnostic::from_v1_text(
                    "delivered to maildir /var/lib/tern/mail/me/new/x",
                )),
            },
            RecipientView {
                address: "someone@remote.example".into(),
                route: "remote someone@remote.example".into(),
                state: RecipientState::Pending,
                detail: None,
            },
        ],
        eight_bit: true,
        smtputf8: false,
        delay_notified: false,
        headers: Headers::Text("Received: from a\r\n\tby b\r\nSubject: hi\r\n".into()),
    };
    let expected = "\
Queue ID:     18C4F0A2B3D41
Arrived:      Fri, 15 Jan 2027 07:48:00 +0000 (12m ago)
Size:         1204 bytes (8BITMIME)
Sender:       <bob@example.org>
State:        deferred
Attempts:     2
Next attempt: Fri, 15 Jan 2027 08:04:05 +0000 (in 4m)
Last error:   MX lookup for remote.example: timed out
Delay notice: not sent
Recipients:   1 pending of 2
  <me@example.org> (local user me)
      delivered: delivered to maildir /var/lib/tern/mail/me/new/x
  <someone@remote.example> (remote someone@remote.example)
      pending
Headers:
  Received: from a
  \tby b
  Subject: hi
";
    assert_eq!(format_details(&details, now()), expected);

    let mut held = details;
    held.summary.held = true;
    held.headers = Headers::Unavailable("message X is damaged".into());
    let text = format_details(&held, now());
    assert!(
        text.contains("State:        held by the administrator"),
        "{text}"
    );
    assert!(text.contains("Next attempt: none while held\n"), "{text}");
    assert!(text.ends_with("Headers:\n  (cannot read the message: message X is damaged)\n"));
}

/// What a hostile message or remote server may put in front of an
/// administrator: ESC/CSI sequences (clear the screen, set the title), a bare
/// CR that overwrites the line, DEL, C1 CSI, and bidi controls.
const HOSTILE: &str =
    "\u{1b}[2J\u{1b}]0;pwned\u{7}a\rb\u{7f}c\u{9b}31md\u{202e}evil\u{2066}x\u{2069}\u{200f}";

/// True if `text` holds something a terminal would act on.
fn has_unsafe(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\t' && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200f}')
    })
}

#[test]
fn terminal_safe_escapes_controls_and_bidi_but_keeps_tabs_and_letters() {
    assert_eq!(
        terminal_safe(HOSTILE),
        "\\x1b[2J\\x1b]0;pwned\\x07a\\rb\\x7fc\\x9b31md\\u{202e}evil\\u{2066}x\\u{2069}\\u{200f}"
    );
    assert_eq!(terminal_safe("line\r\nnext"), "line\\r\\nnext");
    assert!(matches!(
        terminal_safe("Grüße\taus Köln – 日本語 🦆"),
        Cow::Borrowed("Grüße\taus Köln – 日本語 🦆")
    ));
}

#[test]
fn list_and_show_print_no_raw_control_characters() {
    let mut m = deferred();
    m.sender = format!("a{HOSTILE}@example.org");
    m.pending = vec![format!("r{HOSTILE}@remote.example")];
    m.last_errors = vec![Diagnostic::reply(
        451,
        EnhancedCode(4, 7, 1),
        format!("{HOSTILE}\r\n451 4.7.1 more {HOSTILE}"),
    )];
    let list = format_list(std::slice::from_ref(&m), now());
    assert!(!has_unsafe(&list), "{list:?}");
    assert!(list.contains("  4.7.1 \\x1b[2J"), "{list}");

    let details = MessageDetails {
        summary: m,
        recipients: vec![RecipientView {
            address: format!("r{HOSTILE}@remote.example"),
            route: format!("remote r{HOSTILE}@remote.example"),
            state: RecipientState::Failed,
            detail: Some(Diagnostic::from_remote(
                "mx",
                "127.0.0.1".parse().unwrap(),
                550,
                None,
                HOSTILE,
            )),
        }],
        eight_bit: false,
        smtputf8: true,
        delay_notified: false,
        headers: Headers::Text(format!(
            "Subject: {HOSTILE}\r\nX-Bare: one\rtwo\r\nX-Tab:\tkept\r\n"
        )),
    };
    let text = format_details(&details, now());
    assert!(!has_unsafe(&text), "{text:?}");
    assert!(
        text.contains("  Subject: \\x1b[2J\\x1b]0;pwned\\x07a\\rb"),
        "{text}"
    );
    assert!(text.contains("  X-Bare: one\\rtwo\n"), "{text}");
    assert!(text.contains("  X-Tab:\tkept\n"), "{text}");
    assert!(text.contains("Last error:   451 4.7.1 \\x1b[2J"), "{text}");
    assert!(
        text.contains("failed: mx[127.0.0.1] said: 550 \\x1b[2J"),
        "{text}"
    );

    let mut unreadable = details.clone();
    unreadable.headers = Headers::Unavailable(HOSTILE.into());
    assert!(!has_unsafe(&format_details(&unreadable, now())));

    // --json: the same values, with nothing raw that a terminal acts on.
    let json = to_json(&details).unwrap();
    assert!(!has_unsafe(&json), "{json}");
    assert!(json.contains("\\u202e"), "{json}");
    let back: MessageDetails = serde_json::from_str(&json).unwrap();
    assert_eq!(back, details);
}
