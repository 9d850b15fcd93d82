//! [`Daemon`]: what the control server asks of the rest of the running
//! daemon besides the queue's [`crate::queue::admin::Admin`]: the
//! configuration in force, queueing a message that `sendmail` hands over,
//! and a reload. The daemon (src/daemon.rs) implements it on top of the
//! inbound side's submitter and its reload; so the control server depends
//! on neither, and its tests can answer for a daemon of their own.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::queue::{Body, QueueId};

use super::protocol::Failure;

/// Who is on the other end of a control socket, as the kernel tells
/// (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `None` only if the kernel would not say.
    pub uid: Option<u32>,
    /// Root, or the daemon's own user or group (and everyone on the
    /// administration socket, which only they can open): no sender rules.
    pub privileged: bool,
}

/// The running daemon, as the control server sees it.
pub trait Daemon: Send + Sync + 'static {
    /// The configuration in force.
    fn config(&self) -> Arc<Config>;

    /// Where a large submitted message is spilled while it arrives.
    fn tmp_dir(&self) -> PathBuf;

    /// Queues `body` (a whole message, CRLF line ends) from `peer` for
    /// `recipients` (as sendmail users write them; `sender` empty for
    /// `<>`), or says why not with the answer the client gets.
    fn submit(
        &self,
        sender: String,
        recipients: Vec<String>,
        body: Body,
        peer: Peer,
    ) -> impl Future<Output = Result<QueueId, Failure>> + Send;

    /// Re-reads the configuration file, certificates and keys and puts
    /// them in force: the new configuration's one-line summary, or the
    /// mistake that kept the old one in force.
    fn reload(&self) -> impl Future<Output = Result<String, String>> + Send;
}
