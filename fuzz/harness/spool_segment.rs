//! Target `spool_segment`: a whole spool log segment file, as recovery reads
//! it ([`scan_segment`], with and without repair) and as `tern queue` reads
//! the spool ([`Spool::inspect`], [`Spool::inspect_content`]).
//!
//! Input: byte 0 holds flags, the rest is the file. Flag bit 0: put the
//! segment magic in front; bit 1: give every frame its right checksum (and a
//! message's body its right body checksum), so the fuzzer gets past them.
//!
//! Invariants: no panic and no allocation sized by the file's contents
//! beyond its length (the fuzz build aborts on allocations over 64 MiB);
//! a read-only scan changes nothing and fails only on a segment of a newer
//! format; repair leaves a segment that reads back without damage and with
//! the same records, or moves the whole file aside into damaged/; every
//! record read after repair is one the read-only scan also found, in the
//! same order.

use std::path::Path;

use tern::queue::log::segment_path;
use tern::queue::record::{frame_header, FRAME_HEADER, MAX_PAYLOAD, SEGMENT_MAGIC};
use tern::queue::scan::{damaged_dir, scan_segment, Found, Scan};
use tern::queue::{Record, Spool};

thread_local! {
    /// One spool directory per thread, reused by every run.
    static DIR: tempfile::TempDir = tempfile::Builder::new()
        .prefix("tern-fuzz-spool")
        .tempdir()
        .expect("temporary directory");
}

/// Gives every frame of `file` (starting after the magic) its checksum, and
/// a message frame's body its body checksum, in place.
fn fix_checksums(file: &mut [u8]) {
    let mut pos = SEGMENT_MAGIC.len();
    // Each round moves `pos` forward by at least a frame header.
    while pos + FRAME_HEADER <= file.len() {
        let header: [u8; FRAME_HEADER] = file[pos..pos + FRAME_HEADER].try_into().unwrap();
        let (len, _) = frame_header(&header);
        let start = pos + FRAME_HEADER;
        if len == 0 || len > MAX_PAYLOAD || len > file.len() - start {
            return;
        }
        let end = start + len;
        let mut next = end;
        // A message payload ends with body_len:u64 and body_crc:u32.
        if file[start] == 1 && len >= 13 {
            let body_len = u64::from_le_bytes(file[end - 12..end - 4].try_into().unwrap());
            if let Ok(body_len) = usize::try_from(body_len) {
                if body_len <= file.len() - end {
                    let body_crc = crc32fast::hash(&file[end..end + body_len]);
                    file[end - 4..end].copy_from_slice(&body_crc.to_le_bytes());
                    next = end + body_len;
                }
            }
        }
        let crc = crc32fast::hash(&file[start..end]);
        file[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = next;
    }
}

fn scan(dir: &Path, repair: bool) -> Result<Vec<(Record, u64)>, std::io::Error> {
    let mut found = Vec::new();
    let how = if repair {
        Scan::Recover { newest: true }
    } else {
        Scan::ReadOnly
    };
    scan_segment(dir, 1, how, |f: Found| {
        found.push((f.record, f.location.body_offset))
    })?;
    Ok(found)
}

/// Reads `data` as a segment file (see the module documentation).
pub fn run(data: &[u8]) {
    let [flags, ref rest @ ..] = *data else {
        return;
    };
    let mut file = Vec::with_capacity(rest.len() + 8);
    if flags & 1 != 0 {
        file.extend_from_slice(SEGMENT_MAGIC);
    }
    file.extend_from_slice(rest);
    if flags & 2 != 0 && file.starts_with(SEGMENT_MAGIC) {
        fix_checksums(&mut file);
    }
    DIR.with(|dir| check(dir.path(), &file));
}

fn check(dir: &Path, file: &[u8]) {
    let path = segment_path(dir, 1);
    std::fs::write(&path, file).expect("write the segment");
    let is_segment = file.starts_with(SEGMENT_MAGIC) || file.starts_with(b"TERNLOG1");
    let plain = scan(dir, false);
    if !is_segment {
        // Not a segment: skipped (logged), or refused as a newer format.
        assert!(
            plain.as_ref().map_or(true, |found| found.is_empty()),
            "a file without a segment magic gave records"
        );
    }
    let plain = plain.unwrap_or_default();
    for (record, body_offset) in &plain {
        if let Record::Message(m) = record {
            assert!(
                body_offset
                    .checked_add(m.body_len)
                    .is_some_and(|end| end <= file.len() as u64),
                "a message whose body is past the end of the file"
            );
        }
    }
    // `tern queue` on a stopped daemon: reads and content, without repair;
    // it fails only on a segment of a newer format.
    let entries = Spool::inspect(dir);
    if is_segment {
        assert!(entries.is_ok(), "{entries:?}");
    }
    for entry in entries.iter().flatten() {
        if let Ok(content) = Spool::inspect_content(dir, entry) {
            // The index keeps the trace lines on disk; its size counts them.
            assert_eq!(content.len() as u64, entry.size());
        }
    }
    assert!(
        !damaged_dir(dir).exists(),
        "a read-only scan moved something aside"
    );
    // Recovery of the newest segment: a torn tail dropped, damage moved
    // aside whole or from its first bad frame, then read again.
    let repaired = match scan(dir, true) {
        Ok(found) => found,
        Err(e) => {
            // Only a segment of a newer tern is refused, and left alone.
            assert!(file.starts_with(b"TERNLOG"), "repair failed: {e}");
            assert_eq!(std::fs::read(&path).expect("left alone"), file);
            std::fs::remove_file(&path).expect("remove the segment");
            return;
        }
    };
    if path.exists() {
        let again = scan(dir, false).expect("a repaired segment reads");
        assert_eq!(repaired, again, "a repaired segment reads back differently");
        let len = std::fs::metadata(&path).expect("segment").len();
        let intact = scan_end(&again);
        assert_eq!(intact, len, "a repaired segment still has a damaged tail");
        assert!(
            repaired.len() <= plain.len() && repaired[..] == plain[..repaired.len()],
            "repair found records the plain read did not"
        );
        std::fs::remove_file(&path).expect("remove the segment");
    } else {
        assert!(repaired.is_empty(), "records from a file moved aside");
        assert!(damaged_dir(dir).is_dir(), "the file went nowhere");
    }
    // Nothing is thrown away: what could not be read is in damaged/.
    let _ = std::fs::remove_dir_all(damaged_dir(dir));
}

/// Where the last record found ends (the magic's end if none): a message's
/// body offset plus its length; a state record's "body offset" is where its
/// frame ends.
fn scan_end(found: &[(Record, u64)]) -> u64 {
    match found.last() {
        None => SEGMENT_MAGIC.len() as u64,
        Some((Record::Message(m), body_offset)) => body_offset + m.body_len,
        Some((_, body_offset)) => *body_offset,
    }
}
