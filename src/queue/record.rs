//! The on-disk records of the spool log and their binary encoding.
//!
//! A segment file is an 8-byte magic naming its record [`Format`] followed by
//! frames:
//!
//! ```text
//! frame   = len:u32le  crc:u32le  payload[len]      crc = CRC-32 of payload
//! payload = kind:u8  fields...
//! ```
//!
//! A [`Record::Message`] frame is followed directly by the message body
//! (`body_len` bytes, checked by `body_crc`), so bodies are never copied into
//! memory at recovery. Integers are little-endian; strings are `len:u32le` bytes.
//!
//! Format 2 (`TERNLOG2`, today's) keeps delivery results as typed
//! [`Diagnostic`]s (reply code, enhanced code, text, remote host); format 1
//! (`TERNLOG1`, up to commit aefa3d7) kept them as text, which is read back
//! with [`Diagnostic::from_v1_text`]. New segments are written in format 2;
//! segments of format 1 are read until their messages are done or copied
//! forward, so an upgrade needs no conversion step.
//!
//! A message's [`Folder`] is an optional last field of its message record
//! (`folder:u8` after `body_crc`), written only when it is not the inbox: a
//! record without it (every record written before it existed, and every
//! inbox message since) reads as [`Folder::Inbox`], so the magic stays
//! `TERNLOG2` and a downgrade still reads the inbox mail.

use std::net::IpAddr;

use crate::smtp::{Address, EnhancedCode, Envelope, Recipient, Route};

use super::diagnostic::{Diagnostic, Remote};
use super::id::QueueId;

/// The first bytes of every segment file this version writes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TERNLOG2";
/// The magic of segments written up to commit aefa3d7.
const SEGMENT_MAGIC_V1: &[u8; 8] = b"TERNLOG1";

/// The record format of a segment, named by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delivery results as text.
    V1,
    /// Delivery results as [`Diagnostic`]s.
    V2,
}

impl Format {
    /// The format a segment's magic names, if it is a segment at all.
    pub fn of_magic(magic: &[u8; 8]) -> Option<Format> {
        match magic {
            m if m == SEGMENT_MAGIC => Some(Format::V2),
            m if m == SEGMENT_MAGIC_V1 => Some(Format::V1),
            _ => None,
        }
    }
}
/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 8;
/// No single frame payload (envelope and trace headers, not the body) is larger.
pub const MAX_PAYLOAD: usize = 16 << 20;

const KIND_MESSAGE: u8 = 1;
const KIND_RECIPIENT: u8 = 2;
const KIND_DONE: u8 = 3;
const KIND_ATTEMPT: u8 = 4;
const KIND_HOLD: u8 = 5;
const KIND_DELAY_NOTIFIED: u8 = 6;

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptStatus {
    /// Not yet delivered.
    Pending,
    /// Delivered (local Maildir or accepted by the remote server); the
    /// diagnostic says where, or the remote's reply.
    Delivered(Diagnostic),
    /// Failed for good, for the reason given (often the remote's reply).
    /// Bounced.
    Failed(Diagnostic),
}

impl RcptStatus {
    /// Delivered or failed: nothing more will be tried.
    pub fn is_final(&self) -> bool {
        !matches!(self, RcptStatus::Pending)
    }
}

/// The mailbox folder a message is delivered into, for local recipients
/// (remote ones ignore it). Chosen at acceptance: the checks of mail from
/// other servers (DMARC quarantine, spam) send some to Junk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Folder {
    /// The Maildir itself (INBOX).
    #[default]
    Inbox,
    /// The Maildir++ folder `.Junk`, which IMAP clients show as Junk.
    Junk,
}

impl Folder {
    /// For logs and `tern queue show`.
    pub fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Junk => "Junk",
        }
    }

    /// The on-disk code (absent for the inbox).
    fn code(self) -> u8 {
        match self {
            Folder::Inbox => 0,
            Folder::Junk => 1,
        }
    }
}

/// The envelope and trace of one message; its body follows it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: QueueId,
    /// Milliseconds since the epoch when the message was accepted.
    pub received_at: u64,
    pub envelope: Envelope,
    /// Parallel to `envelope.recipients`.
    pub statuses: Vec<RcptStatus>,
    /// Header lines we add in front of the body (`Received:`, later DKIM).
    pub prepend: Vec<u8>,
    pub body_len: u64,
    pub body_crc: u32,
    /// Where local recipients' copies go.
    pub folder: Folder,
}

impl MessageRecord {
    /// How many bytes before the body its trace lines (`prepend`) end: a
    /// message frame ends with `prepend`, `body_len:u64`, `body_crc:u32`
    /// and, for another folder than the inbox, `folder:u8`, and the body
    /// follows the frame. The spool's index reads the trace lines back from
    /// there instead of holding them in memory. The same in both formats.
    pub fn prepend_gap(&self) -> u64 {
        12 + u64::from(self.folder != Folder::Inbox)
    }
}

/// One entry of the spool log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Message(MessageRecord),
    /// A recipient reached a final state.
    Recipient {
        id: QueueId,
        index: u32,
        status: RcptStatus,
    },
    /// The message is finished (every recipient final, bounces queued) and is
    /// forgotten at recovery.
    Done {
        id: QueueId,
    },
    /// A delivery attempt failed temporarily: the next one is not before
    /// `next_attempt` (ms since epoch). `errors` are the reasons of the last
    /// attempt (one per distinct reason, in recipient order).
    Attempt {
        id: QueueId,
        attempts: u32,
        next_attempt: u64,
        errors: Vec<Diagnostic>,
    },
    /// Held (true) or released (false) by the administrator.
    Hold {
        id: QueueId,
        held: bool,
    },
    /// The sender has been told the message is delayed (sent once).
    DelayNotified {
        id: QueueId,
    },
}

/// A frame that does not decode (torn write or corruption).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated")]
    Truncated,
    #[error("record checksum mismatch")]
    Checksum,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("bad field: {0}")]
    BadField(&'static str),
}

impl Record {
    /// The message the record is about.
    pub fn id(&self) -> QueueId {
        match self {
            Record::Message(m) => m.id,
            Record::Recipient { id, .. }
            | Record::Done { id }
            | Record::Attempt { id, .. }
            | Record::Hold { id, .. }
            | Record::DelayNotified { id } => *id,
        }
    }

    /// The frame: header and payload (for a message, without its body).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(vec![0; FRAME_HEADER]);
        match self {
            Record::Message(m) => {
                w.u8(KIND_MESSAGE);
                w.u64(m.id.0);
                w.u64(m.received_at);
                w.u8(u8::from(m.envelope.eight_bit) | (u8::from(m.envelope.smtputf8) << 1));
                w.str(
                    &m.envelope
                        .sender
                        .as_ref()
                        .map(Address::to_string)
                        .unwrap_or_default(),
                );
                w.u32(m.envelope.recipients.len() as u32);
                for (r, status) in m.envelope.recipients.iter().zip(&m.statuses) {
                    w.str(&r.original);
                    match &r.route {
                        Route::Local(user) => {
                            w.u8(0);
                            w.str(user);
                        }
                        Route::Remote(addr) => {
                            w.u8(1);
                            w.str(&addr.to_string());
                        }
                    }
                    w.status(status);
                }
                w.bytes(&m.prepend);
                w.u64(m.body_len);
                w.u32(m.body_crc);
                if m.folder != Folder::Inbox {
                    w.u8(m.folder.code());
                }
            }
            Record::Recipient { id, index, status } => {
                w.u8(KIND_RECIPIENT);
                w.u64(id.0);
                w.u32(*index);
                w.status(status);
            }
            Record::Done { id } => {
                w.u8(KIND_DONE);
                w.u64(id.0);
            }
            Record::Attempt {
                id,
                attempts,
                next_attempt,
                errors,
            } => {
                w.u8(KIND_ATTEMPT);
                w.u64(id.0);
                w.u32(*attempts);
                w.u64(*next_attempt);
                w.u32(errors.len() as u32);
                for d in errors {
                    w.diagnostic(d);
                }
            }
            Record::Hold { id, held } => {
                w.u8(KIND_HOLD);
                w.u64(id.0);
                w.u8(u8::from(*held));
            }
            Record::DelayNotified { id } => {
                w.u8(KIND_DELAY_NOTIFIED);
                w.u64(id.0);
            }
        }
        let mut frame = w.0;
        let payload_len = (frame.len() - FRAME_HEADER) as u32;
        let crc = crc32fast::hash(&frame[FRAME_HEADER..]);
        frame[0..4].copy_from_slice(&payload_len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        frame
    }

    /// Decodes a payload of format `format` whose checksum is `crc`.
    pub fn decode(payload: &[u8], crc: u32, format: Format) -> Result<Record, DecodeError> {
        if crc32fast::hash(payload) != crc {
            return Err(DecodeError::Checksum);
        }
        let mut r = Reader {
            rest: payload,
            format,
        };
        let record = match r.u8()? {
            KIND_MESSAGE => {
                let id = QueueId(r.u64()?);
                let received_at = r.u64()?;
                let flags = r.u8()?;
                let sender = r.str()?;
                let sender = if sender.is_empty() {
                    None
                } else {
                    Some(Address::parse(&sender).map_err(|_| DecodeError::BadField("sender"))?)
                };
                let count = r.u32()? as usize;
                let mut recipients = Vec::with_capacity(count.min(1024));
                let mut statuses = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let original = r.str()?;
                    let route = match r.u8()? {
                        0 => Route::Local(r.str()?),
                        1 => Route::Remote(
                            Address::parse(&r.str()?)
                                .map_err(|_| DecodeError::BadField("recipient"))?,
                        ),
                        _ => return Err(DecodeError::BadField("route")),
                    };
                    recipients.push(Recipient { original, route });
                    statuses.push(r.status()?);
                }
                let prepend = r.bytes()?.to_vec();
                let body_len = r.u64()?;
                let body_crc = r.u32()?;
                let folder = match r.rest.first() {
                    None => Folder::Inbox,
                    Some(_) => match r.u8()? {
                        1 => Folder::Junk,
                        _ => return Err(DecodeError::BadField("folder")),
                    },
                };
                Record::Message(MessageRecord {
                    id,
                    received_at,
                    envelope: Envelope {
                        sender,
                        recipients,
                        eight_bit: flags & 1 != 0,
                        smtputf8: flags & 2 != 0,
                    },
                    statuses,
                    prepend,
                    body_len,
                    body_crc,
                    folder,
                })
            }
            KIND_RECIPIENT => Record::Recipient {
                id: QueueId(r.u64()?),
                index: r.u32()?,
                status: r.status()?,
            },
            KIND_DONE => Record::Done {
                id: QueueId(r.u64()?),
            },
            KIND_ATTEMPT => Record::Attempt {
                id: QueueId(r.u64()?),
                attempts: r.u32()?,
                next_attempt: r.u64()?,
                errors: r.errors()?,
            },
            KIND_HOLD => Record::Hold {
                id: QueueId(r.u64()?),
                held: r.u8()? != 0,
            },
            KIND_DELAY_NOTIFIED => Record::DelayNotified {
                id: QueueId(r.u64()?),
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if !r.rest.is_empty() {
            return Err(DecodeError::BadField("trailing bytes"));
        }
        Ok(record)
    }
}

/// Reads a frame header: (payload length, crc).
pub fn frame_header(bytes: &[u8; FRAME_HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (len, crc)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn status(&mut self, s: &RcptStatus) {
        match s {
            RcptStatus::Pending => self.u8(0),
            RcptStatus::Delivered(d) => {
                self.u8(1);
                self.diagnostic(d);
            }
            RcptStatus::Failed(d) => {
                self.u8(2);
                self.diagnostic(d);
            }
        }
    }
    /// `flags:u8` (1: code, 2: enhanced code, 4: remote), then those present
    /// (`code:u16`, `class:u8 subject:u16 detail:u16`), `text`, and the
    /// remote's `host` and `ip` as text.
    fn diagnostic(&mut self, d: &Diagnostic) {
        let flags = u8::from(d.code.is_some())
            | u8::from(d.enhanced.is_some()) << 1
            | u8::from(d.remote.is_some()) << 2;
        self.u8(flags);
        if let Some(code) = d.code {
            self.u16(code);
        }
        if let Some(EnhancedCode(class, subject, detail)) = d.enhanced {
            self.u8(class);
            self.u16(subject);
            self.u16(detail);
        }
        self.str(&d.text);
        if let Some(remote) = &d.remote {
            self.str(&remote.host);
            self.str(&remote.ip.to_string());
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
    format: Format,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::BadField("utf-8"))
    }
    fn status(&mut self) -> Result<RcptStatus, DecodeError> {
        match self.u8()? {
            0 => Ok(RcptStatus::Pending),
            1 => Ok(RcptStatus::Delivered(self.diagnostic()?)),
            2 => Ok(RcptStatus::Failed(self.diagnostic()?)),
            _ => Err(DecodeError::BadField("status")),
        }
    }
    /// A [`Writer::diagnostic`]; in format 1, a text.
    fn diagnostic(&mut self) -> Result<Diagnostic, DecodeError> {
        if self.format == Format::V1 {
            return Ok(Diagnostic::from_v1_text(&self.str()?));
        }
        let flags = self.u8()?;
        if flags & !7 != 0 {
            return Err(DecodeError::BadField("diagnostic flags"));
        }
        let code = if flags & 1 != 0 {
            Some(self.u16()?)
        } else {
            None
        };
        let enhanced = if flags & 2 != 0 {
            Some(EnhancedCode(self.u8()?, self.u16()?, self.u16()?))
        } else {
            None
        };
        let text = self.str()?;
        let remote = if flags & 4 != 0 {
            let host = self.str()?;
            let ip: IpAddr = self
                .str()?
                .parse()
                .map_err(|_| DecodeError::BadField("remote ip"))?;
            Some(Remote { host, ip })
        } else {
            None
        };
        Ok(Diagnostic {
            code,
            enhanced,
            text,
            remote,
        })
    }
    /// The reasons of an [`Record::Attempt`]; in format 1, one text (none
    /// when empty).
    fn errors(&mut self) -> Result<Vec<Diagnostic>, DecodeError> {
        if self.format == Format::V1 {
            let text = self.str()?;
            return Ok(if text.is_empty() {
                Vec::new()
            } else {
                vec![Diagnostic::from_v1_text(&text)]
            });
        }
        let n = self.u32()? as usize;
        let mut errors = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            errors.push(self.diagnostic()?);
        }
        Ok(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_ends_prepend_gap_before_the_body() {
        for folder in [Folder::Inbox, Folder::Junk] {
            let Record::Message(mut m) = sample() else {
                unreachable!()
            };
            m.folder = folder;
            m.prepend = b"Received: from somewhere\r\n\tby here; now\r\n".to_vec();
            let frame = Record::Message(m.clone()).encode();
            // The body would start at frame.len().
            let end = frame.len() - m.prepend_gap() as usize;
            assert_eq!(
                &frame[end - m.prepend.len()..end],
                &m.prepend[..],
                "{folder:?}"
            );
        }
    }

    fn sample() -> Record {
        Record::Message(MessageRecord {
            id: QueueId(42),
            received_at: 1_800_000_000_000,
            envelope: Envelope {
                sender: Some(Address::parse("\"odd sender\"@b.example").unwrap()),
                recipients: vec![
                    Recipient {
                        original: "Me@example.org".into(),
                        route: Route::Local("me".into()),
                    },
                    Recipient {
                        original: "friend@[192.0.2.1]".into(),
                        route: Route::Remote(Address::parse("friend@[192.0.2.1]").unwrap()),
                    },
                ],
                eight_bit: true,
                smtputf8: false,
            },
            statuses: vec![
                RcptStatus::Pending,
                RcptStatus::Failed(
                    Diagnostic::reply(550, EnhancedCode(5, 1, 1), "no")
                        .at("mx.example", "192.0.2.1".parse().unwrap()),
                ),
            ],
            prepend: b"Received: x\r\n".to_vec(),
            body_len: 1234,
            body_crc: 99,
            folder: Folder::Inbox,
        })
    }

    #[test]
    fn the_folder_is_written_only_when_not_the_inbox() {
        let Record::Message(mut m) = sample() else {
            unreachable!()
        };
        let inbox = Record::Message(m.clone()).encode();
        m.folder = Folder::Junk;
        let junk = Record::Message(m.clone()).encode();
        assert_eq!(junk.len(), inbox.len() + 1, "one byte more, for Junk only");
        assert_eq!(
            round_trip(&Record::Message(m)),
            round_trip(&{
                let Record::Message(mut m) = sample() else {
                    unreachable!()
                };
                m.folder = Folder::Junk;
                Record::Message(m)
            })
        );
        let Ok(Record::Message(back)) = round_trip(&sample()) else {
            panic!("inbox record does not decode")
        };
        assert_eq!(
            back.folder,
            Folder::Inbox,
            "a record without the field is INBOX"
        );
    }

    fn round_trip(record: &Record) -> Result<Record, DecodeError> {
        let frame = record.encode();
        let header: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().unwrap();
        let (len, crc) = frame_header(&header);
        assert_eq!(len, frame.len() - FRAME_HEADER);
        Record::decode(&frame[FRAME_HEADER..], crc, Format::V2)
    }

    #[test]
    fn every_kind_round_trips() {
        let id = QueueId(7);
        for record in [
            sample(),
            Record::Recipient {
                id,
                index: 3,
                status: RcptStatus::Delivered(Diagnostic::note(
                    EnhancedCode(2, 0, 0),
                    "delivered to maildir /m",
                )),
            },
            Record::Done { id },
            Record::Attempt {
                id,
                attempts: 2,
                next_attempt: 5,
                errors: vec![
                    Diagnostic::from_remote(
                        "mx",
                        "2001:db8::1".parse().unwrap(),
                        451,
                        None,
                        "later",
                    ),
                    Diagnostic::note(EnhancedCode(4, 4, 1), "mx2[192.0.2.2]: refused"),
                ],
            },
            Record::Attempt {
                id,
                attempts: 0,
                next_attempt: 0,
                errors: Vec::new(),
            },
            Record::Hold { id, held: true },
            Record::DelayNotified { id },
        ] {
            assert_eq!(round_trip(&record).as_ref(), Ok(&record));
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let frame = sample().encode();
        let header: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().unwrap();
        let (_, crc) = frame_header(&header);
        for i in FRAME_HEADER..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            assert!(
                Record::decode(&bad[FRAME_HEADER..], crc, Format::V2).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn truncation_is_detected() {
        let frame = Record::Done { id: QueueId(1) }.encode();
        let short = &frame[FRAME_HEADER..frame.len() - 1];
        assert!(Record::decode(short, crc32fast::hash(short), Format::V2).is_err());
    }

    #[test]
    fn format_1_records_read_back_with_typed_diagnostics() {
        // KIND_RECIPIENT, id 7, index 1, failed with a text.
        let text = "mx.example[192.0.2.1] said: 550 5.1.1 No such user";
        let mut w = Writer(Vec::new());
        w.u8(KIND_RECIPIENT);
        w.u64(7);
        w.u32(1);
        w.u8(2);
        w.str(text);
        let payload = w.0;
        let record = Record::decode(&payload, crc32fast::hash(&payload), Format::V1).unwrap();
        let Record::Recipient {
            status: RcptStatus::Failed(d),
            ..
        } = record
        else {
            panic!("{record:?}")
        };
        assert_eq!(d.enhanced, Some(EnhancedCode(5, 1, 1)));
        assert_eq!(
            d.remote.as_ref().map(|r| r.host.as_str()),
            Some("mx.example")
        );
        assert_eq!(d.to_string(), text);
        // The same bytes are not a format 2 record.
        assert!(Record::decode(&payload, crc32fast::hash(&payload), Format::V2).is_err());
        assert_eq!(Format::of_magic(b"TERNLOG1"), Some(Format::V1));
        assert_eq!(Format::of_magic(SEGMENT_MAGIC), Some(Format::V2));
        assert_eq!(Format::of_magic(b"TERNLOG3"), None);
    }
}
