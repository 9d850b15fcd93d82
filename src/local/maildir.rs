//! Maildir delivery (the `tmp` → `new` protocol): write the message under
//! `tmp/`, fsync it, rename it into `new/`, fsync `new/`. Only after that is the
//! delivery durable and may the spool forget the recipient.
//!
//! File names are `<time>.Q<queue id>R<recipient>.<host>`: unique, and the same
//! for a redelivery of the same recipient, so a delivery interrupted between
//! the rename and the spool's record is not made twice (the file in `new/` is
//! found and kept).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

    /// Delivers `parts` (concatenated) as `name`, durably.
    pub fn deliver(&self, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
        self.create()?;
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
            File::open(self.root.join("new"))?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(Delivered::New(new_path))
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
    fn host_part_is_escaped() {
        assert_eq!(
            Maildir::file_name(1, "Q", 0, "a/b:c"),
            "1.QQR0.a\\057b\\072c"
        );
    }
}
