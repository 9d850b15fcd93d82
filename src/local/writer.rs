//! The Maildir writer: one thread that makes local deliveries durable in
//! batches. Every delivery the scheduler runs at once hands its files here
//! ([`Writer::deliver`]); the thread takes whatever has gathered while it
//! was busy (up to [`MAX_BATCH`] files), writes each under `tmp/`, flushes
//! each filesystem involved once, renames the files into `new/`, flushes
//! once more, and only then answers. A burst of N messages costs two
//! flushes per batch instead of 2N, and one thread instead of a blocking
//! thread and a handful of wake-ups per message.
//!
//! A failure is the failing file's own (its delivery is tried again later);
//! a failed flush fails every file of the batch on that filesystem.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

use super::maildir::{flush, Begun, Delivered, Maildir, Written};
/// The most files one batch writes before it flushes.
pub const MAX_BATCH: usize = 256;

/// A message's content, shared by the files of its recipients.
pub type Content = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// One file to deliver: `head` then `content`, as `name` in `maildir`.
pub struct Job {
    pub maildir: Maildir,
    pub name: String,
    pub head: Vec<u8>,
    pub content: Content,
}

/// A delivery's files and where their results go, in the same order.
struct Request {
    jobs: Vec<Job>,
    reply: oneshot::Sender<Vec<io::Result<Delivered>>>,
}

/// The handle of the writer thread (started at the first delivery).
#[derive(Default)]
pub struct Writer {
    to_thread: Mutex<Option<mpsc::Sender<Request>>>,
}

impl Writer {
    /// Delivers `jobs` durably; one result per job, in order.
    pub async fn deliver(&self, jobs: Vec<Job>) -> Vec<io::Result<Delivered>> {
        let count = jobs.len();
        let (reply, answer) = oneshot::channel();
        let sent = self
            .sender()
            .and_then(|tx| tx.send(Request { jobs, reply }).map_err(io::Error::other));
        let stopped = |why: String| {
            (0..count)
                .map(|_| Err(io::Error::other(why.clone())))
                .collect()
        };
        if let Err(e) = sent {
            // Dropped so that the next delivery starts a new thread.
            *self.lock() = None;
            return stopped(format!("the Maildir writer is not running: {e}"));
        }
        answer
            .await
            .unwrap_or_else(|_| stopped("the Maildir writer stopped".into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Request>>> {
        self.to_thread.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel to the thread, started now if it is not running.
    fn sender(&self) -> io::Result<mpsc::Sender<Request>> {
        let mut slot = self.lock();
        if let Some(tx) = slot.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("maildir-writer".into())
            .spawn(move || run(rx))?;
        *slot = Some(tx.clone());
        Ok(tx)
    }
}

/// The thread: a batch of whatever is waiting, until every sender is gone.
fn run(rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut files = first.jobs.len();
        let mut batch = vec![first];
        while files < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    files += request.jobs.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let (results, _flushes) = write_batch(batch.iter().map(|r| &r.jobs[..]));
        for (request, results) in batch.into_iter().zip(results) {
            // A delivery whose task is gone (shutdown) finds its message
            // in Maildir when it runs again.
            let _ = request.reply.send(results);
        }
    }
}

/// Where one file stands in a batch.
enum Step {
    Written(Written),
    /// In `new/` (renamed now, or there from an earlier attempt), to be
    /// flushed; the file open for the flush.
    Placed(Delivered, File),
    Done(io::Result<Delivered>),
}

/// Writes the files of several deliveries together; returns their results
/// (grouped as given) and how many flushes that took.
pub(super) fn write_batch<'a>(
    deliveries: impl Iterator<Item = &'a [Job]>,
) -> (Vec<Vec<io::Result<Delivered>>>, usize) {
    let mut steps: Vec<Vec<Step>> = deliveries
        .map(|jobs| {
            jobs.iter()
                .map(|job| {
                    let parts: [&[u8]; 2] = [&job.head, (*job.content).as_ref()];
                    match job.maildir.begin(&job.name, &parts) {
                        Ok(Begun::Written(written)) => Step::Written(written),
                        Ok(Begun::AlreadyThere(path)) => match File::open(&path) {
                            Ok(file) => Step::Placed(Delivered::AlreadyThere(path), file),
                            Err(e) => Step::Done(Err(e)),
                        },
                        Err(e) => Step::Done(Err(e)),
                    }
                })
                .collect()
        })
        .collect();
    let mut flushes = 0;

    // The contents on disk before any name appears in new/.
    flushes += flush_filesystems(&mut steps, |step| match step {
        Step::Written(w) => Some(&w.file),
        _ => None,
    });
    for step in steps.iter_mut().flatten() {
        let taken = std::mem::replace(step, Step::Done(Err(io::ErrorKind::Other.into())));
        *step = match taken {
            Step::Written(written) => match written.file.try_clone() {
                Ok(file) => match written.finish() {
                    Ok(path) => Step::Placed(Delivered::New(path), file),
                    Err(e) => Step::Done(Err(e)),
                },
                Err(e) => {
                    written.abandon();
                    Step::Done(Err(e))
                }
            },
            other => other,
        };
    }

    // The renames on disk before the spool hears of them.
    flushes += flush_filesystems(&mut steps, |step| match step {
        Step::Placed(_, file) => Some(file),
        _ => None,
    });
    let results = steps
        .into_iter()
        .map(|steps| {
            steps
                .into_iter()
                .map(|step| match step {
                    Step::Placed(delivered, _) => Ok(delivered),
                    Step::Done(result) => result,
                    Step::Written(_) => unreachable!("every written file was renamed"),
                })
                .collect()
        })
        .collect();
    (results, flushes)
}

/// Flushes once each filesystem that holds a file `pick` finds among
/// `steps`; a file whose flush failed (or whose filesystem cannot be told)
/// becomes that failure. Returns how many flushes ran.
fn flush_filesystems(steps: &mut [Vec<Step>], pick: impl Fn(&Step) -> Option<&File>) -> usize {
    let devices: Vec<Option<io::Result<u64>>> = steps
        .iter()
        .flatten()
        .map(|step| pick(step).map(|file| file.metadata().map(|m| m.dev())))
        .collect();
    // io::Error is not Clone: a failed flush is kept as its kind and text.
    let mut flushed: HashMap<u64, Option<(io::ErrorKind, String)>> = HashMap::new();
    for (step, device) in steps.iter().flatten().zip(&devices) {
        if let (Some(file), Some(Ok(dev))) = (pick(step), device) {
            flushed
                .entry(*dev)
                .or_insert_with(|| flush(file).err().map(|e| (e.kind(), e.to_string())));
        }
    }
    for (step, device) in steps.iter_mut().flatten().zip(devices) {
        let error = match device {
            None => continue,
            Some(Err(e)) => e,
            Some(Ok(dev)) => match &flushed[&dev] {
                None => continue,
                Some((kind, why)) => io::Error::new(*kind, why.clone()),
            },
        };
        if let Step::Written(written) = std::mem::replace(step, Step::Done(Err(error))) {
            written.abandon();
        }
    }
    flushed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &[u8]) -> Content {
        Arc::new(content.to_vec())
    }

    fn job(maildir: &Maildir, name: &str, content: &Content) -> Job {
        Job {
            maildir: maildir.clone(),
            name: name.into(),
            head: b"Delivered-To: me\r\n".to_vec(),
            content: content.clone(),
        }
    }

    #[test]
    fn a_batch_shares_two_flushes_and_every_file_lands() {
        let dir = tempfile::tempdir().unwrap();
        let boxes: Vec<Maildir> = (0..3)
            .map(|u| Maildir::new(dir.path().join(format!("user{u}"))))
            .collect();
        let msg = message(b"Subject: hi\r\n\r\nbody\r\n");
        let deliveries: Vec<Vec<Job>> = (0..40)
            .map(|m| {
                boxes
                    .iter()
                    .enumerate()
                    .map(|(r, md)| job(md, &format!("1.QM{m}R{r}.h"), &msg))
                    .collect()
            })
            .collect();
        let (results, flushes) = write_batch(deliveries.iter().map(|d| &d[..]));
        // One filesystem: one flush before the renames, one after, for 120 files.
        assert_eq!(flushes, 2);
        assert_eq!(results.len(), 40);
        for (m, per) in results.iter().enumerate() {
            for (r, result) in per.iter().enumerate() {
                let Ok(Delivered::New(path)) = result else {
                    panic!("{m}/{r}: {result:?}")
                };
                assert_eq!(
                    std::fs::read(path).unwrap(),
                    b"Delivered-To: me\r\nSubject: hi\r\n\r\nbody\r\n"
                );
            }
        }
        for md in &boxes {
            assert_eq!(
                std::fs::read_dir(md.root().join("new")).unwrap().count(),
                40
            );
            assert_eq!(std::fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        }
    }

    #[test]
    fn one_bad_maildir_fails_alone_and_a_redelivery_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let good = Maildir::new(dir.path().join("good"));
        // A Maildir under a plain file cannot be made.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let bad = Maildir::new(dir.path().join("file").join("bad"));
        let msg = message(b"body\r\n");
        let first = [job(&good, "1.QAR0.h", &msg), job(&bad, "1.QAR1.h", &msg)];
        let (results, _) = write_batch([&first[..]].into_iter());
        assert!(matches!(results[0][0], Ok(Delivered::New(_))));
        assert!(results[0][1].is_err());
        // The same file again (a retry after a crash before the spool's
        // record): found in new/, kept, and still flushed.
        let again = [job(&good, "1.QAR0.h", &message(b"other\r\n"))];
        let (results, flushes) = write_batch([&again[..]].into_iter());
        assert!(matches!(results[0][0], Ok(Delivered::AlreadyThere(_))));
        assert_eq!(flushes, 1);
        assert_eq!(
            std::fs::read(good.root().join("new/1.QAR0.h")).unwrap(),
            b"Delivered-To: me\r\nbody\r\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_from_many_tasks_go_through_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(Writer::default());
        let md = Maildir::new(dir.path().join("me"));
        let msg = message(b"x\r\n");
        let mut tasks = Vec::new();
        for t in 0..16 {
            let (writer, md, msg) = (writer.clone(), md.clone(), msg.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let results = writer
                        .deliver(vec![job(&md, &format!("1.QT{t}x{i}R0.h"), &msg)])
                        .await;
                    assert!(matches!(results[..], [Ok(Delivered::New(_))]));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            std::fs::read_dir(md.root().join("new")).unwrap().count(),
            160
        );
    }
}
