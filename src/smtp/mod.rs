//! The SMTP protocol core, sans-IO: no tokio, no sockets, no files.
//!
//! - [`reply`]: `Reply` and `EnhancedCode`, every reply the server can send.
//! - [`address`]: RFC 5321 paths and mailboxes, parsed strictly.
//! - [`command`]: command lines → `Command`.
//! - [`data`]: DATA and BDAT content receivers (smuggling-safe).
//! - [`envelope`]: what a transaction hands to the queue; the `Received:` header.
//! - [`session`]: the server state machine that ties them together.
//! - [`auth`]: AUTH PLAIN and LOGIN exchanges.

pub mod address;
pub mod auth;
pub mod command;
pub mod data;
pub mod envelope;
pub mod reply;
pub mod session;

pub use address::{Address, Domain};
pub use envelope::{Envelope, Recipient, Route, Trace};
pub use reply::{EnhancedCode, Reply};
pub use session::{Action, Answer, Check, Session, SessionConfig, Transaction};
