//! The control socket: how `tern queue …` and `sendmail` talk to the
//! running daemon. The daemon listens on a unix stream socket at
//! `<data_dir>/control.sock` (mode 0660: the daemon's user and group; the
//! data directory itself is 0750), [`server`]; the CLI connects with a
//! blocking [`client::Client`] and gets typed results, which [`display`]
//! prints for people; [`command`] is `tern queue …` on top of it.
//!
//! Under systemd (`RuntimeDirectory=tern`) the daemon also listens on the
//! submission socket [`SUBMIT_SOCKET`] (mode 0666 in a 0755 directory),
//! which serves `ping` and `submit` only: `sendmail` run by any local user
//! (a web application, a user's cron job), who cannot read tern.toml nor
//! enter the data directory, queues mail there. The daemon learns each
//! client's uid from the socket (SO_PEERCRED): a caller other than root and
//! the daemon's user or group is held to the sender rules (the daemon's
//! [`Daemon::submit`], which src/daemon.rs wires to the inbound side). On
//! both sockets a submitted message must have CRLF line ends, as on port 25.
//!
//! # Protocol
//!
//! Newline-delimited JSON ([`protocol`]): the client sends one request as one
//! line of JSON, the daemon answers with one line of JSON, and the client may
//! send the next request on the same connection. JSON escapes every control
//! character inside strings, so a line is always exactly one message, and both
//! sides are a few lines of serde. We chose it over a text protocol because
//! the answers are nested records (messages, recipients, remote replies with
//! arbitrary text) that a text protocol would need its own quoting for, and
//! because `tern queue list --json` then prints the daemon's own words.
//! `serde_json` is the one dependency this adds; serde was already in.
//!
//! ```text
//! → {"op":"hold","id":"18C4F0A2B3D41"}
//! ← {"ok":{"type":"done"}}
//! → {"op":"show","id":"18C4F0A2B3D42"}
//! ← {"error":{"kind":"not_found","message":"no message 18C4F0A2B3D42 in the queue"}}
//! ```
//!
//! Requests: `ping`, `list`, `show {id}`, `flush {id?}`, `hold {id}`,
//! `release {id}`, `delete {id, bounce}`, `submit`, `status` (`tern
//! status`) and `reload` (`tern reload`: the daemon re-reads its file and
//! answers `reloaded` with the summary, or `reload_refused` with the
//! mistake). Fields a side does not know are ignored, so either side can
//! grow optional fields.
//!
//! **`submit`** (sendmail): the request line announces a raw payload that
//! follows it on the connection,
//! `{"op":"submit","sender":"…","recipients":["…"],"size":1234}` and then
//! exactly 1234 octets of the message, 8-bit clean and never escaped, which the
//! daemon streams into a [`crate::queue::BodyBuffer`] and queues before
//! answering `{"ok":{"type":"queued","id":"…"}}`. So that an older daemon never
//! reads such a payload as requests, a request the daemon does not understand
//! is answered with `unsupported` and the connection is closed.
//!
//! # Limits
//!
//! A request line is at most [`protocol::MAX_REQUEST_LINE`] octets; each
//! connection runs in its own task, waits at most [`server::READ_TIMEOUT`] for
//! a request, and an operation that takes longer than
//! [`server::OPERATION_TIMEOUT`] is answered with `timeout` (it still
//! completes: operations run in their own task, so a durable spool write is
//! never cut in half). Bad input gets an error answer; it never takes the
//! daemon down.

pub mod client;
pub mod command;
pub mod daemon;
pub mod display;
pub mod protocol;
pub mod server;

use std::io;
use std::path::{Path, PathBuf};

pub use client::Client;
pub use daemon::{Daemon, Peer};
pub use protocol::{Failure, FailureKind, Reply, Request};
pub use server::ControlListener;

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The submission socket's file name inside the runtime directory.
pub const SUBMIT_SOCKET_NAME: &str = "submit.sock";

/// Where `sendmail` finds the submission socket when it cannot read the
/// config: systemd's `RuntimeDirectory=tern`. `TERN_SUBMIT_SOCKET` in the
/// environment names another (tests; a daemon run by hand).
pub const SUBMIT_SOCKET: &str = "/run/tern/submit.sock";

/// The submission socket `sendmail` uses when it cannot read the config.
pub fn submit_socket_path() -> PathBuf {
    std::env::var_os("TERN_SUBMIT_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SUBMIT_SOCKET))
}

/// Where the daemon whose data directory is `data_dir` listens.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// What went wrong on the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon answers: the socket file is missing or nobody listens on it.
    #[error("the tern daemon is not running (nothing answers on {})", .0.display())]
    NotRunning(PathBuf),
    /// At start-up: a daemon already answers on the socket.
    #[error("another tern daemon is already running (it answers on {})", .0.display())]
    AlreadyRunning(PathBuf),
    /// At start-up: something other than a socket is in the way.
    #[error("{} exists and is not a socket; remove it", .0.display())]
    NotASocket(PathBuf),
    #[error("control socket {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The other side sent something that is not the protocol.
    #[error("control protocol error: {0}")]
    Protocol(String),
    /// The daemon understood the request and refused or failed it.
    #[error("{0}")]
    Refused(Failure),
}

impl ControlError {
    fn io(path: &Path, error: io::Error) -> ControlError {
        ControlError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
