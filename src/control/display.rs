//! How queued mail looks on the administrator's terminal: `tern queue list`
//! and `mailq` ([`format_list`]), `tern queue show` ([`format_details`]),
//! from the data of [`crate::queue::listing`] (the daemon's answer, or the
//! spool read while it is down); their `--json` is [`crate::terminal::to_json`].
//!
//! Queued mail is a stranger's text (header fields, remote servers' replies):
//! everything printed for people goes through [`terminal_safe`], so no
//! escape sequence reaches the administrator's terminal.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::date::rfc5322;
use crate::queue::listing::{Headers, MessageDetails, MessageSummary, RecipientState};
use crate::queue::spool::{from_millis, millis};
use crate::queue::Diagnostic;
use crate::terminal::terminal_safe;

/// The list shows at most this many pending recipients under a message.
const LIST_RECIPIENTS: usize = 5;
/// The list cuts the last error to this many characters (`show` has it all).
const LIST_ERROR_CHARS: usize = 70;

/// `1 message`, `2 messages`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration the way people say it: `42s`, `12m`, `3h05m`, `2d04h`.
pub fn compact(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `ms` (since the epoch) was at `now`.
fn ago(ms: u64, now: SystemTime) -> Duration {
    Duration::from_millis(millis(now).saturating_sub(ms))
}

/// The NEXT column: `held`, `now`, or `in 4m`.
fn next_column(m: &MessageSummary, now: SystemTime) -> String {
    let now_ms = millis(now);
    if m.held {
        "held".into()
    } else if m.next_attempt <= now_ms {
        "now".into()
    } else {
        format!(
            "in {}",
            compact(Duration::from_millis(m.next_attempt - now_ms))
        )
    }
}

/// `<>` for the null sender, the address otherwise.
fn sender_text(sender: &str) -> &str {
    if sender.is_empty() {
        "<>"
    } else {
        sender
    }
}

/// Cuts `s` to `max` characters, marking the cut; keeps it on one line (the
/// line breaks of a multi-line reply become spaces) and [`terminal_safe`].
fn one_line(s: &str, max: usize) -> String {
    let flat = s.replace("\r\n", " ").replace('\n', " ");
    let cut = if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        cut.push_str("...");
        cut
    };
    terminal_safe(&cut).into_owned()
}

/// The LAST ERROR column: the first reason's enhanced code (else its reply
/// code) and the server that gave it (else its text, cut short), and how
/// many other reasons there were; `show` prints them whole.
fn brief(errors: &[Diagnostic]) -> String {
    let Some(first) = errors.first() else {
        return "-".into();
    };
    let status = first
        .enhanced
        .map(|e| e.to_string())
        .or_else(|| first.code.map(|c| c.to_string()));
    let what = match &first.remote {
        Some(remote) => remote.host.clone(),
        None => first.text.clone(),
    };
    let mut text = match status {
        Some(status) => format!("{status} {what}"),
        None => what,
    };
    if errors.len() > 1 {
        text = format!("(+{} more) {text}", errors.len() - 1);
    }
    one_line(&text, LIST_ERROR_CHARS)
}

/// The `N messages, M bytes` line that ends the list.
pub fn total_line(messages: &[MessageSummary]) -> String {
    let bytes: u64 = messages.iter().map(|m| m.size).sum();
    format!(
        "{}, {}",
        plural(messages.len() as u64, "message", "messages"),
        plural(bytes, "byte", "bytes")
    )
}

/// `tern queue list` / `mailq`: one row per message (id, age, size, sender,
/// pending/total recipients, next attempt, last error), the pending
/// recipients under it, and a total line.
pub fn format_list(messages: &[MessageSummary], now: SystemTime) -> String {
    if messages.is_empty() {
        return format!("Mail queue is empty\n{}\n", total_line(messages));
    }
    let header = ["ID", "AGE", "SIZE", "SENDER", "RCPTS", "NEXT", "LAST ERROR"];
    let rows: Vec<[String; 7]> = messages
        .iter()
        .map(|m| {
            [
                m.id.to_string(),
                compact(ago(m.received_at, now)),
                m.size.to_string(),
                terminal_safe(sender_text(&m.sender)).into_owned(),
                format!("{}/{}", m.pending.len(), m.recipients),
                next_column(m, now),
                brief(&m.last_errors),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers are right-aligned; the last column is not padded.
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths[i];
            let _ = match i {
                1 | 2 | 4 => write!(out, "{cell:>w$}  "),
                6 => write!(out, "{cell}"),
                _ => write!(out, "{cell:<w$}  "),
            };
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let indent = widths[..3].iter().map(|w| w + 2).sum::<usize>();
    let mut out = line(header);
    for (m, row) in messages.iter().zip(&rows) {
        out.push_str(&line(row.each_ref().map(String::as_str)));
        for rcpt in m.pending.iter().take(LIST_RECIPIENTS) {
            let _ = writeln!(out, "{:indent$}to {}", "", terminal_safe(rcpt));
        }
        if m.pending.len() > LIST_RECIPIENTS {
            let _ = writeln!(
                out,
                "{:indent$}... and {} more",
                "",
                m.pending.len() - LIST_RECIPIENTS
            );
        }
    }
    out.push_str(&total_line(messages));
    out.push('\n');
    out
}

/// `tern queue show ID`: the envelope, the state, every recipient with its
/// status, and the message's headers.
pub fn format_details(d: &MessageDetails, now: SystemTime) -> String {
    let m = &d.summary;
    let mut out = String::new();
    // A field; one without a name continues the one above.
    let mut field = |name: &str, value: &str| {
        let label = if name.is_empty() {
            String::new()
        } else {
            format!("{name}:")
        };
        let _ = writeln!(out, "{label:<14}{}", terminal_safe(value));
    };
    field("Queue ID", &m.id.to_string());
    field(
        "Arrived",
        &format!(
            "{} ({} ago)",
            rfc5322(from_millis(m.received_at)),
            compact(ago(m.received_at, now))
        ),
    );
    let mut size = plural(m.size, "byte", "bytes");
    let flags: Vec<&str> = [(d.eight_bit, "8BITMIME"), (d.smtputf8, "SMTPUTF8")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    if !flags.is_empty() {
        size.push_str(&format!(" ({})", flags.join(", ")));
    }
    field("Size", &size);
    field("Sender", &format!("<{}>", m.sender));
    field(
        "State",
        if m.held {
            "held by the administrator (no delivery until released)"
        } else if m.attempts > 0 {
            "deferred"
        } else {
            "queued"
        },
    );
    field("Attempts", &m.attempts.to_string());
    let next = if m.held {
        "none while held".to_string()
    } else if m.next_attempt <= millis(now) {
        "now".to_string()
    } else {
        format!(
            "{} ({})",
            rfc5322(from_millis(m.next_attempt)),
            next_column(m, now)
        )
    };
    field("Next attempt", &next);
    // Every reason of the last attempt, whole, one to a line.
    match m.last_errors.as_slice() {
        [] => field("Last error", "-"),
        errors => {
            for (i, e) in errors.iter().enumerate() {
                let name = if i == 0 { "Last error" } else { "" };
                field(name, &one_line(&e.to_string(), usize::MAX));
            }
        }
    }
    field(
        "Delay notice",
        if d.delay_notified {
            "sent to the sender"
        } else {
            "not sent"
        },
    );
    field(
        "Recipients",
        &format!("{} pending of {}", m.pending.len(), m.recipients),
    );
    for r in &d.recipients {
        let state = match r.state {
            RecipientState::Pending => "pending",
            RecipientState::Delivered => "delivered",
            RecipientState::Failed => "failed",
        };
        let _ = writeln!(
            out,
            "  <{}> ({})",
            terminal_safe(&r.address),
            terminal_safe(&r.route)
        );
        match &r.detail {
            Some(detail) => {
                let detail = one_line(&detail.to_string(), usize::MAX);
                let _ = writeln!(out, "      {state}: {detail}");
            }
            None => {
                let _ = writeln!(out, "      {state}");
            }
        }
    }
    out.push_str("Headers:\n");
    match &d.headers {
        Headers::Text(text) => {
            for line in text.lines() {
                let _ = writeln!(out, "  {}", terminal_safe(line));
            }
        }
        Headers::Unavailable(why) => {
            let _ = writeln!(out, "  (cannot read the message: {})", terminal_safe(why));
        }
    }
    out
}

#[cfg(test)]
#[path = "display_tests.rs"]
mod tests;
