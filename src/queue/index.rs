//! The spool's in-memory index of queued messages: one [`Entry`] per
//! message (envelope and delivery state), the due set the scheduler leases
//! from in next-attempt order, and the live messages of each segment. It is
//! rebuilt at start-up by applying every record in log order and changed
//! afterwards only by records that are already durable (`spool.rs`).
//!
//! What an entry holds bounds how large a queue fits in memory, so it holds
//! only what the scheduler and `tern queue` look at without reading the
//! disk: the body and the trace header lines written in front of it stay in
//! the segment (an entry keeps their length and checksum, and
//! [`super::Spool::load`] reads them back), and the reasons of the last
//! attempt are shared by the messages that were deferred for the same
//! reasons (a million messages waiting for one unreachable host hold one
//! copy of why).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::id::QueueId;
use super::log::Location;
use super::record::{MessageRecord, Record};

/// How many distinct sets of reasons [`Index`] remembers for sharing.
const RECENT_ERRORS: usize = 16;

/// One queued message, as the scheduler and `tern queue` see it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The message record. In the index its `prepend` is empty (the trace
    /// lines stay on disk); [`super::Spool::load`] gives it back in full.
    pub message: MessageRecord,
    pub(super) location: Location,
    /// Length and CRC-32 of the trace lines on disk.
    prepend_len: u32,
    prepend_crc: u32,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (ms since epoch); 0 = at once.
    pub next_attempt: u64,
    /// Why the last attempt did not deliver every recipient.
    pub last_errors: Arc<[Diagnostic]>,
    pub held: bool,
    /// The sender was told of the delay.
    pub delay_notified: bool,
}

impl Entry {
    /// An entry for `message`, found at `location`, with its trace lines
    /// taken out.
    fn new(mut message: MessageRecord, location: Location, no_errors: Arc<[Diagnostic]>) -> Entry {
        let prepend = std::mem::take(&mut message.prepend);
        Entry {
            message,
            location,
            // A frame is at most MAX_PAYLOAD (16 MiB).
            prepend_len: prepend.len() as u32,
            prepend_crc: crc32fast::hash(&prepend),
            attempts: 0,
            next_attempt: 0,
            last_errors: no_errors,
            held: false,
            delay_notified: false,
        }
    }

    /// The reasons of the last attempt as one line (`; ` between them), as
    /// the log shows them; `None` when there are none.
    pub fn last_error(&self) -> Option<String> {
        if self.last_errors.is_empty() {
            return None;
        }
        let texts: Vec<String> = self.last_errors.iter().map(ToString::to_string).collect();
        Some(texts.join("; "))
    }

    /// The message's size: trace lines and body.
    pub fn size(&self) -> u64 {
        u64::from(self.prepend_len) + self.message.body_len
    }

    /// Where the trace lines lie and how long they are; `None` when the
    /// location cannot hold them (damage).
    pub(super) fn prepend_at(&self) -> Option<(Location, u64)> {
        let len = u64::from(self.prepend_len);
        let start = self
            .location
            .body_offset
            .checked_sub(self.message.prepend_gap())?
            .checked_sub(len)?;
        Some((
            Location {
                segment: self.location.segment,
                body_offset: start,
            },
            len,
        ))
    }

    /// The entry with `prepend` (read from [`Entry::prepend_at`]) put back;
    /// `None` when it is not what was written.
    pub(super) fn with_prepend(mut self, prepend: Vec<u8>) -> Option<Entry> {
        if prepend.len() != self.prepend_len as usize
            || crc32fast::hash(&prepend) != self.prepend_crc
        {
            return None;
        }
        self.message.prepend = prepend;
        Some(self)
    }
}

/// The index; see the module docs. `spool.rs` owns the lock around it.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Boxed: ids arrive in ascending order, which leaves a B-tree's nodes
    /// about half full, and half-empty slots of a pointer cost less than
    /// half-empty slots of an entry (about 150 bytes per queued message).
    pub(super) messages: BTreeMap<QueueId, Box<Entry>>,
    /// Live messages per segment; every segment on disk has a key.
    pub(super) segments: BTreeMap<u64, usize>,
    /// Messages handed to a delivery worker and not yet given back.
    pub(super) leased: HashSet<QueueId>,
    /// Messages waiting for their turn, by next attempt time: every message
    /// that is neither held nor leased. Keeps leasing O(log n) per message
    /// with a million queued.
    pub(super) due: BTreeSet<(u64, QueueId)>,
    /// The last few distinct sets of reasons, newest last, for sharing.
    recent_errors: Vec<Arc<[Diagnostic]>>,
}

impl Index {
    /// Applies one durable record.
    pub(super) fn apply(&mut self, record: Record, location: Location) {
        self.segments.entry(location.segment).or_insert(0);
        match record {
            Record::Message(message) => {
                let id = message.id;
                if let Some(old) = self.messages.remove(&id) {
                    self.release_segment(old.location.segment);
                    self.due.remove(&(old.next_attempt, id));
                }
                *self.segments.entry(location.segment).or_insert(0) += 1;
                let none = self.shared(Vec::new());
                self.messages
                    .insert(id, Box::new(Entry::new(message, location, none)));
                self.schedule(id);
            }
            Record::Recipient { id, index, status } => {
                if let Some(slot) = self
                    .messages
                    .get_mut(&id)
                    .and_then(|e| e.message.statuses.get_mut(index as usize))
                {
                    *slot = status;
                }
            }
            Record::Attempt {
                id,
                attempts,
                next_attempt,
                errors,
            } => {
                if !self.messages.contains_key(&id) {
                    return;
                }
                let errors = self.shared(errors);
                if let Some(e) = self.messages.get_mut(&id) {
                    self.due.remove(&(e.next_attempt, id));
                    e.attempts = attempts;
                    e.next_attempt = next_attempt;
                    e.last_errors = errors;
                    self.schedule(id);
                }
            }
            Record::Hold { id, held } => {
                if let Some(e) = self.messages.get_mut(&id) {
                    e.held = held;
                    self.due.remove(&(e.next_attempt, id));
                    self.schedule(id);
                }
            }
            Record::DelayNotified { id } => {
                if let Some(e) = self.messages.get_mut(&id) {
                    e.delay_notified = true;
                }
            }
            Record::Done { id } => {
                if let Some(old) = self.messages.remove(&id) {
                    self.release_segment(old.location.segment);
                    self.due.remove(&(old.next_attempt, id));
                }
            }
        }
    }

    /// `errors` as a shared slice: the one already held for an equal set
    /// among the last [`RECENT_ERRORS`], else a new one (remembered).
    fn shared(&mut self, errors: Vec<Diagnostic>) -> Arc<[Diagnostic]> {
        if let Some(same) = self
            .recent_errors
            .iter()
            .rev()
            .find(|known| known[..] == errors[..])
        {
            return same.clone();
        }
        let new: Arc<[Diagnostic]> = errors.into();
        if self.recent_errors.len() == RECENT_ERRORS {
            self.recent_errors.remove(0);
        }
        self.recent_errors.push(new.clone());
        new
    }

    /// Takes `id` out of the due set and marks it leased.
    pub(super) fn lease(&mut self, id: QueueId) {
        if let Some(e) = self.messages.get(&id) {
            self.due.remove(&(e.next_attempt, id));
        }
        self.leased.insert(id);
    }

    /// Puts `id` in the due set if it is queued, not held and not leased.
    /// True when it is now the first due.
    pub(super) fn schedule(&mut self, id: QueueId) -> bool {
        if let Some(e) = self.messages.get(&id) {
            if !e.held && !self.leased.contains(&id) {
                let key = (e.next_attempt, id);
                self.due.insert(key);
                return self.due.first() == Some(&key);
            }
        }
        false
    }

    fn release_segment(&mut self, seq: u64) {
        if let Some(live) = self.segments.get_mut(&seq) {
            *live = live.saturating_sub(1);
        }
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
