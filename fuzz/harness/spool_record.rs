//! Target `spool_record`: one spool log record payload ([`Record::decode`]).
//!
//! Input: the payload of a frame; the harness gives it its right checksum
//! (a fuzzer cannot guess CRC-32s), then a wrong one.
//!
//! Invariants: no panic and no allocation sized by a length field (the
//! fuzz build aborts on any allocation over 64 MiB); a wrong checksum is
//! always refused; what decodes encodes to a frame whose header is right
//! and which decodes to the same record (the spool writes what it read when
//! it copies a message forward, so the trip must lose nothing).

use tern::queue::record::{frame_header, DecodeError, Format, FRAME_HEADER};
use tern::queue::Record;

/// Decodes `data` as a payload (see the module documentation).
pub fn run(data: &[u8]) {
    let crc = crc32fast::hash(data);
    // Format 1 records (a spool of an older release) decode too; what is
    // written back is always the current format.
    let _ = Record::decode(data, crc, Format::V1);
    assert_eq!(
        Record::decode(data, crc ^ 0x8000_0001, Format::V2),
        Err(DecodeError::Checksum)
    );
    let Ok(record) = Record::decode(data, crc, Format::V2) else {
        return;
    };
    let frame = record.encode();
    let header: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().expect("frame header");
    let (len, crc) = frame_header(&header);
    assert_eq!(len, frame.len() - FRAME_HEADER);
    assert_eq!(
        Record::decode(&frame[FRAME_HEADER..], crc, Format::V2).as_ref(),
        Ok(&record),
        "the record does not survive encode and decode"
    );
}
