//! [`BodyBuffer`]: collects a message body while it arrives, in memory up to a
//! threshold and in an unlinked temporary file beyond it, so that many large
//! messages at once do not exhaust memory. The result is a [`Body`] that the
//! spool appends to its log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::log::BodyData;

/// A complete body: its bytes (or file), length and CRC-32.
#[derive(Debug)]
pub struct Body {
    pub data: BodyData,
    pub len: u64,
    pub crc: u32,
}

impl Body {
    /// A body held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Body {
        Body {
            len: bytes.len() as u64,
            crc: crc32fast::hash(&bytes),
            data: BodyData::Memory(bytes),
        }
    }

    /// An independent reader of the bytes from the start, which can be sent
    /// to another thread (the DKIM signer reads the message on a blocking
    /// thread while the body stays here): a copy of a body in memory (at most
    /// the spill threshold), or a second handle of the spill file read with
    /// positioned reads, which leave the file's own position alone.
    pub fn reader(&self) -> io::Result<BodyReader> {
        let source = match &self.data {
            BodyData::Memory(bytes) => ReaderSource::Memory(bytes.clone()),
            BodyData::File(file) => ReaderSource::File(file.try_clone()?),
        };
        Ok(BodyReader {
            source,
            pos: 0,
            len: self.len,
        })
    }
}

/// Reads a [`Body`]; see [`Body::reader`].
#[derive(Debug)]
pub struct BodyReader {
    source: ReaderSource,
    pos: u64,
    len: u64,
}

#[derive(Debug)]
enum ReaderSource {
    Memory(Vec<u8>),
    File(File),
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = match &self.source {
            ReaderSource::Memory(bytes) => {
                let start = usize::try_from(self.pos).unwrap_or(usize::MAX);
                let chunk = bytes.get(start..).unwrap_or_default();
                let n = want.min(chunk.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                n
            }
            ReaderSource::File(file) => file.read_at(&mut buf[..want], self.pos)?,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Accumulates body bytes; see the module docs.
#[derive(Debug)]
pub struct BodyBuffer {
    tmp_dir: PathBuf,
    threshold: usize,
    memory: Vec<u8>,
    file: Option<io::BufWriter<File>>,
    len: u64,
    hasher: crc32fast::Hasher,
    tail: [u8; 2],
}

static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Bodies larger than this are spilled to a temporary file while they
/// arrive (SMTP DATA/BDAT and local submissions alike).
pub const BODY_MEMORY_LIMIT: usize = 1 << 20;

impl BodyBuffer {
    /// A buffer that spills to a file in `tmp_dir` past `threshold` bytes.
    pub fn new(tmp_dir: &Path, threshold: usize) -> BodyBuffer {
        BodyBuffer {
            tmp_dir: tmp_dir.to_path_buf(),
            threshold,
            memory: Vec::new(),
            file: None,
            len: 0,
            hasher: crc32fast::Hasher::new(),
            tail: [0; 2],
        }
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        if bytes.len() >= 2 {
            self.tail = [bytes[bytes.len() - 2], bytes[bytes.len() - 1]];
        } else {
            self.tail = [self.tail[1], bytes[0]];
        }
        if self.file.is_none() && self.memory.len() + bytes.len() > self.threshold {
            let mut file = io::BufWriter::with_capacity(256 << 10, self.spill_file()?);
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => {
                self.memory.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// RFC 5322 §2.1: a message is lines ending in CRLF. A BDAT body may stop
    /// mid-line; finish the line so the message can be sent on with DATA.
    pub fn ensure_final_crlf(&mut self) -> io::Result<()> {
        if self.len > 0 && self.tail != *b"\r\n" {
            self.write(b"\r\n")?;
        }
        Ok(())
    }

    /// Forgets everything written.
    pub fn clear(&mut self) {
        self.memory.clear();
        self.file = None;
        self.len = 0;
        self.hasher = crc32fast::Hasher::new();
        self.tail = [0; 2];
    }

    /// Takes the body out, leaving the buffer empty.
    pub fn take(&mut self) -> io::Result<Body> {
        let crc = std::mem::take(&mut self.hasher).finalize();
        let len = std::mem::take(&mut self.len);
        self.tail = [0; 2];
        let data = match self.file.take() {
            Some(f) => BodyData::File(f.into_inner().map_err(|e| e.into_error())?),
            None => BodyData::Memory(std::mem::take(&mut self.memory)),
        };
        Ok(Body { data, len, crc })
    }

    /// A temporary file that has no name: nothing is left behind by a crash.
    fn spill_file(&self) -> io::Result<File> {
        let n = SPILL_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .tmp_dir
            .join(format!("body-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn contents(body: Body) -> Vec<u8> {
        match body.data {
            BodyData::Memory(v) => v,
            BodyData::File(mut f) => {
                let mut v = Vec::new();
                f.seek(SeekFrom::Start(0)).unwrap();
                f.read_to_end(&mut v).unwrap();
                v
            }
        }
    }

    #[test]
    fn spills_past_the_threshold_and_keeps_every_byte() {
        let dir = std::env::temp_dir().join(format!("tern-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut buf = BodyBuffer::new(&dir, 10);
        let mut expected = Vec::new();
        for i in 0..50u8 {
            buf.write(&[i; 3]).unwrap();
            expected.extend_from_slice(&[i; 3]);
        }
        buf.ensure_final_crlf().unwrap();
        expected.extend_from_slice(b"\r\n");
        let body = buf.take().unwrap();
        assert!(matches!(body.data, BodyData::File(_)));
        assert_eq!(body.len, expected.len() as u64);
        assert_eq!(body.crc, crc32fast::hash(&expected));
        assert_eq!(contents(body), expected);
        // The spill file has no name.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_see_every_byte_and_leave_the_body_alone() {
        let dir = std::env::temp_dir().join(format!("tern-body-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for threshold in [1000, 10] {
            let mut buf = BodyBuffer::new(&dir, threshold);
            let expected: Vec<u8> = (0..200u8).collect();
            buf.write(&expected).unwrap();
            let body = buf.take().unwrap();
            let mut first = Vec::new();
            body.reader().unwrap().read_to_end(&mut first).unwrap();
            let mut second = Vec::new();
            body.reader().unwrap().read_to_end(&mut second).unwrap();
            assert_eq!((&first, &second), (&expected, &expected));
            assert_eq!(contents(body), expected);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crlf_is_added_only_when_missing() {
        let mut buf = BodyBuffer::new(Path::new("/nonexistent"), 1000);
        buf.write(b"a\r").unwrap();
        buf.write(b"\n").unwrap();
        buf.ensure_final_crlf().unwrap();
        assert_eq!(contents(buf.take().unwrap()), b"a\r\n");
        buf.write(b"abc").unwrap();
        buf.ensure_final_crlf().unwrap();
        assert_eq!(contents(buf.take().unwrap()), b"abc\r\n");
        buf.ensure_final_crlf().unwrap();
        assert!(buf.is_empty());
    }
}
