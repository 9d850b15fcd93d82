//! The delivery-agent contract: what the scheduler asks of whoever carries a
//! message the last step (as chasquid's courier does). Local delivery
//! (Maildir) and the outbound relay both implement [`Agent`]; `daemon.rs`
//! hands them to the [`super::scheduler::Scheduler`], which routes each
//! pending recipient to one of them by its [`crate::smtp::Route`]. The queue
//! imports neither.
//!
//! An agent gets a whole batch (every pending recipient of one message that
//! it serves) in one call, so it can share work across them: one blocking
//! task and group-committed filesystem flushes for Maildirs, one SMTP transaction per
//! destination domain for the relay.

use std::sync::Arc;

use crate::BoxFuture;

use super::diagnostic::Diagnostic;
use super::spool::Loaded;

/// What one delivery attempt did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the diagnostic says where, or what the server answered.
    Delivered(Diagnostic),
    /// Will never work (5xx, a user gone): the sender gets a bounce.
    Failed(Diagnostic),
    /// Did not work now (4xx, timeouts, a full disk): tried again later.
    Deferred(Diagnostic),
}

impl Outcome {
    /// The diagnostic, whatever the verdict.
    pub fn diagnostic(&self) -> &Diagnostic {
        match self {
            Outcome::Delivered(d) | Outcome::Failed(d) | Outcome::Deferred(d) => d,
        }
    }
}

/// Carries queued messages to their recipients.
pub trait Agent: Send + Sync + 'static {
    /// Attempts delivery of `message` to its recipients at `recipients`
    /// (indices into its envelope; all pending, all routed to this agent).
    /// Returns one outcome per recipient, in any order; a recipient left out
    /// is deferred. Must not block the runtime: file-system work belongs on a
    /// blocking thread (a whole batch on one).
    fn deliver<'a>(
        &'a self,
        message: Arc<Loaded>,
        recipients: Vec<usize>,
    ) -> BoxFuture<'a, Vec<(usize, Outcome)>>;

    /// True when redoing a delivery after a crash finds the earlier copy
    /// and makes no second one (a Maildir file whose name is fixed per
    /// message and recipient). Then the spool records the agent's
    /// deliveries without a flush of their own: they ride on the next one.
    fn redo_is_harmless(&self) -> bool {
        false
    }
}
