//! The daemon's end of the control socket: [`ControlListener::bind`] claims
//! `<data_dir>/control.sock` at start-up (a stale file left by a crash is
//! removed; a daemon that still answers there stops us), and
//! [`ControlListener::serve`] answers requests with the queue's [`Admin`]
//! and the running [`Daemon`] until shutdown, one task per connection, each
//! bounded in time.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::queue::admin::Admin;
use crate::queue::listing::{MessageDetails, MessageSummary};
use crate::queue::SpoolError;
use crate::queue::{BodyBuffer, BODY_MEMORY_LIMIT};
use crate::smtp::data::ChunkChecker;

use super::daemon::{Daemon, Peer};
use super::protocol::{
    decode_request, encode_response, Failure, FailureKind, Reply, Request, Response,
    MAX_REQUEST_LINE,
};
use super::ControlError;

/// How long a connection may take to send a (next) request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an operation may run before the client is told `timeout`.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing an answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at the same time; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// How long connections in progress get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the clients of a socket may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: the queue's administration and submission
    /// (`<data_dir>/control.sock`, mode 0660: root and group tern).
    Admin,
    /// `ping` and `submit` only, for every local user: `sendmail` run by
    /// a web application or a user's cron job (mode 0666); and `reload` for
    /// root and the daemon's own user or group.
    Submit,
}

/// The bound control socket. Dropping it removes the socket file (if it is
/// still the one we created).
#[derive(Debug)]
pub struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
    scope: Scope,
    /// Device and inode of our socket file.
    identity: (u64, u64),
}

impl ControlListener {
    /// Binds the administration socket at `path` with mode 0660. Must run
    /// inside the tokio runtime.
    pub fn bind(path: &Path) -> Result<ControlListener, ControlError> {
        Self::bind_scoped(path, Scope::Admin)
    }

    /// Binds the submission socket at `path` with mode 0666: any local user
    /// may queue mail there, nothing else.
    pub fn bind_submit(path: &Path) -> Result<ControlListener, ControlError> {
        Self::bind_scoped(path, Scope::Submit)
    }

    fn bind_scoped(path: &Path, scope: Scope) -> Result<ControlListener, ControlError> {
        clear_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
            // Another daemon bound it between our check and our bind.
            io::ErrorKind::AddrInUse => ControlError::AlreadyRunning(path.to_path_buf()),
            _ => ControlError::io(path, e),
        })?;
        // For the admin socket, the data directory (0750) keeps others out
        // even before this.
        let mode = match scope {
            Scope::Admin => 0o660,
            Scope::Submit => 0o666,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| ControlError::io(path, e))?;
        let meta = std::fs::metadata(path).map_err(|e| ControlError::io(path, e))?;
        Ok(ControlListener {
            listener,
            path: path.to_path_buf(),
            scope,
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers requests until `shutdown` turns true; then closes the socket,
    /// removes its file, and gives connections in progress a moment.
    pub async fn serve<D: Daemon>(
        self,
        admin: Arc<Admin>,
        daemon: Arc<D>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
            match accepted {
                Ok((stream, _)) => {
                    let admin = admin.clone();
                    let daemon = daemon.clone();
                    let scope = self.scope;
                    connections.spawn(async move {
                        connection(stream, admin, daemon, scope).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    log::warn!("control: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Close the socket and remove its file at once: from now on a client
        // is told that no daemon runs, instead of waiting in the backlog.
        let path = self.path.clone();
        drop(self);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            connections.abort_all();
        }
        log::debug!("control: stopped listening on {}", path.display());
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes `path` free for a new socket: nothing there, or a socket nobody
/// answers on (left by a daemon that was killed), which is removed.
fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ControlError::io(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ControlError::AlreadyRunning(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("control: removing stale socket {}", path.display());
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ControlError::io(path, e)),
            }
        }
        Err(e) => Err(ControlError::io(path, e)),
    }
}

/// Why no request line could be read.
enum ReadError {
    /// The line is longer than [`MAX_REQUEST_LINE`].
    TooLong,
    Io,
}

/// Reads one line (up to and including `\n`); `None` at a clean end of input.
async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_REQUEST_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| ReadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        // Cut off by the limit, or the client stopped mid-line.
        return Err(if line.len() > MAX_REQUEST_LINE {
            ReadError::TooLong
        } else {
            ReadError::Io
        });
    }
    Ok(Some(line))
}

/// Serves one client: requests in sequence until it closes, stalls, or sends
/// something that is not a request we know.
async fn connection<D: Daemon>(
    stream: UnixStream,
    admin: Arc<Admin>,
    daemon: Arc<D>,
    scope: Scope,
) {
    let cred = stream.peer_cred().ok();
    let uid = cred.map(|c| c.uid());
    let peer = peer(scope, cred);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let line = match tokio::time::timeout(READ_TIMEOUT, read_line(&mut reader)).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(ReadError::Io)) => return,
            Ok(Err(ReadError::TooLong)) => {
                let failure = Failure::new(
                    FailureKind::BadRequest,
                    format!("request line longer than {MAX_REQUEST_LINE} octets"),
                );
                answer(&mut write, &Response::Error(failure)).await;
                return;
            }
            Err(_) => {
                log::debug!("control: client silent for {READ_TIMEOUT:?}; closing");
                return;
            }
        };
        let request = match decode_request(&line) {
            Ok(r) => r,
            Err(failure) => {
                log::warn!("control: refused request: {}", failure.message);
                // Close: what follows may be a payload we cannot interpret.
                answer(&mut write, &Response::Error(failure)).await;
                return;
            }
        };
        let allowed = match request {
            Request::Ping | Request::Submit { .. } => true,
            // `tern reload` by root or the daemon's user when tern.toml
            // does not parse (so it cannot name the data directory).
            Request::Reload => peer.privileged,
            _ => scope == Scope::Admin,
        };
        if !allowed {
            log::warn!(
                "control: uid {uid:?} asked the submission socket for more than ping/submit"
            );
            let failure = Failure::new(
                FailureKind::NotAllowed,
                "this socket only queues mail; queue administration is for root and group tern",
            );
            answer(&mut write, &Response::Error(failure)).await;
            return;
        }
        if let Request::Submit {
            sender,
            recipients,
            size,
        } = request
        {
            // The payload follows the line; after a refusal the connection
            // closes, since what follows cannot be read as requests.
            let result = submit(&mut reader, &*daemon, sender, recipients, size, peer).await;
            let refused = result.is_err();
            if !answer(&mut write, &Response::from(result)).await || refused {
                return;
            }
            continue;
        }
        let response = Response::from(run(request, admin.clone(), daemon.clone()).await);
        if !answer(&mut write, &response).await {
            return;
        }
    }
}

/// Who is on the other end. The administration socket's callers are root
/// and group tern (its mode); on the submission socket, root and the
/// daemon's own user and group are too, and everyone else is held to the
/// sender rules.
fn peer(scope: Scope, cred: Option<tokio::net::unix::UCred>) -> Peer {
    let privileged = match scope {
        Scope::Admin => true,
        Scope::Submit => cred.is_some_and(|c| {
            c.uid() == 0
                || c.uid() == nix::unistd::geteuid().as_raw()
                || c.gid() == nix::unistd::getegid().as_raw()
        }),
    };
    Peer {
        uid: cred.map(|c| c.uid()),
        privileged,
    }
}

/// Reads a submitted message (`size` octets) and queues it. Its lines obey
/// the rules of SMTP (RFC 5321 §2.3.8): a bare CR or LF is refused, as on
/// port 25 (`sendmail` sends CRLF line ends).
async fn submit<D: Daemon>(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    daemon: &D,
    sender: String,
    recipients: Vec<String>,
    size: u64,
    peer: Peer,
) -> Result<Reply, Failure> {
    let uid = peer.uid;
    let limit = daemon.config().limits.message_size;
    if size > limit {
        return Err(Failure::new(
            FailureKind::TooBig,
            format!("the message has {size} octets; the limit is {limit} (limits.message_size)"),
        ));
    }
    let mut buffer = BodyBuffer::new(&daemon.tmp_dir(), BODY_MEMORY_LIMIT);
    let mut left = size;
    let mut chunk = vec![0u8; 64 << 10];
    let mut lines = ChunkChecker::default();
    let io = |e: &dyn std::fmt::Display| {
        Failure::new(FailureKind::Io, format!("reading the message: {e}"))
    };
    while left > 0 {
        let want = left.min(chunk.len() as u64) as usize;
        let n = match tokio::time::timeout(READ_TIMEOUT, reader.read(&mut chunk[..want])).await {
            Ok(Ok(0)) => return Err(io(&"the client stopped before the end of the message")),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(io(&e)),
            Err(_) => return Err(io(&"the client stalled")),
        };
        lines.scan(&chunk[..n]);
        buffer.write(&chunk[..n]).map_err(|e| io(&e))?;
        left -= n as u64;
    }
    if lines.has_bare(true) {
        log::warn!("control: sendmail submission from uid {uid:?} refused: bare CR or LF");
        return Err(Failure::new(
            FailureKind::BadMessage,
            "the message has a bare CR or LF: every line must end in CRLF (RFC 5321 §2.3.8)",
        ));
    }
    buffer.ensure_final_crlf().map_err(|e| io(&e))?;
    let body = buffer.take().map_err(|e| io(&e))?;
    match daemon.submit(sender, recipients, body, peer).await {
        Ok(id) => Ok(Reply::Queued { id }),
        Err(failure) => {
            log::warn!("control: sendmail submission from uid {uid:?} refused: {failure}");
            Err(failure)
        }
    }
}

/// Writes one answer; false when the client is gone.
async fn answer(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> bool {
    let bytes = encode_response(response);
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await,
        Ok(Ok(()))
    )
}

/// Runs `request` in its own task (so a timeout never cuts a spool write in
/// half) and waits for it at most [`OPERATION_TIMEOUT`].
async fn run<D: Daemon>(
    request: Request,
    admin: Arc<Admin>,
    daemon: Arc<D>,
) -> Result<Reply, Failure> {
    let name = format!("{request:?}");
    let task = tokio::spawn(handle(request, admin, daemon));
    match tokio::time::timeout(OPERATION_TIMEOUT, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            log::error!("control: {name} failed: {e}");
            Err(Failure::new(
                FailureKind::Internal,
                format!("the operation failed inside the daemon: {e}"),
            ))
        }
        Err(_) => Err(Failure::new(
            FailureKind::Timeout,
            format!(
                "the daemon did not finish within {}s; it may still complete",
                OPERATION_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Does what `request` asks, under the configuration in force.
async fn handle<D: Daemon>(
    request: Request,
    admin: Arc<Admin>,
    daemon: Arc<D>,
) -> Result<Reply, Failure> {
    let config: Arc<Config> = daemon.config();
    let spool = admin.spool();
    let failed = |e: SpoolError| Failure::from(&e);
    match request {
        // Handled by `connection`, which reads its payload.
        Request::Submit { .. } => Err(Failure::new(
            FailureKind::BadRequest,
            "submit without its payload",
        )),
        Request::Ping => Ok(Reply::Pong {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: config.hostname.clone(),
            message_size: config.limits.message_size,
        }),
        Request::List => Ok(Reply::List {
            messages: spool.entries().iter().map(MessageSummary::of).collect(),
        }),
        Request::Show { id } => {
            let entry = spool
                .entry(id)
                .ok_or_else(|| failed(SpoolError::NotFound(id)))?;
            let reader = spool.clone();
            let loaded = tokio::task::spawn_blocking(move || reader.load(id))
                .await
                .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
            let details = match loaded {
                Ok(loaded) => MessageDetails::of(&loaded.entry, Ok(&loaded.content)),
                Err(SpoolError::NotFound(_)) => return Err(failed(SpoolError::NotFound(id))),
                Err(e) => MessageDetails::of(&entry, Err(e.to_string())),
            };
            Ok(Reply::Show {
                message: Box::new(details),
            })
        }
        Request::Flush { id } => {
            let held = match id {
                Some(id) => {
                    let entry = spool
                        .entry(id)
                        .ok_or_else(|| failed(SpoolError::NotFound(id)))?;
                    usize::from(entry.held)
                }
                None => spool.entries().iter().filter(|e| e.held).count(),
            };
            let scheduled = admin.flush(id).await.map_err(failed)?;
            log::info!(
                "control: flush {}: {scheduled} message(s) scheduled now",
                id.map_or("all".to_string(), |id| id.to_string())
            );
            Ok(Reply::Flushed { scheduled, held })
        }
        Request::Hold { id } => {
            admin.hold(id).await.map_err(failed)?;
            log::info!("queue_id={id} held by the administrator");
            Ok(Reply::Done)
        }
        Request::Release { id } => {
            admin.release(id).await.map_err(failed)?;
            log::info!("queue_id={id} released by the administrator");
            Ok(Reply::Done)
        }
        Request::Delete { id, bounce } => {
            admin.delete(id, bounce).await.map_err(failed)?;
            Ok(Reply::Done)
        }
        Request::Status => {
            let messages: Vec<MessageSummary> =
                spool.entries().iter().map(MessageSummary::of).collect();
            let status =
                tokio::task::spawn_blocking(move || crate::status::snapshot(&config, &messages))
                    .await
                    .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
            Ok(Reply::Status {
                status: Box::new(status),
            })
        }
        Request::Reload => match daemon.reload().await {
            Ok(summary) => Ok(Reply::Reloaded { summary }),
            Err(mistake) => Err(Failure::new(FailureKind::ReloadRefused, mistake)),
        },
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
