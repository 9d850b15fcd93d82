//! Reading the spool's segments back at start-up (and read-only for `tern
//! queue` while the daemon is down), and what happens to bytes that cannot
//! be read.
//!
//! Two kinds of bad bytes, told apart by where they are:
//! - a *torn write*: the end of the newest segment, where a crash cut short
//!   a write that was never acknowledged (a frame that runs past the end of
//!   the file, or nothing but zeros after the last good frame). It is
//!   dropped: it holds nothing anyone was promised.
//! - *damage*: anything else that fails its frame or checksum, a segment
//!   that is empty or not a segment at all, a record whose body is missing.
//!   Nothing is thrown away: the unreadable bytes are moved aside into
//!   `spool/damaged/` (the rest of a segment from the first bad frame on,
//!   or the whole file), with a log line saying what and where, the segment
//!   is cut back to its good part, and start-up carries on with everything
//!   else. `tern queue list` says how many pieces were set aside.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::log::{segment_path, sync_dir, Location};
use super::record::{frame_header, Format, Record, FRAME_HEADER, MAX_PAYLOAD, SEGMENT_MAGIC};

/// One record found by [`scan_segment`], with its body location for messages.
#[derive(Debug)]
pub struct Found {
    pub record: Record,
    pub location: Location,
}

/// How a segment is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Change nothing on disk (`tern queue` while the daemon is down):
    /// bad bytes are skipped and logged.
    ReadOnly,
    /// Start-up: drop a torn write at the end of the newest segment, move
    /// damage aside. `newest` also has body checksums verified, since only
    /// the newest segment can hold writes that were never acknowledged.
    Recover { newest: bool },
}

/// The directory unreadable spool bytes are moved to.
pub fn damaged_dir(spool: &Path) -> PathBuf {
    spool.join("damaged")
}

/// How many pieces of the spool have been set aside as damaged, and their
/// bytes (for `tern queue list`).
pub fn damaged_summary(spool: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(damaged_dir(spool)) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()))
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}

/// Why scanning stopped before the end of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every byte was read.
    End,
    /// At this offset: a frame that runs past the end of the file.
    Cut(u64),
    /// At this offset: a frame or body that fails its checks.
    Bad(u64),
}

/// Reads every intact record of segment `seq`, in order, handing each to
/// `found`; what cannot be read is handled as `scan` says.
pub fn scan_segment(
    dir: &Path,
    seq: u64,
    scan: Scan,
    mut found: impl FnMut(Found),
) -> io::Result<()> {
    let path = segment_path(dir, seq);
    let repair = scan != Scan::ReadOnly;
    let newest = scan == Scan::Recover { newest: true };
    let mut file = OpenOptions::new().read(true).write(repair).open(&path)?;
    let file_len = file.metadata()?.len();
    let mut magic = [0u8; 8];
    let format = match file.read_exact(&mut magic) {
        Ok(()) => Format::of_magic(&magic),
        Err(_) => None,
    };
    let Some(format) = format else {
        if magic.starts_with(b"TERNLOG") {
            // A format of a later release: never taken for damage.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a spool segment of a newer tern (format {}); not touching it",
                    path.display(),
                    String::from_utf8_lossy(&magic[7..])
                ),
            ));
        }
        if newest && blank_from(&file, 0, file_len)? {
            // Created, but its magic never reached the disk: nothing in it.
            // (At offset 0: reading the magic moved the cursor.)
            file.set_len(0)?;
            file.write_all_at(SEGMENT_MAGIC, 0)?;
            return file.sync_all();
        }
        if !repair {
            log::error!("{} is not a spool segment; skipped", path.display());
            return Ok(());
        }
        drop(file);
        return set_aside_file(dir, &path, file_len);
    };
    let stop = read_frames(&file, seq, format, file_len, newest, &mut found)?;
    let (at, cut) = match stop {
        Stop::End => return Ok(()),
        Stop::Cut(at) => (at, true),
        Stop::Bad(at) => (at, false),
    };
    let torn = newest && (cut || blank_from(&file, at, file_len)?);
    let bytes = file_len - at;
    match (repair, torn) {
        (false, _) => log::error!(
            "spool segment {}: unreadable from offset {at} ({bytes} bytes skipped)",
            path.display()
        ),
        (true, true) => {
            log::warn!(
                "spool segment {}: dropping {bytes} bytes of an unfinished write at offset {at}",
                path.display()
            );
            file.set_len(at)?;
            file.sync_all()?;
        }
        (true, false) => {
            let aside = damaged_dir(dir).join(format!("{seq:012}-{at}.bin"));
            std::fs::create_dir_all(damaged_dir(dir))?;
            let mut copy = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&aside)?;
            let mut rest = vec![0u8; usize::try_from(bytes).unwrap_or(usize::MAX).min(1 << 20)];
            let mut pos = at;
            while pos < file_len {
                let n = rest.len().min((file_len - pos) as usize);
                file.read_exact_at(&mut rest[..n], pos)?;
                copy.write_all(&rest[..n])?;
                pos += n as u64;
            }
            copy.sync_all()?;
            sync_dir(&damaged_dir(dir))?;
            file.set_len(at)?;
            file.sync_all()?;
            log::error!(
                "spool segment {}: damaged record at offset {at}; {bytes} bytes moved aside to {} \
                 (the records before it are kept)",
                path.display(),
                aside.display()
            );
        }
    }
    Ok(())
}

/// Reads frames from just after the magic; stops at the end or at the first
/// frame that cannot be read.
fn read_frames(
    file: &File,
    seq: u64,
    format: Format,
    file_len: u64,
    check_bodies: bool,
    found: &mut impl FnMut(Found),
) -> io::Result<Stop> {
    let mut reader = io::BufReader::with_capacity(256 << 10, file);
    reader.seek(io::SeekFrom::Start(SEGMENT_MAGIC.len() as u64))?;
    let mut pos = SEGMENT_MAGIC.len() as u64;
    loop {
        if pos == file_len {
            return Ok(Stop::End);
        }
        if pos + FRAME_HEADER as u64 > file_len {
            return Ok(Stop::Cut(pos));
        }
        let mut header = [0u8; FRAME_HEADER];
        reader.read_exact(&mut header)?;
        let (len, crc) = frame_header(&header);
        if len == 0 || len > MAX_PAYLOAD {
            return Ok(Stop::Bad(pos));
        }
        if pos + (FRAME_HEADER + len) as u64 > file_len {
            return Ok(Stop::Cut(pos));
        }
        // `len` is at most MAX_PAYLOAD: the allocation is bounded whatever
        // the bytes say.
        let mut payload = vec![0; len];
        reader.read_exact(&mut payload)?;
        let Ok(record) = Record::decode(&payload, crc, format) else {
            return Ok(Stop::Bad(pos));
        };
        let body_offset = pos + (FRAME_HEADER + len) as u64;
        let mut next = body_offset;
        if let Record::Message(m) = &record {
            next = match body_offset.checked_add(m.body_len) {
                Some(end) if end <= file_len => end,
                // The body is missing: cut at the end of the file.
                _ => return Ok(Stop::Cut(pos)),
            };
            if check_bodies {
                let mut hasher = crc32fast::Hasher::new();
                let mut left = m.body_len;
                let mut buf = vec![0u8; 64 << 10];
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    reader.read_exact(&mut buf[..n])?;
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                }
                if hasher.finalize() != m.body_crc {
                    return Ok(Stop::Bad(pos));
                }
            } else {
                reader.seek_relative(m.body_len as i64)?;
            }
        }
        found(Found {
            record,
            location: Location {
                segment: seq,
                body_offset,
            },
        });
        pos = next;
    }
}

/// True when the file holds nothing but zero bytes from `from` on (what a
/// crash leaves where a write never reached the disk).
fn blank_from(file: &File, from: u64, len: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos < len {
        let n = buf.len().min((len - pos) as usize);
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Moves a whole file that is not a readable segment into `damaged/`.
fn set_aside_file(dir: &Path, path: &Path, len: u64) -> io::Result<()> {
    let damaged = damaged_dir(dir);
    std::fs::create_dir_all(&damaged)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut aside = damaged.join(format!("{name}.bin"));
    let mut n = 1;
    while aside.exists() {
        aside = damaged.join(format!("{name}.{n}.bin"));
        n += 1;
    }
    std::fs::rename(path, &aside)?;
    sync_dir(&damaged)?;
    sync_dir(dir)?;
    log::error!(
        "spool segment {} is not a readable segment ({len} bytes); moved aside to {}",
        path.display(),
        aside.display()
    );
    Ok(())
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
