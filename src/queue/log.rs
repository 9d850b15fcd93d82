//! The spool log: append-only segment files, written by one thread that commits
//! in groups (the scan that recovers them at start-up is `scan.rs`).
//!
//! Why a log: a file per message costs an fsync of the file and one of the
//! directory for every message (~125/s on our reference disk). Appending every
//! record that arrives while the previous flush runs, then one `fdatasync` for
//! all of them (group commit), costs one flush per batch (~2,800/s, and many
//! messages per flush under load). A caller hears back only after the flush that
//! covers its records, so "250 queued" still means "on disk" (DESIGN invariant
//! 1). A new segment's directory entry is made durable (directory fsync) before
//! any record in it is acknowledged.
//!
//! Segments are deleted oldest first, and only when no message in them is
//! still queued (see `spool.rs`), so a record never outlives a record it
//! depends on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::record::SEGMENT_MAGIC;

/// Where a message body lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub body_offset: u64,
}

/// A message body to append after its frame.
#[derive(Debug)]
pub enum BodyData {
    Memory(Vec<u8>),
    /// Spilled to an unlinked temporary file (large messages).
    File(File),
}

/// One frame and, for a message, its body.
#[derive(Debug)]
pub struct Append {
    pub frame: Vec<u8>,
    pub body: Option<(BodyData, u64)>,
}

/// Where the writer sends the outcome of an append.
type ReplyTo = tokio::sync::oneshot::Sender<io::Result<Vec<Location>>>;

/// Runs on the writer thread once a request's records are durable, before any
/// request of the batch hears back: the caller's in-memory index learns of
/// records in exactly the order they were written, so nothing can observe a
/// later record (say, the one that lets a segment be deleted) before an
/// earlier one (the message that still lives in it).
pub type OnDurable = Box<dyn FnOnce(&[Location]) + Send>;

enum Request {
    Append {
        appends: Vec<Append>,
        on_durable: Option<OnDurable>,
        reply: ReplyTo,
        /// Wait for the flush. `false` (lazy): answered once written; the
        /// next flush covers it (at the latest [`LAZY_FLUSH`] later, and
        /// always before a segment is deleted).
        sync: bool,
    },
    Delete(u64),
}

/// The longest lazily appended records stay unflushed when nothing else
/// comes.
pub const LAZY_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Start a new segment once the current one is this large.
    pub segment_size: u64,
    /// Stop adding requests to a batch once it holds this many bytes.
    pub batch_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 << 20,
            batch_bytes: 8 << 20,
        }
    }
}

/// The handle to the writer thread and the readers of segment files.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// `None` once dropped (closing the channel ends the writer thread).
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The first segment this process wrote, and the one it writes now.
    first_segment: u64,
    newest_segment: Arc<AtomicU64>,
}

impl Drop for Log {
    /// Lets the writer finish what it was asked (deletes included) before the
    /// log is gone, so a spool reopened right after sees a settled directory.
    fn drop(&mut self) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// The file name of segment `seq`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}.log"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes `dir`'s entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Starts the writer thread on a fresh segment numbered `first_segment`.
    pub fn start(dir: &Path, first_segment: u64, options: LogOptions) -> io::Result<Log> {
        let active = Segment::create(dir, first_segment)?;
        let (tx, rx) = mpsc::channel();
        let newest_segment = Arc::new(AtomicU64::new(first_segment));
        let writer = Writer {
            dir: dir.to_path_buf(),
            options,
            active: Some(active),
            next_seq: first_segment + 1,
            newest_segment: newest_segment.clone(),
            unsynced: false,
        };
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Log {
            dir: dir.to_path_buf(),
            requests: Mutex::new(Some(tx)),
            readers: Mutex::new(HashMap::new()),
            writer: Mutex::new(Some(handle)),
            first_segment,
            newest_segment,
        })
    }

    /// Did this process write `location` lately (in the segment it writes
    /// now or the one before, at most twice the segment size back)? Such
    /// bytes are as good as certainly still in the page cache, so reading
    /// them does not wait for the disk; the scheduler reads them without
    /// handing the read to a blocking thread.
    pub fn is_recent(&self, location: Location) -> bool {
        let newest = self.newest_segment.load(Ordering::Relaxed);
        location.segment >= self.first_segment && location.segment + 1 >= newest
    }

    /// Appends frames (and bodies); returns once they are on disk, with the body
    /// location of each append (meaningful for message frames only).
    pub async fn append(
        &self,
        appends: Vec<Append>,
        on_durable: Option<OnDurable>,
    ) -> io::Result<Vec<Location>> {
        self.append_with(appends, on_durable, true).await
    }

    /// [`Log::append`] when `sync`; otherwise appends records that may be
    /// lost in a crash without harm (they would be redone idempotently):
    /// returns once they are written, not flushed, and `on_durable` runs
    /// then. Those are flushed with the next batch that needs it, after
    /// [`LAZY_FLUSH`] at the latest, and before any segment is deleted.
    pub async fn append_with(
        &self,
        appends: Vec<Append>,
        on_durable: Option<OnDurable>,
        sync: bool,
    ) -> io::Result<Vec<Location>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Append {
            appends,
            on_durable,
            reply,
            sync,
        })?;
        rx.await
            .map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// [`Log::append`] for threads outside the async runtime.
    pub fn append_blocking(
        &self,
        appends: Vec<Append>,
        on_durable: Option<OnDurable>,
    ) -> io::Result<Vec<Location>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Append {
            appends,
            on_durable,
            reply,
            sync: true,
        })?;
        rx.blocking_recv()
            .map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// Deletes segment `seq` (after everything queued in it is finished).
    pub fn delete_segment(&self, seq: u64) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
        let _ = self.send(Request::Delete(seq));
    }

    fn send(&self, request: Request) -> io::Result<()> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .ok_or_else(|| io::Error::other("spool writer stopped"))?
            .send(request)
            .map_err(|_| io::Error::other("spool writer stopped"))
    }

    /// Reads `len` bytes at `location` (a body). Blocking.
    pub fn read_at(&self, location: Location, len: u64) -> io::Result<Vec<u8>> {
        let file = {
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            match readers.get(&location.segment) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(segment_path(&self.dir, location.segment))?);
                    readers.insert(location.segment, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, location.body_offset)?;
        Ok(buf)
    }
}

/// An open segment being appended to.
struct Segment {
    seq: u64,
    out: BufWriter<File>,
    len: u64,
    /// The length of what earlier batches wrote and were told of.
    committed: u64,
}

impl Segment {
    /// Creates segment `seq`, writes its magic, and makes file and directory
    /// entry durable.
    fn create(dir: &Path, seq: u64) -> io::Result<Segment> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.write_all(SEGMENT_MAGIC)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Segment {
            seq,
            out: BufWriter::with_capacity(1 << 20, file),
            len: SEGMENT_MAGIC.len() as u64,
            committed: SEGMENT_MAGIC.len() as u64,
        })
    }

    /// After a failed write (a full disk, typically): drops what the failed
    /// batch left, buffered or on disk, so that its partial records do not
    /// hold space until the segment is deleted. Nothing acknowledged is
    /// touched: only bytes past `committed`.
    fn give_back_tail(self) {
        let (file, _unwritten) = self.out.into_parts();
        if let Err(e) = file.set_len(self.committed).and_then(|_| file.sync_data()) {
            log::warn!(
                "spool: cannot cut segment {} back to {} bytes after a failed write: {e}",
                self.seq,
                self.committed
            );
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

struct Writer {
    dir: PathBuf,
    options: LogOptions,
    /// `None` after a failure that also failed to open a new segment.
    active: Option<Segment>,
    next_seq: u64,
    /// What [`Log::is_recent`] compares with.
    newest_segment: Arc<AtomicU64>,
    /// Lazily appended records are written but not flushed yet.
    unsynced: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        loop {
            let first = if self.unsynced {
                match rx.recv_timeout(LAZY_FLUSH) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.flush_lazy();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let mut batch = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Delete(seq) => {
                        // What finished the segment's messages is on disk
                        // before the segment goes.
                        self.flush_lazy();
                        self.delete(seq)
                    }
                    Request::Append {
                        appends,
                        on_durable,
                        reply,
                        sync,
                    } => {
                        bytes += appends.iter().map(|a| a.frame.len()).sum::<usize>();
                        batch.push((appends, on_durable, reply, sync));
                    }
                }
                if bytes < self.options.batch_bytes {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
        }
        self.flush_lazy();
    }

    /// Flushes lazily appended records, if any are waiting.
    fn flush_lazy(&mut self) {
        if !self.unsynced {
            return;
        }
        self.unsynced = false;
        if let Some(seg) = self.active.as_mut() {
            if let Err(e) = seg.sync() {
                log::error!("spool: flushing lazily written records failed: {e}");
                self.active = None;
            }
        }
    }

    /// Writes a batch and flushes it once; then answers every request.
    fn commit(&mut self, batch: Vec<(Vec<Append>, Option<OnDurable>, ReplyTo, bool)>) {
        let mut results = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut failed: Option<io::Error> = None;
        let mut callbacks = Vec::with_capacity(batch.len());
        let needs_sync = batch.iter().any(|(_, _, _, sync)| *sync);
        for (appends, on_durable, reply, _) in batch {
            replies.push(reply);
            callbacks.push(on_durable);
            if failed.is_some() {
                continue;
            }
            match self.write_request(appends) {
                Ok(locations) => results.push(locations),
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() {
            if let Some(seg) = self.active.as_mut() {
                let done = if needs_sync {
                    seg.sync()
                } else {
                    // In the kernel now; flushed later (see LAZY_FLUSH).
                    seg.out.flush()
                };
                match done {
                    Ok(()) => {
                        self.unsynced = !needs_sync;
                        seg.committed = seg.len;
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        match failed {
            None => {
                for (on_durable, locations) in callbacks.into_iter().zip(&results) {
                    if let Some(f) = on_durable {
                        f(locations);
                    }
                }
                for (reply, locations) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(locations));
                }
            }
            Some(e) => {
                log::error!(
                    "spool write failed, {} request(s) refused: {e}",
                    replies.len()
                );
                // Never append after a failed write in the same segment: the
                // recovery scan stops at the first bad frame of a segment.
                // Its torn tail is cut off (before anyone hears of the
                // failure), so a full disk gets its space back.
                if let Some(seg) = self.active.take() {
                    seg.give_back_tail();
                }
                for reply in replies {
                    let _ = reply.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }

    fn write_request(&mut self, appends: Vec<Append>) -> io::Result<Vec<Location>> {
        let needs_rotation = match &self.active {
            None => true,
            Some(seg) => seg.len >= self.options.segment_size,
        };
        if needs_rotation {
            self.rotate()?;
        }
        let seg = self
            .active
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment"))?;
        let mut locations = Vec::with_capacity(appends.len());
        for append in appends {
            seg.out.write_all(&append.frame)?;
            seg.len += append.frame.len() as u64;
            let body_offset = seg.len;
            if let Some((body, len)) = append.body {
                match body {
                    BodyData::Memory(bytes) => seg.out.write_all(&bytes)?,
                    BodyData::File(mut file) => {
                        file.seek(SeekFrom::Start(0))?;
                        let copied = io::copy(&mut (&mut file).take(len), &mut seg.out)?;
                        if copied != len {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "spilled body shrank",
                            ));
                        }
                    }
                }
                seg.len += len;
            }
            locations.push(Location {
                segment: seg.seq,
                body_offset,
            });
        }
        Ok(locations)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut old) = self.active.take() {
            old.sync()?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.active = Some(Segment::create(&self.dir, seq)?);
        self.newest_segment.store(seq, Ordering::Relaxed);
        Ok(())
    }

    fn delete(&mut self, seq: u64) {
        if self.active.as_ref().is_some_and(|s| s.seq == seq) {
            return;
        }
        let path = segment_path(&self.dir, seq);
        match std::fs::remove_file(&path).and_then(|_| sync_dir(&self.dir)) {
            Ok(()) => log::debug!("deleted spool segment {}", path.display()),
            Err(e) => log::warn!("could not delete spool segment {}: {e}", path.display()),
        }
    }
}
