//! Maildir delivery (the `tmp` → `new` protocol): write the message under
//! `tmp/`, make it durable, rename it into `new/`, make the rename durable.
//! Only after that is the delivery durable and may the spool forget the
//! recipient.
//!
//! "Durable" is one `syncfs` of the Maildir's filesystem ([`flush`]): it
//! covers every file written before it, so a batch of deliveries shares two
//! flushes (one before the renames, one after) instead of each costing a
//! file fsync, a directory fsync and a flush of the disk's cache. The steps
//! are separate ([`Maildir::begin`], [`flush`], [`Written::finish`]) so that
//! the local delivery agent's writer ([`super::writer`]) can batch them; a
//! file never reaches `new/` before its content is on disk, and the spool
//! records a delivery only after the flush that follows the rename.
//!
//! File names are `<time>.Q<queue id>R<recipient>.<host>`: unique, and the same
//! for a redelivery of the same recipient, so a delivery interrupted between
//! the rename and the spool's record is not made twice (the file in `new/` is
//! found and kept).
//!
//! Nothing is written through a symbolic link: the file in `tmp/` is made
//! with `O_CREAT|O_EXCL|O_NOFOLLOW` (one left there by a crash, or planted,
//! is unlinked first, which never follows a link), a link in `new/` does not
//! count as an earlier delivery (the rename replaces the link itself), and a
//! `tmp/` or `new/` that is a link is refused.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::OFlag;

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

    /// The Maildir++ folder `name` of this Maildir (`<root>/.<name>`), e.g.
    /// `Junk`: a Maildir of its own, which Dovecot shows as an IMAP folder.
    pub fn folder(&self, name: &str) -> Maildir {
        Maildir::new(self.root.join(format!(".{name}")))
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
        // Maildir++: a folder is marked by an empty `maildirfolder` file.
        let is_folder = self
            .root
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
        if is_folder && created {
            File::create(self.root.join("maildirfolder"))?;
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

    /// The first step of a delivery: writes `parts` (concatenated) under
    /// `tmp/` as `name`, not yet durable; or finds `name` in `new/` from an
    /// earlier attempt. Makes the Maildir's directories when missing.
    pub fn begin(&self, name: &str, parts: &[&[u8]]) -> io::Result<Begun> {
        self.ensure(false)?;
        match self.begin_ready(name, parts) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.ensure(true)?;
                self.begin_ready(name, parts)
            }
            other => other,
        }
    }

    fn begin_ready(&self, name: &str, parts: &[&[u8]]) -> io::Result<Begun> {
        let tmp_dir = self.root.join("tmp");
        let new_dir = self.root.join("new");
        not_a_link(&tmp_dir)?;
        not_a_link(&new_dir)?;
        let new_path = new_dir.join(name);
        match fs::symlink_metadata(&new_path) {
            Ok(meta) if meta.is_file() => return Ok(Begun::AlreadyThere(new_path)),
            // Anything else (a link) is replaced by the rename below, which
            // never follows a link; a directory makes the rename fail.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp_path = tmp_dir.join(name);
        let mut file = match create_new_file(&tmp_path) {
            // The name is the same for every attempt of this recipient: a
            // file here is what a crash left behind, or was planted. Unlink
            // it (which removes a link, never its target) and start afresh.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp_path)?;
                create_new_file(&tmp_path)?
            }
            other => other?,
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let written = (|| {
            let mut out = io::BufWriter::with_capacity(len.clamp(1, 64 << 10), &mut file);
            for part in parts {
                out.write_all(part)?;
            }
            out.flush()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(Begun::Written(Written {
            file,
            tmp_path,
            new_path,
        }))
    }
}

/// What [`Maildir::begin`] did.
#[derive(Debug)]
pub enum Begun {
    /// The message is under `tmp/`, to be flushed and then renamed.
    Written(Written),
    /// `new/` has it from an earlier attempt (still to be flushed: the
    /// attempt that put it there may have failed before its flush did).
    AlreadyThere(PathBuf),
}

/// A message written under `tmp/` and not yet in `new/`.
#[derive(Debug)]
pub struct Written {
    /// The open file (for the flush of its filesystem).
    pub file: File,
    tmp_path: PathBuf,
    new_path: PathBuf,
}

impl Written {
    /// Moves the file into `new/` (call only once its content is flushed);
    /// returns its path there. The rename is durable after the next flush.
    pub fn finish(self) -> io::Result<PathBuf> {
        if let Err(e) = fs::rename(&self.tmp_path, &self.new_path) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        Ok(self.new_path)
    }

    /// Gives up (the flush failed): removes the file from `tmp/`.
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// Makes everything written to the filesystem that holds `file` durable:
/// `syncfs`, one flush however many files are waiting (see the module's
/// note).
pub fn flush(file: &File) -> io::Result<()> {
    nix::unistd::syncfs(file).map_err(io::Error::from)
}

/// Creates `path` (mode 0600) for writing; fails if anything, even a
/// dangling symbolic link, is there already (`O_EXCL`), and never follows a
/// link (`O_NOFOLLOW`).
fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Fails when `dir` is a symbolic link: whoever planted it would have our
/// deliveries written wherever it points. (`NotFound` when it is missing,
/// which makes [`Maildir::begin`] create it again.)
fn not_a_link(dir: &Path) -> io::Result<()> {
    if fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link; not delivering through it",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One delivery the way the local delivery agent makes it (a batch of
    /// one through its writer): `parts[0]` in front of the rest.
    fn deliver(md: &Maildir, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
        let job = super::super::writer::Job {
            maildir: md.clone(),
            name: name.into(),
            head: parts[0].to_vec(),
            content: std::sync::Arc::new(parts[1..].concat()),
        };
        let (mut results, _) = super::super::writer::write_batch([&[job][..]].into_iter());
        results.remove(0).remove(0)
    }

    #[test]
    fn delivers_into_new_and_leaves_tmp_empty() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("me"));
        let name = Maildir::file_name(1_800_000_000, "ABC", 0, "mx.example.org");
        assert_eq!(name, "1800000000.QABCR0.mx.example.org");
        let got = deliver(&md, &name, &[b"Return-Path: <>\r\n", b"body\r\n"]).unwrap();
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
            deliver(&md, &name, &[b"one"]).unwrap(),
            Delivered::New(_)
        ));
        assert!(matches!(
            deliver(&md, &name, &[b"two"]).unwrap(),
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
                        deliver(md, &name, &[b"x"]).unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 160);
    }

    /// A Maildir with one message delivered (its directories made), the
    /// name of the next delivery, and a file outside it.
    fn with_outside_file() -> (tempfile::TempDir, Maildir, String, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("me"));
        deliver(&md, &Maildir::file_name(1, "FIRST", 0, "h"), &[b"first"]).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let name = Maildir::file_name(2, "NEXT", 0, "h");
        (dir, md, name, outside)
    }

    #[test]
    fn a_link_planted_in_tmp_is_not_written_through() {
        let (_dir, md, name, outside) = with_outside_file();
        std::os::unix::fs::symlink(&outside, md.root().join("tmp").join(&name)).unwrap();
        let got = deliver(&md, &name, &[b"the message"]).unwrap();
        assert_eq!(got, Delivered::New(md.root().join("new").join(&name)));
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert_eq!(
            fs::read(md.root().join("new").join(&name)).unwrap(),
            b"the message"
        );
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);

        // A dangling link does not make its target appear either.
        let target = outside.with_file_name("created-through-link");
        let name = Maildir::file_name(3, "DANGLING", 0, "h");
        std::os::unix::fs::symlink(&target, md.root().join("tmp").join(&name)).unwrap();
        deliver(&md, &name, &[b"x"]).unwrap();
        assert!(!target.exists());
    }

    #[test]
    fn a_file_left_in_tmp_by_a_crash_is_replaced() {
        let (_dir, md, name, _) = with_outside_file();
        fs::write(md.root().join("tmp").join(&name), b"half a mess").unwrap();
        deliver(&md, &name, &[b"whole"]).unwrap();
        assert_eq!(
            fs::read(md.root().join("new").join(&name)).unwrap(),
            b"whole"
        );
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_link_in_new_is_not_taken_for_an_earlier_delivery() {
        let (_dir, md, name, outside) = with_outside_file();
        let planted = md.root().join("new").join(&name);
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        assert_eq!(
            deliver(&md, &name, &[b"mine"]).unwrap(),
            Delivered::New(planted.clone())
        );
        assert!(!fs::symlink_metadata(&planted).unwrap().is_symlink());
        assert_eq!(fs::read(&planted).unwrap(), b"mine");
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
    }

    #[test]
    fn a_tmp_or_new_directory_that_is_a_link_is_refused() {
        for sub in ["tmp", "new"] {
            let (dir, md, name, _) = with_outside_file();
            let elsewhere = dir.path().join("elsewhere");
            fs::create_dir(&elsewhere).unwrap();
            let path = md.root().join(sub);
            fs::rename(&path, dir.path().join("moved")).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
            let err = deliver(&md, &name, &[b"x"]).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{sub}: {err}");
            assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "{sub}");
        }
    }

    #[test]
    fn host_part_is_escaped() {
        assert_eq!(
            Maildir::file_name(1, "Q", 0, "a/b:c"),
            "1.QQR0.a\\057b\\072c"
        );
    }
}
