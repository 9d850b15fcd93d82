//! The CLI's end of the control socket: a blocking [`Client`] (the `tern`
//! command needs no async runtime) with one typed method per request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::queue::listing::{MessageDetails, MessageSummary};
use crate::queue::QueueId;

use super::protocol::{
    decode_response, encode_request, Reply, Request, Response, MAX_RESPONSE_LINE,
};
use super::server::OPERATION_TIMEOUT;
use super::ControlError;

/// The answer to `ping`: the daemon's process and what `sendmail` needs
/// when it cannot read the config itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub hostname: String,
    /// `limits.message_size`.
    pub message_size: u64,
}

/// A connection to the running daemon.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the daemon listening at `path`;
    /// [`ControlError::NotRunning`] when none does.
    pub fn connect(path: &Path) -> Result<Client, ControlError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning(path.to_path_buf())
            }
            _ => ControlError::io(path, e),
        })?;
        // Longer than the daemon's own limit, so its `timeout` answer arrives.
        let patience = OPERATION_TIMEOUT + Duration::from_secs(30);
        stream
            .set_read_timeout(Some(patience))
            .and_then(|()| stream.set_write_timeout(Some(patience)))
            .map_err(|e| ControlError::io(path, e))?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
        })
    }

    /// Sends `request` and waits for the answer. A refusal by the daemon is
    /// [`ControlError::Refused`].
    pub fn request(&mut self, request: &Request) -> Result<Reply, ControlError> {
        let io = |e| ControlError::io(&self.path, e);
        self.reader
            .get_mut()
            .write_all(&encode_request(request))
            .map_err(io)?;
        self.read_answer()
    }

    /// Reads one answer line.
    fn read_answer(&mut self) -> Result<Reply, ControlError> {
        let io = |e| ControlError::io(&self.path, e);
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_RESPONSE_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(io)?;
        if !line.ends_with(b"\n") {
            return Err(ControlError::Protocol(if line.is_empty() {
                "the daemon closed the connection without answering".into()
            } else {
                "the answer was cut short".into()
            }));
        }
        match decode_response(&line) {
            Ok(Response::Ok(reply)) => Ok(reply),
            Ok(Response::Error(failure)) => Err(ControlError::Refused(failure)),
            Err(e) => Err(ControlError::Protocol(format!("unreadable answer: {e}"))),
        }
    }

    /// What the daemon says of itself.
    pub fn ping(&mut self) -> Result<DaemonInfo, ControlError> {
        match self.request(&Request::Ping)? {
            Reply::Pong {
                pid,
                version,
                hostname,
                message_size,
            } => Ok(DaemonInfo {
                pid,
                version,
                hostname,
                message_size,
            }),
            other => Err(unexpected("ping", &other)),
        }
    }

    /// Every queued message, oldest first.
    pub fn list(&mut self) -> Result<Vec<MessageSummary>, ControlError> {
        match self.request(&Request::List)? {
            Reply::List { messages } => Ok(messages),
            other => Err(unexpected("list", &other)),
        }
    }

    /// One message in detail.
    pub fn show(&mut self, id: QueueId) -> Result<MessageDetails, ControlError> {
        match self.request(&Request::Show { id })? {
            Reply::Show { message } => Ok(*message),
            other => Err(unexpected("show", &other)),
        }
    }

    /// Retries `id` (or every deferred message) now; returns (scheduled,
    /// held), the number of messages left alone because they are held.
    pub fn flush(&mut self, id: Option<QueueId>) -> Result<(usize, usize), ControlError> {
        match self.request(&Request::Flush { id })? {
            Reply::Flushed { scheduled, held } => Ok((scheduled, held)),
            other => Err(unexpected("flush", &other)),
        }
    }

    /// Stops delivery attempts of `id`.
    pub fn hold(&mut self, id: QueueId) -> Result<(), ControlError> {
        self.done("hold", &Request::Hold { id })
    }

    /// Lets `id` be delivered again, at once.
    pub fn release(&mut self, id: QueueId) -> Result<(), ControlError> {
        self.done("release", &Request::Release { id })
    }

    /// Removes `id`; with `bounce`, its sender is told.
    pub fn delete(&mut self, id: QueueId, bounce: bool) -> Result<(), ControlError> {
        self.done("delete", &Request::Delete { id, bounce })
    }

    /// Hands a message to the daemon (local `sendmail`); returns its queue id
    /// once it is durable.
    pub fn submit(
        &mut self,
        sender: &str,
        recipients: &[String],
        content: &[u8],
    ) -> Result<QueueId, ControlError> {
        let request = Request::Submit {
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            size: content.len() as u64,
        };
        let io = |e| ControlError::io(&self.path, e);
        let stream = self.reader.get_mut();
        stream.write_all(&encode_request(&request)).map_err(io)?;
        // The daemon may refuse before reading the payload (too big) and
        // close: its answer still tells why.
        let _ = stream.write_all(content);
        match self.read_answer()? {
            Reply::Queued { id } => Ok(id),
            other => Err(unexpected("submit", &other)),
        }
    }

    /// Asks the daemon to re-read its configuration: the summary of the
    /// new one, or [`ControlError::Refused`] with the mistake.
    pub fn reload(&mut self) -> Result<String, ControlError> {
        match self.request(&Request::Reload)? {
            Reply::Reloaded { summary } => Ok(summary),
            other => Err(unexpected("reload", &other)),
        }
    }

    fn done(&mut self, name: &str, request: &Request) -> Result<(), ControlError> {
        match self.request(request)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }
}

fn unexpected(request: &str, reply: &Reply) -> ControlError {
    let kind = match reply {
        Reply::Pong { .. } => "pong",
        Reply::List { .. } => "list",
        Reply::Show { .. } => "show",
        Reply::Flushed { .. } => "flushed",
        Reply::Queued { .. } => "queued",
        Reply::Done => "done",
        Reply::Status { .. } => "status",
        Reply::Reloaded { .. } => "reloaded",
    };
    ControlError::Protocol(format!("the daemon answered {request} with {kind}"))
}
