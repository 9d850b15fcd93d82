//! Maildir delivery (the `tmp` → `new` protocol): write the message under
//! `tmp/`, fsync it, rename it into `new/`, fsync `new/`. Only after that is the
//! delivery durable and may the spool forget the recipient.
//!
//! File names are `<time>.Q<queue id>R<recipient>.<host>`: unique, and the same
//! for a redelivery of the same recipient, so a delivery interrupted between
//! the rename and the spool's record is not made twice (the file in `new/` is
//! found and kept).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// A Maildir on disk.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Written now, at this path.
    New(PathBuf),
    /// Already there from an earlier attempt.
    AlreadyThere(PathBuf),
}

impl Maildir {
    /// The Maildir rooted at `root` (created on first delivery).
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `tmp/`, `new/` and `cur/` (mode 0700) if missing.
    pub fn create(&self) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        let mut created = false;
        for sub in ["tmp", "new", "cur"] {
            let path = self.root.join(sub);
            if !path.is_dir() {
                builder.create(&path)?;
                created = true;
            }
        }
        if created {
            // Make the new directories themselves durable.
            File::open(&self.root)?.sync_all()?;
            if let Some(parent) = self.root.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// The file name for one recipient of one queued message.
    pub fn file_name(
        received_secs: u64,
        queue_id: &str,
        recipient: usize,
        hostname: &str,
    ) -> String {
        // Maildir: '/' and ':' in the host part are written as octal escapes.
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        format!("{received_secs}.Q{queue_id}R{recipient}.{host}")
    }

    /// [`Maildir::create`], once per Maildir per process (a delivery that then
    /// finds a directory gone makes it again).
    fn ensure(&self, again: bool) -> io::Result<()> {
        static READY: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
        let ready = READY.get_or_init(Default::default);
        let known = ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&self.root);
        if known && !again {
            return Ok(());
        }
        self.create()?;
        ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.root.clone());
        Ok(())
    }

    /// Delivers `parts` (concatenated) as `name`, durably.
    pub fn deliver(&self, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
        self.ensure(false)?;
        match self.deliver_ready(name, parts) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.ensure(true)?;
                self.deliver_ready(name, parts)
            }
            other => other,
        }
    }

    fn deliver_ready(&self, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
        let new_path = self.root.join("new").join(name);
        if new_path.exists() {
            return Ok(Delivered::AlreadyThere(new_path));
        }
        let tmp_path = self.root.join("tmp").join(name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp_path)?;
            let mut out = io::BufWriter::with_capacity(64 << 10, &mut file);
            for part in parts {
                out.write_all(part)?;
            }
            out.flush()?;
            drop(out);
            file.sync_all()?;
            fs::rename(&tmp_path, &new_path)?;
            sync_dir_grouped(&self.root.join("new"))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(Delivered::New(new_path))
    }
}

/// One directory's fsync, shared by the deliveries that wait for it.
#[derive(Default)]
struct DirSync {
    state: Mutex<DirSyncState>,
    done: Condvar,
}

#[derive(Default)]
struct DirSyncState {
    /// Deliveries that asked, in order.
    requested: u64,
    /// Every request up to this one is covered by a finished fsync.
    synced: u64,
    syncing: bool,
}

/// fsync of directory `dir`, group-committed: a delivery that renamed its
/// file in while another fsync of the same directory runs waits for the next
/// one, which then covers every rename made before it started. Concurrent
/// deliveries into one Maildir (a burst for one user) share the flushes.
fn sync_dir_grouped(dir: &Path) -> io::Result<()> {
    static DIRS: OnceLock<Mutex<HashMap<PathBuf, Arc<DirSync>>>> = OnceLock::new();
    let sync = {
        let mut dirs = DIRS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if dirs.len() > 10_000 {
            dirs.retain(|_, s| Arc::strong_count(s) > 1);
        }
        dirs.entry(dir.to_path_buf()).or_default().clone()
    };
    let mut state = sync.state.lock().unwrap_or_else(|e| e.into_inner());
    state.requested += 1;
    let mine = state.requested;
    loop {
        if state.synced >= mine {
            return Ok(());
        }
        if !state.syncing {
            state.syncing = true;
            let target = state.requested;
            drop(state);
            let result = File::open(dir).and_then(|d| d.sync_all());
            state = sync.state.lock().unwrap_or_else(|e| e.into_inner());
            state.syncing = false;
            if result.is_ok() {
                state.synced = state.synced.max(target);
            }
            sync.done.notify_all();
            result?;
            continue;
        }
        state = sync.done.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_and_leaves_tmp_empty() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("me"));
        let name = Maildir::file_name(1_800_000_000, "ABC", 0, "mx.example.org");
        assert_eq!(name, "1800000000.QABCR0.mx.example.org");
        let got = md
            .deliver(&name, &[b"Return-Path: <>\r\n", b"body\r\n"])
            .unwrap();
        let Delivered::New(path) = got else {
            panic!("expected a new file")
        };
        assert_eq!(fs::read(&path).unwrap(), b"Return-Path: <>\r\nbody\r\n");
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        assert!(md.root().join("cur").is_dir());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_redelivery_finds_the_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("me"));
        let name = Maildir::file_name(1, "X", 2, "h");
        assert!(matches!(
            md.deliver(&name, &[b"one"]).unwrap(),
            Delivered::New(_)
        ));
        assert!(matches!(
            md.deliver(&name, &[b"two"]).unwrap(),
            Delivered::AlreadyThere(_)
        ));
        assert_eq!(fs::read(md.root().join("new").join(&name)).unwrap(), b"one");
    }

    #[test]
    fn concurrent_deliveries_through_the_shared_directory_flush_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("me"));
        std::thread::scope(|s| {
            for t in 0..8 {
                let md = &md;
                s.spawn(move || {
                    for i in 0..20 {
                        let name = Maildir::file_name(1, &format!("T{t}"), i, "h");
                        md.deliver(&name, &[b"x"]).unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 160);
    }

    #[test]
    fn host_part_is_escaped() {
        assert_eq!(
            Maildir::file_name(1, "Q", 0, "a/b:c"),
            "1.QQR0.a\\057b\\072c"
        );
    }
}
