//! The durable queue: everything between "the client sent a message" and "it
//! is delivered, or bounced to its sender".
//!
//! - [`id`]: queue ids.
//! - [`agent`]: the contract every delivery agent (Maildir, relay) keeps.
//! - [`diagnostic`]: typed delivery results (reply code, enhanced code,
//!   text, remote host), from the agents to the spool, the DSN and `tern
//!   queue`.
//! - [`record`]: the binary records of the spool log.
//! - [`log`]: segment files, the group-commit writer thread.
//! - [`scan`]: reading segments back at start-up; torn writes dropped,
//!   damage moved aside to `spool/damaged/`.
//! - [`admin`]: hold, release, flush, delete (for `tern queue`).
//! - [`listing`]: what `tern queue list` and `show` report (the data).
//! - [`dsn`]: bounces and delay notices (RFC 3464), which every failure
//!   and long delay gets (the [`dsn::Notifier`] is no option).
//! - [`free_space`]: the free space on the spool's filesystem, for the reserve.
//! - [`body`]: buffering of a body while it arrives (memory, then a temp file).
//! - [`spool`]: the queue over the log; the API the rest of tern uses
//!   (enqueue, update, load, lease).
//! - `index`: the spool's in-memory index (what one queued message costs).
//! - [`retry`]: when to try again (backoff with jitter), when to give up,
//!   when to tell the sender of a delay.
//! - [`scheduler`]: picks due messages and hands each recipient to its
//!   delivery agent; records the outcome.

pub mod activity;
pub mod admin;
pub mod agent;
pub mod body;
pub mod diagnostic;
pub mod dsn;
pub mod free_space;
pub mod id;
mod index;
pub mod listing;
pub mod log;
pub mod record;
pub mod retry;
pub mod scan;
pub mod scheduler;
pub mod spool;

pub use agent::{Agent, Outcome};
pub use body::{Body, BodyBuffer, BodyReader, BODY_MEMORY_LIMIT};
pub use diagnostic::{Diagnostic, Remote};
pub use id::QueueId;
pub use record::{Folder, RcptStatus, Record};
pub use spool::{Entry, Loaded, Spool, SpoolError, SpoolOptions};
