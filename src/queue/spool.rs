//! The durable spool: the in-memory index of queued messages (`index.rs`)
//! over the on-disk log (`log.rs`). Every change is appended to the log and flushed *before* the
//! index changes, so the index never claims more than the disk holds, and
//! recovery (replaying the log) rebuilds exactly what was acknowledged.
//!
//! Layout of `data_dir/spool/`: `NNNNNNNNNNNN.log` segment files, and `tmp/`
//! for spilled bodies (unlinked at once, so never left behind).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use crate::smtp::Envelope;

use super::body::Body;
use super::free_space::FreeSpace;
use super::id::{IdGenerator, QueueId};
pub use super::index::Entry;
use super::index::Index;
use super::log::{
    list_segments, segment_path, Append, BodyData, Location, Log, LogOptions, OnDurable,
};
use super::record::{Folder, MessageRecord, RcptStatus, Record};
use super::scan::{scan_segment, Scan};

/// Why the spool could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    #[error("message {0} is damaged on disk (checksum mismatch)")]
    Damaged(QueueId),
}

/// A message read back for delivery: envelope, state and body.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub entry: Entry,
    /// The prepended trace headers followed by the body as received.
    pub content: Vec<u8>,
}

/// Spool settings.
#[derive(Debug, Clone, Default)]
pub struct SpoolOptions {
    pub log: LogOptions,
}

/// The durable queue store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    log: Log,
    ids: IdGenerator,
    clock: Arc<dyn Clock>,
    index: Arc<Mutex<Index>>,
    /// Woken whenever a message becomes deliverable.
    wake: tokio::sync::Notify,
    /// Free space on the spool's filesystem (for `limits.free_space`).
    free_space: FreeSpace,
}

/// How long the messages left in the oldest segment must have waited before
/// housekeeping copies them forward.
pub const PINNED_AFTER: Duration = Duration::from_secs(15 * 60);

/// Milliseconds since the epoch.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the epoch.
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovering every message
    /// the log holds.
    pub fn open(
        dir: &Path,
        clock: Arc<dyn Clock>,
        options: SpoolOptions,
    ) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        for leftover in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(leftover?.path());
        }
        let segments = list_segments(dir)?;
        let mut index = Index::default();
        let mut max_id = 0;
        for (i, &seq) in segments.iter().enumerate() {
            index.segments.insert(seq, 0);
            let newest = i + 1 == segments.len();
            scan_segment(dir, seq, Scan::Recover { newest }, |found| {
                max_id = max_id.max(found.record.id().0);
                index.apply(found.record, found.location);
            })?;
        }
        let next_seq = segments.last().map_or(1, |s| s + 1);
        index.segments.insert(next_seq, 0);
        let log = Log::start(dir, next_seq, options.log)?;
        let spool = Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                log,
                ids: IdGenerator::starting_after(max_id),
                clock,
                index: Arc::new(Mutex::new(index)),
                wake: tokio::sync::Notify::new(),
                free_space: FreeSpace::new(dir),
            }),
        };
        let recovered = spool.lock().messages.len();
        if recovered > 0 {
            log::info!(
                "spool: recovered {recovered} queued message(s) from {}",
                dir.display()
            );
        }
        spool.delete_finished_segments();
        Ok(spool)
    }

    /// Reads the queue without changing anything on disk (no repair, no new
    /// segment): for `tern queue` when the daemon is not running.
    pub fn inspect(dir: &Path) -> Result<Vec<Entry>, SpoolError> {
        let mut index = Index::default();
        for seq in list_segments(dir)? {
            scan_segment(dir, seq, Scan::ReadOnly, |found| {
                index.apply(found.record, found.location)
            })?;
        }
        Ok(index.messages.into_values().map(|e| *e).collect())
    }

    /// Reads the content (trace headers and body) of an entry found by
    /// [`Spool::inspect`], without opening the spool for writing. Blocking.
    pub fn inspect_content(dir: &Path, entry: &Entry) -> Result<Vec<u8>, SpoolError> {
        use std::os::unix::fs::FileExt;
        let id = entry.message.id;
        let file = std::fs::File::open(segment_path(dir, entry.location.segment))?;
        let read = |location: Location, len: u64| {
            let len = usize::try_from(len).map_err(|_| SpoolError::Damaged(id))?;
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, location.body_offset)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => SpoolError::Damaged(id),
                    _ => SpoolError::Io(e),
                })?;
            Ok::<_, SpoolError>(buf)
        };
        let (at, len) = entry.prepend_at().ok_or(SpoolError::Damaged(id))?;
        let mut content = entry
            .clone()
            .with_prepend(read(at, len)?)
            .ok_or(SpoolError::Damaged(id))?
            .message
            .prepend;
        let body = read(entry.location, entry.message.body_len)?;
        if crc32fast::hash(&body) != entry.message.body_crc {
            return Err(SpoolError::Damaged(id));
        }
        content.extend_from_slice(&body);
        Ok(content)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where spilled bodies go.
    pub fn tmp_dir(&self) -> PathBuf {
        self.inner.dir.join("tmp")
    }

    /// Free space on the spool's filesystem, measured at most once a second.
    pub fn free_space(&self) -> &FreeSpace {
        &self.inner.free_space
    }

    /// The clock the spool runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// A fresh queue id (used in the `Received:` header before queueing).
    pub fn new_id(&self) -> QueueId {
        self.inner.ids.next(self.inner.clock.now())
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a message durable. When this returns `Ok`, the message survives a
    /// crash; only then may the client hear 250.
    pub async fn enqueue(
        &self,
        id: QueueId,
        envelope: Envelope,
        prepend: Vec<u8>,
        body: Body,
    ) -> Result<(), SpoolError> {
        self.enqueue_into(id, envelope, prepend, body, Folder::Inbox)
            .await
    }

    /// [`Spool::enqueue`], delivering local recipients' copies into `folder`.
    pub async fn enqueue_into(
        &self,
        id: QueueId,
        envelope: Envelope,
        prepend: Vec<u8>,
        body: Body,
        folder: Folder,
    ) -> Result<(), SpoolError> {
        let (append, on_durable) = self.message_append(id, envelope, prepend, body, folder);
        self.inner
            .log
            .append(vec![append], Some(on_durable))
            .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// [`Spool::enqueue`] for callers outside the async runtime.
    pub fn enqueue_blocking(
        &self,
        id: QueueId,
        envelope: Envelope,
        prepend: Vec<u8>,
        body: Body,
    ) -> Result<(), SpoolError> {
        let (append, on_durable) = self.message_append(id, envelope, prepend, body, Folder::Inbox);
        self.inner
            .log
            .append_blocking(vec![append], Some(on_durable))?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The append for a new message, and the index update that runs when it
    /// is durable.
    fn message_append(
        &self,
        id: QueueId,
        envelope: Envelope,
        prepend: Vec<u8>,
        body: Body,
        folder: Folder,
    ) -> (Append, OnDurable) {
        let record = MessageRecord {
            id,
            received_at: millis(self.inner.clock.now()),
            statuses: vec![RcptStatus::Pending; envelope.recipients.len()],
            envelope,
            prepend,
            body_len: body.len,
            body_crc: body.crc,
            folder,
        };
        let append = Append {
            frame: Record::Message(record.clone()).encode(),
            body: Some((body.data, body.len)),
        };
        (
            append,
            self.apply_when_durable(vec![Record::Message(record)]),
        )
    }

    /// An [`OnDurable`] that applies `records` to the index.
    fn apply_when_durable(&self, records: Vec<Record>) -> OnDurable {
        let index = self.inner.index.clone();
        Box::new(move |locations: &[Location]| {
            let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
            for (record, location) in records.into_iter().zip(locations) {
                index.apply(record, *location);
            }
        })
    }

    fn state_appends(records: &[Record]) -> Vec<Append> {
        records
            .iter()
            .map(|r| Append {
                frame: r.encode(),
                body: None,
            })
            .collect()
    }

    /// Appends state records durably; the index reflects them on return.
    pub fn update_blocking(&self, records: Vec<Record>) -> Result<(), SpoolError> {
        let wake = Self::wakes(&records);
        let appends = Self::state_appends(&records);
        self.inner
            .log
            .append_blocking(appends, Some(self.apply_when_durable(records)))?;
        self.after_update(wake);
        Ok(())
    }

    /// [`Spool::update_blocking`] from async code.
    pub async fn update(&self, records: Vec<Record>) -> Result<(), SpoolError> {
        self.update_as(records, true).await
    }

    /// Appends state records whose loss in a crash would only repeat work that
    /// is idempotent (a local delivery found again in the Maildir): returns
    /// once written, before the flush, which the next durable write (or
    /// [`super::log::LAZY_FLUSH`] later) brings.
    pub async fn update_lazy(&self, records: Vec<Record>) -> Result<(), SpoolError> {
        self.update_as(records, false).await
    }

    async fn update_as(&self, records: Vec<Record>, flush: bool) -> Result<(), SpoolError> {
        let wake = Self::wakes(&records);
        let appends = Self::state_appends(&records);
        let on_applied = Some(self.apply_when_durable(records));
        self.inner
            .log
            .append_with(appends, on_applied, flush)
            .await?;
        self.after_update(wake);
        Ok(())
    }

    /// Records that can make a message deliverable again.
    fn wakes(records: &[Record]) -> bool {
        records.iter().any(|r| {
            matches!(
                r,
                Record::Hold { held: false, .. }
                    | Record::Attempt {
                        next_attempt: 0,
                        ..
                    }
            )
        })
    }

    fn after_update(&self, wake: bool) {
        if wake {
            self.inner.wake.notify_one();
        }
        self.delete_finished_segments();
    }

    /// Deletes the oldest segments while nothing in them is queued.
    fn delete_finished_segments(&self) {
        let mut index = self.lock();
        let newest = index.segments.keys().next_back().copied().unwrap_or(0);
        while let Some((&seq, &live)) = index.segments.first_key_value() {
            if live > 0 || seq >= newest {
                break;
            }
            index.segments.remove(&seq);
            self.inner.log.delete_segment(seq);
        }
    }

    /// Reads a message's envelope, state and content. Blocking.
    pub fn load(&self, id: QueueId) -> Result<Loaded, SpoolError> {
        let entry = self.entry(id).ok_or(SpoolError::NotFound(id))?;
        self.read(entry)
    }

    /// The content of `entry`, read and checked. Blocking.
    fn read(&self, entry: Entry) -> Result<Loaded, SpoolError> {
        let id = entry.message.id;
        let damaged = || {
            log::error!("spool: message {id} is damaged on disk; it stays queued");
            SpoolError::Damaged(id)
        };
        // The trace lines, the frame's last fields and the body lie one
        // after the other: one read, then the fields cut out.
        let (at, len) = entry.prepend_at().ok_or_else(damaged)?;
        let (len, gap) = (len as usize, entry.message.prepend_gap() as usize);
        let mut content = self
            .inner
            .log
            .read_at(at, (len + gap) as u64 + entry.message.body_len)?;
        content.drain(len..len + gap);
        let entry = entry
            .with_prepend(content[..len].to_vec())
            .ok_or_else(damaged)?;
        if crc32fast::hash(&content[len..]) != entry.message.body_crc {
            return Err(damaged());
        }
        Ok(Loaded { entry, content })
    }

    /// [`Spool::load`] when the message was written lately by this process
    /// ([`super::log::Log::is_recent`]: its bytes are in the page cache, so
    /// the read does not block); `None` when the read might wait for the
    /// disk (or the message is gone), for a blocking thread to do.
    pub fn load_if_recent(&self, id: QueueId) -> Option<Result<Loaded, SpoolError>> {
        let entry = self.entry(id)?;
        self.inner
            .log
            .is_recent(entry.location)
            .then(|| self.read(entry))
    }

    /// The body size of one message (for the scheduler's memory budget,
    /// without copying its entry).
    pub fn body_len(&self, id: QueueId) -> Option<u64> {
        self.lock().messages.get(&id).map(|e| e.message.body_len)
    }

    /// A copy of one entry.
    pub fn entry(&self, id: QueueId) -> Option<Entry> {
        self.lock().messages.get(&id).map(|e| (**e).clone())
    }

    /// Copies of every entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock()
            .messages
            .values()
            .map(|e| (**e).clone())
            .collect()
    }

    /// How many messages are queued.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leases up to `max` messages that are due at `now` (not held, not leased);
    /// the caller must [`Spool::release`] each one.
    pub fn lease_due(&self, now: SystemTime, max: usize) -> Vec<QueueId> {
        let now = millis(now);
        let mut index = self.lock();
        let mut leased = Vec::new();
        while leased.len() < max {
            match index.due.first() {
                Some(&(at, id)) if at <= now => {
                    index.due.remove(&(at, id));
                    index.leased.insert(id);
                    leased.push(id);
                }
                _ => break,
            }
        }
        leased
    }

    /// Gives a leased message back to the scheduler.
    pub fn release(&self, id: QueueId) {
        let first = {
            let mut index = self.lock();
            index.leased.remove(&id);
            index.schedule(id)
        };
        // A message given back still queued (deferred) and due before
        // anything else: the scheduler may be asleep until a later time,
        // computed while this one was leased, so it must look again.
        if first {
            self.inner.wake.notify_one();
        }
    }

    /// The earliest `next_attempt` of any message that is not held or leased.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.lock().due.first().map(|&(at, _)| from_millis(at))
    }

    /// Waits until something may have become deliverable.
    pub async fn changed(&self) {
        self.inner.wake.notified().await
    }

    /// Wakes the scheduler (for example after `tern queue flush`).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Rewrites the messages still queued in the oldest segment into the newest
    /// one, so the oldest can be deleted: a message deferred for days must not
    /// pin every segment written after it. Blocking. Returns how many moved.
    ///
    /// Each message is leased while it is copied, so no delivery runs on it;
    /// if something else finished it meanwhile (an administrator's delete),
    /// its end is written again after the copy so recovery cannot revive it.
    pub fn compact_oldest(&self) -> Result<usize, SpoolError> {
        let (oldest, ids) = {
            let mut index = self.lock();
            let Some((&oldest, _)) = index.segments.first_key_value() else {
                return Ok(0);
            };
            let ids: Vec<QueueId> = index
                .messages
                .values()
                .filter(|e| e.location.segment == oldest && !index.leased.contains(&e.message.id))
                .map(|e| e.message.id)
                .collect();
            for id in &ids {
                index.lease(*id);
            }
            (oldest, ids)
        };
        let mut moved = 0;
        let mut result = Ok(());
        for id in &ids {
            if result.is_ok() {
                match self.copy_forward(*id) {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(e) => result = Err(e),
                }
            }
            self.release(*id);
        }
        // They are deliverable again: tell a scheduler that may be asleep.
        self.inner.wake.notify_one();
        result?;
        self.delete_finished_segments();
        log::debug!("spool: compacted segment {oldest}, moved {moved} message(s)");
        Ok(moved)
    }

    /// Compacts while old segments are pinned by a few long-queued messages
    /// (all older than [`PINNED_AFTER`]):
    /// with more than two segments, an oldest one holding at most
    /// `max_live` messages is copied forward. Blocking; bounded to a few
    /// segments per call.
    pub fn housekeeping(&self, max_live: usize) -> Result<usize, SpoolError> {
        let mut moved = 0;
        for _ in 0..8 {
            let young =
                millis(self.inner.clock.now()).saturating_sub(PINNED_AFTER.as_millis() as u64);
            let pinned = {
                let index = self.lock();
                let oldest = index
                    .segments
                    .first_key_value()
                    .map(|(&seq, &live)| (seq, live));
                index.segments.len() > 2
                    && oldest.is_some_and(|(seq, live)| {
                        // A backlog that is merely young will be delivered
                        // soon: copying it would only cost disk writes.
                        live > 0
                            && live <= max_live
                            && index
                                .messages
                                .values()
                                .filter(|e| e.location.segment == seq)
                                .all(|e| e.message.received_at < young)
                    })
            };
            if !pinned {
                break;
            }
            moved += self.compact_oldest()?;
        }
        Ok(moved)
    }

    /// Appends a copy of message `id` with its current state.
    fn copy_forward(&self, id: QueueId) -> Result<bool, SpoolError> {
        let loaded = match self.load(id) {
            Ok(l) => l,
            Err(SpoolError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let entry = loaded.entry;
        let body = loaded.content[entry.message.prepend.len()..].to_vec();
        let mut records = vec![Record::Message(entry.message.clone())];
        if entry.attempts > 0 || entry.next_attempt > 0 {
            records.push(Record::Attempt {
                id,
                attempts: entry.attempts,
                next_attempt: entry.next_attempt,
                errors: entry.last_errors.to_vec(),
            });
        }
        if entry.held {
            records.push(Record::Hold { id, held: true });
        }
        if entry.delay_notified {
            records.push(Record::DelayNotified { id });
        }
        let mut appends = Self::state_appends(&records);
        appends[0].body = Some((BodyData::Memory(body), entry.message.body_len));
        let index = self.inner.index.clone();
        let on_durable: OnDurable = Box::new(move |locations: &[Location]| {
            let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
            // Never bring back in memory what was finished meanwhile.
            if index.messages.contains_key(&id) {
                for (record, location) in records.into_iter().zip(locations) {
                    index.apply(record, *location);
                }
            }
        });
        self.inner.log.append_blocking(appends, Some(on_durable))?;
        if self.entry(id).is_none() {
            self.update_blocking(vec![Record::Done { id }])?;
            return Ok(false);
        }
        Ok(true)
    }
}

/// A spool in a new temporary directory, for unit tests elsewhere in the
/// crate (the directory goes when the returned guard is dropped).
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Spool) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        &dir.path().join("spool"),
        Arc::new(crate::clock::SystemClock),
        SpoolOptions::default(),
    )
    .unwrap();
    (dir, spool)
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
