//! The messages of the control socket and their encoding (see the module doc
//! of [`crate::control`] for the conversation): [`Request`] from the CLI,
//! [`Response`] from the daemon, each one line of JSON. Pure functions, no
//! I/O, so both ends and the tests share them.

use serde::{Deserialize, Serialize};

use crate::queue::listing::{MessageDetails, MessageSummary};
use crate::queue::{QueueId, SpoolError};

/// The longest request line the daemon reads (a `submit` puts its message in
/// a payload after the line, never in it).
pub const MAX_REQUEST_LINE: usize = 64 << 10;
/// The longest answer line the client reads (a list of 100,000 messages is
/// some tens of megabytes).
pub const MAX_RESPONSE_LINE: usize = 512 << 20;

/// What the CLI asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is a daemon there? Answered with [`Reply::Pong`].
    Ping,
    /// Every queued message: [`Reply::List`].
    List,
    /// One message in detail: [`Reply::Show`].
    Show { id: QueueId },
    /// Retry one deferred message, or all of them, now: [`Reply::Flushed`].
    Flush {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<QueueId>,
    },
    /// No delivery attempts until released: [`Reply::Done`].
    Hold { id: QueueId },
    /// Deliverable again, at once: [`Reply::Done`].
    Release { id: QueueId },
    /// Remove from the queue; with `bounce`, tell the sender: [`Reply::Done`].
    Delete {
        id: QueueId,
        #[serde(default)]
        bounce: bool,
    },
    /// Queue a message from local `sendmail`; exactly `size` octets of it
    /// follow the request line: [`Reply::Queued`].
    Submit {
        /// The envelope sender; empty for the null sender `<>`.
        sender: String,
        recipients: Vec<String>,
        size: u64,
    },
    /// The one screen of `tern status`: [`Reply::Status`].
    Status,
    /// Re-read the configuration file, the certificates and the DKIM keys
    /// (as SIGHUP does) and say how it went: [`Reply::Reloaded`], or
    /// [`FailureKind::ReloadRefused`] with the mistake.
    Reload,
}

/// Every `op` this daemon knows; any other is [`FailureKind::Unsupported`].
const KNOWN_OPS: &[&str] = &[
    "ping", "list", "show", "flush", "hold", "release", "delete", "submit", "status", "reload",
];

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        pid: u32,
        version: String,
        /// What `sendmail` needs when it cannot read the config itself.
        #[serde(default)]
        hostname: String,
        #[serde(default)]
        message_size: u64,
    },
    List {
        messages: Vec<MessageSummary>,
    },
    Show {
        message: Box<MessageDetails>,
    },
    Flushed {
        /// Messages whose next attempt is now.
        scheduled: usize,
        /// Messages left alone because they are held.
        held: usize,
    },
    Done,
    /// A submitted message is durable under this id.
    Queued {
        id: QueueId,
    },
    Status {
        status: Box<crate::status::StatusReport>,
    },
    /// The new configuration is in force.
    Reloaded {
        /// `tern config check`'s one line about it.
        summary: String,
    },
}

/// Why the daemon did not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request line is not a request (bad JSON, missing field, bad id).
    BadRequest,
    /// A well-formed request this daemon does not know (an older daemon).
    Unsupported,
    /// No such message in the queue.
    NotFound,
    /// The message's bytes on disk fail their checksum.
    Damaged,
    /// The spool could not be read or written.
    Io,
    /// The operation did not finish in time (it may still complete).
    Timeout,
    /// A submitted message names a recipient at our domains nobody has.
    NoSuchUser,
    /// A submitted address is not valid syntax.
    BadAddress,
    /// A submitted message is larger than `limits.message_size`.
    TooBig,
    /// A submitted message breaks the rules for its content: a bare CR or
    /// LF, no From:, two From: fields, an unreadable From: or Sender:.
    BadMessage,
    /// The caller may not send as that envelope sender or From: (sender
    /// rules, `[local_senders]`).
    SenderRefused,
    /// A submitted message has more than `limits.recipients` recipients.
    TooManyRecipients,
    /// The caller queued `limits.local_messages_per_hour` messages in the
    /// last hour; later is fine.
    RateLimited,
    /// The spam filter refused a submitted message (`[spam]
    /// scan_authenticated`).
    Spam,
    /// The spam filter said later, or could not be asked.
    SpamDeferred,
    /// This socket does not serve that request (the submission socket
    /// only takes `ping` and `submit`).
    NotAllowed,
    /// The new configuration (or a certificate or key it names) did not
    /// load; the one in force stays.
    ReloadRefused,
    /// Anything else (a bug).
    Internal,
    /// A kind a newer daemon sends that this client does not know.
    #[serde(other)]
    Other,
}

/// An error answer: its kind, and a sentence for the administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// Which answer each spool error earns.
impl From<&SpoolError> for Failure {
    fn from(e: &SpoolError) -> Failure {
        let kind = match e {
            SpoolError::NotFound(_) => FailureKind::NotFound,
            SpoolError::Damaged(_) => FailureKind::Damaged,
            SpoolError::Io(_) => FailureKind::Io,
        };
        Failure::new(kind, e.to_string())
    }
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error(Failure),
}

impl From<Result<Reply, Failure>> for Response {
    fn from(r: Result<Reply, Failure>) -> Response {
        match r {
            Ok(reply) => Response::Ok(reply),
            Err(failure) => Response::Error(failure),
        }
    }
}

impl From<Response> for Result<Reply, Failure> {
    fn from(r: Response) -> Result<Reply, Failure> {
        match r {
            Response::Ok(reply) => Ok(reply),
            Response::Error(failure) => Err(failure),
        }
    }
}

/// `value` as one line of JSON, newline included.
fn line<T: Serialize>(value: &T) -> Vec<u8> {
    // These plain data types always serialize (string keys only); should one
    // ever not, the peer still gets a well-formed answer.
    let mut out = serde_json::to_vec(value).unwrap_or_else(|e| {
        log::error!("control: cannot encode a message: {e}");
        br#"{"error":{"kind":"internal","message":"cannot encode the answer"}}"#.to_vec()
    });
    out.push(b'\n');
    out
}

/// The request line for `request`.
pub fn encode_request(request: &Request) -> Vec<u8> {
    line(request)
}

/// The answer line for `response`.
pub fn encode_response(response: &Response) -> Vec<u8> {
    line(response)
}

/// Reads a request line (with or without its newline). An `op` this daemon
/// does not know is [`FailureKind::Unsupported`], anything else that does not
/// parse is [`FailureKind::BadRequest`].
pub fn decode_request(line: &[u8]) -> Result<Request, Failure> {
    let bad = |e: &dyn std::fmt::Display| Failure::new(FailureKind::BadRequest, e.to_string());
    let value: serde_json::Value = serde_json::from_slice(trim_newline(line))
        .map_err(|e| bad(&format!("not a JSON request: {e}")))?;
    let op = value
        .get("op")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad(&"the request has no \"op\""))?
        .to_string();
    if !KNOWN_OPS.contains(&op.as_str()) {
        let shown: String = op.chars().take(40).collect();
        return Err(Failure::new(
            FailureKind::Unsupported,
            format!("this daemon does not support {shown:?} (is it older than this tern command?)"),
        ));
    }
    serde_json::from_value(value).map_err(|e| bad(&format!("bad {op} request: {e}")))
}

/// Reads an answer line.
pub fn decode_response(line: &[u8]) -> Result<Response, serde_json::Error> {
    serde_json::from_slice(trim_newline(line))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::listing::{Headers, RecipientState, RecipientView};

    fn id() -> QueueId {
        QueueId(0x18C4F0A2B3D41)
    }

    fn summary() -> MessageSummary {
        MessageSummary {
            id: id(),
            received_at: 1_800_000_000_000,
            size: 1234,
            sender: "bob@example.org".into(),
            pending: vec!["someone@remote.example".into()],
            recipients: 2,
            attempts: 3,
            next_attempt: 1_800_000_300_000,
            held: false,
            last_errors: vec![crate::queue::Diagnostic::from_v1_text(
                "451 4.4.1 \"quoted\"\r\nand a new line",
            )],
        }
    }

    #[test]
    fn requests_are_one_line_of_json() {
        let cases = [
            (Request::Ping, r#"{"op":"ping"}"#),
            (Request::List, r#"{"op":"list"}"#),
            (
                Request::Show { id: id() },
                r#"{"op":"show","id":"18C4F0A2B3D41"}"#,
            ),
            (Request::Flush { id: None }, r#"{"op":"flush"}"#),
            (Request::Status, r#"{"op":"status"}"#),
            (Request::Reload, r#"{"op":"reload"}"#),
            (
                Request::Flush { id: Some(id()) },
                r#"{"op":"flush","id":"18C4F0A2B3D41"}"#,
            ),
            (
                Request::Hold { id: id() },
                r#"{"op":"hold","id":"18C4F0A2B3D41"}"#,
            ),
            (
                Request::Release { id: id() },
                r#"{"op":"release","id":"18C4F0A2B3D41"}"#,
            ),
            (
                Request::Delete {
                    id: id(),
                    bounce: true,
                },
                r#"{"op":"delete","id":"18C4F0A2B3D41","bounce":true}"#,
            ),
        ];
        for (request, text) in cases {
            let encoded = encode_request(&request);
            assert_eq!(encoded, format!("{text}\n").as_bytes());
            assert_eq!(decode_request(&encoded), Ok(request));
        }
    }

    #[test]
    fn optional_and_unknown_fields_are_tolerated() {
        assert_eq!(
            decode_request(br#"{"op":"delete","id":"abc","extra":[1,2]}"#),
            Ok(Request::Delete {
                id: QueueId(0xABC),
                bounce: false
            })
        );
        assert_eq!(decode_request(b"{\"op\":\"list\"}\r\n"), Ok(Request::List));
    }

    #[test]
    fn bad_requests_are_named() {
        for (line, kind, says) in [
            (
                &b"hold 123"[..],
                FailureKind::BadRequest,
                "not a JSON request",
            ),
            (b"", FailureKind::BadRequest, "not a JSON request"),
            (b"[1,2]", FailureKind::BadRequest, "no \"op\""),
            (br#"{"op":7}"#, FailureKind::BadRequest, "no \"op\""),
            (
                br#"{"op":"hold"}"#,
                FailureKind::BadRequest,
                "missing field `id`",
            ),
            (
                br#"{"op":"hold","id":"xyz"}"#,
                FailureKind::BadRequest,
                "not a queue id",
            ),
            (
                br#"{"op":"frobnicate","size":10}"#,
                FailureKind::Unsupported,
                "does not support \"frobnicate\"",
            ),
            (b"\xff\xfe", FailureKind::BadRequest, "not a JSON request"),
        ] {
            let failure = decode_request(line).unwrap_err();
            assert_eq!(failure.kind, kind, "{line:?}");
            assert!(
                failure.message.contains(says),
                "{line:?}: {}",
                failure.message
            );
        }
    }

    #[test]
    fn responses_round_trip_and_stay_on_one_line() {
        let details = MessageDetails {
            summary: summary(),
            recipients: vec![RecipientView {
                address: "someone@remote.example".into(),
                route: "remote someone@remote.example".into(),
                state: RecipientState::Failed,
                detail: Some(crate::queue::Diagnostic::from_v1_text(
                    "mx[192.0.2.1] said: 550 5.1.1 no\r\n",
                )),
            }],
            eight_bit: true,
            smtputf8: false,
            delay_notified: false,
            headers: Headers::Text("Subject: caf\u{e9}\r\nFrom: x\r\n".into()),
        };
        for response in [
            Response::Ok(Reply::Pong {
                pid: 7,
                version: "0.1.0".into(),
                hostname: "mx.example.org".into(),
                message_size: 1 << 20,
            }),
            Response::Ok(Reply::List {
                messages: vec![summary(), summary()],
            }),
            Response::Ok(Reply::Show {
                message: Box::new(details),
            }),
            Response::Ok(Reply::Flushed {
                scheduled: 2,
                held: 1,
            }),
            Response::Ok(Reply::Done),
            Response::Error(Failure::new(FailureKind::NotFound, "no message X")),
        ] {
            let encoded = encode_response(&response);
            assert_eq!(encoded.iter().filter(|&&b| b == b'\n').count(), 1);
            assert!(encoded.ends_with(b"\n"));
            assert_eq!(decode_response(&encoded).unwrap(), response);
        }
        assert_eq!(
            encode_response(&Response::Ok(Reply::Done)),
            b"{\"ok\":{\"type\":\"done\"}}\n"
        );
    }

    #[test]
    fn an_unknown_failure_kind_still_decodes() {
        let response =
            decode_response(br#"{"error":{"kind":"quota","message":"too much"}}"#).unwrap();
        assert_eq!(
            response,
            Response::Error(Failure::new(FailureKind::Other, "too much"))
        );
    }

    #[test]
    fn spool_errors_become_failures() {
        let f = Failure::from(&SpoolError::NotFound(id()));
        assert_eq!(f.kind, FailureKind::NotFound);
        assert_eq!(f.message, "no message 18C4F0A2B3D41 in the queue");
        let f = Failure::from(&SpoolError::Damaged(id()));
        assert_eq!(f.kind, FailureKind::Damaged);
    }
}
