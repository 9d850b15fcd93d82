//! What `tern queue list` and `tern queue show` report about queued mail, as
//! data: [`MessageSummary`] (one row of the list) and [`MessageDetails`] (the
//! page of `show`), built from spool entries and carried over the control
//! socket (serde). The same code serves the daemon's answers and the
//! read-only view of the spool when the daemon is down ([`inspect_list`],
//! [`inspect_details`]), so both look alike. How they look on a terminal is
//! the business of the CLI (`src/control/display.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::smtp::Route;

use super::diagnostic::Diagnostic;
use super::record::RcptStatus;
use super::spool::{Entry, Spool, SpoolError};
use super::QueueId;

/// At most this much of a message's header section is shown.
pub const MAX_HEADERS: usize = 64 << 10;

/// One queued message, as a row of `tern queue list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub id: QueueId,
    /// When it was accepted (ms since the epoch).
    pub received_at: u64,
    /// Octets queued: our trace headers and the body.
    pub size: u64,
    /// The envelope sender; empty for the null sender `<>`.
    pub sender: String,
    /// The recipients still to be delivered, as the client named them.
    pub pending: Vec<String>,
    /// How many recipients the message has in all.
    pub recipients: usize,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch); 0 = at once.
    pub next_attempt: u64,
    pub held: bool,
    /// Why the last attempt did not deliver every recipient.
    pub last_errors: Vec<Diagnostic>,
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Pending,
    Delivered,
    Failed,
}

/// One recipient of a message, for `tern queue show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientView {
    /// The address as the client named it.
    pub address: String,
    /// Where it goes: `local user me`, or the remote address.
    pub route: String,
    pub state: RecipientState,
    /// For delivered and failed recipients: where it went, or the reason
    /// (usually the remote server's reply).
    pub detail: Option<Diagnostic>,
}

/// The header section of a message, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headers {
    Text(String),
    Unavailable(String),
}

/// Everything `tern queue show` prints about a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDetails {
    pub summary: MessageSummary,
    pub recipients: Vec<RecipientView>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
    /// The sender has been told of the delay.
    pub delay_notified: bool,
    pub headers: Headers,
}

impl MessageSummary {
    /// The row for `entry`.
    pub fn of(entry: &Entry) -> MessageSummary {
        let message = &entry.message;
        MessageSummary {
            id: message.id,
            received_at: message.received_at,
            size: entry.size(),
            sender: message
                .envelope
                .sender
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            pending: message
                .envelope
                .recipients
                .iter()
                .zip(&message.statuses)
                .filter(|(_, s)| !s.is_final())
                .map(|(r, _)| r.original.clone())
                .collect(),
            recipients: message.envelope.recipients.len(),
            attempts: entry.attempts,
            next_attempt: entry.next_attempt,
            held: entry.held,
            last_errors: entry.last_errors.to_vec(),
        }
    }
}

impl MessageDetails {
    /// The page for `entry`, whose content (trace headers and body) is
    /// `content`, or the reason it could not be read.
    pub fn of(entry: &Entry, content: Result<&[u8], String>) -> MessageDetails {
        let message = &entry.message;
        let recipients = message
            .envelope
            .recipients
            .iter()
            .zip(&message.statuses)
            .map(|(r, status)| {
                let (state, detail) = match status {
                    RcptStatus::Pending => (RecipientState::Pending, None),
                    RcptStatus::Delivered(d) => (RecipientState::Delivered, Some(d.clone())),
                    RcptStatus::Failed(d) => (RecipientState::Failed, Some(d.clone())),
                };
                RecipientView {
                    address: r.original.clone(),
                    route: match &r.route {
                        Route::Local(user) => format!("local user {user}"),
                        Route::Remote(addr) => format!("remote {addr}"),
                    },
                    state,
                    detail,
                }
            })
            .collect();
        MessageDetails {
            summary: MessageSummary::of(entry),
            recipients,
            eight_bit: message.envelope.eight_bit,
            smtputf8: message.envelope.smtputf8,
            delay_notified: entry.delay_notified,
            headers: match content {
                Ok(content) => Headers::Text(header_section(content)),
                Err(why) => Headers::Unavailable(why),
            },
        }
    }
}

/// The header section of `content` (up to, not including, the empty line),
/// decoded lossily and cut at [`MAX_HEADERS`] octets.
pub fn header_section(content: &[u8]) -> String {
    let end = crate::message::header_section(content).len();
    let shown = &content[..end.min(MAX_HEADERS)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if end > MAX_HEADERS {
        text.push_str("\r\n[... headers cut ...]\r\n");
    }
    text
}

/// The queue read straight from the spool directory, for when the daemon is
/// not running. A spool that was never created is an empty queue. Blocking.
pub fn inspect_list(spool_dir: &Path) -> Result<Vec<MessageSummary>, SpoolError> {
    Ok(inspect(spool_dir)?.iter().map(MessageSummary::of).collect())
}

/// One message read straight from the spool directory (see [`inspect_list`]).
pub fn inspect_details(spool_dir: &Path, id: QueueId) -> Result<MessageDetails, SpoolError> {
    let entry = inspect(spool_dir)?
        .into_iter()
        .find(|e| e.message.id == id)
        .ok_or(SpoolError::NotFound(id))?;
    let details = match Spool::inspect_content(spool_dir, &entry) {
        Ok(content) => MessageDetails::of(&entry, Ok(&content)),
        Err(e) => MessageDetails::of(&entry, Err(e.to_string())),
    };
    Ok(details)
}

fn inspect(spool_dir: &Path) -> Result<Vec<Entry>, SpoolError> {
    if !spool_dir.exists() {
        return Ok(Vec::new());
    }
    Spool::inspect(spool_dir)
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
