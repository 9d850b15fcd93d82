//! Helpers of the integration tests, one tree for every test crate
//! (`mod support;`):
//!
//! - [`harness`]: the real `tern` binary on loopback in a temporary
//!   directory ([`TestServer`]), a line-oriented SMTP client, Maildir
//!   inspection, running the CLI; re-exported here.
//! - [`dns`]: a real DNS server on loopback answering from a table.
//! - [`sink`]: a programmable remote SMTP server on loopback.
//! - [`postfix`]: a private Postfix instance (scripts/postfix-instance) for interop.
//! - [`burst`]: the crash tests' client threads, bookkeeping and Maildir audit.
//! - [`peers`]: runs real SMTP clients (Python's smtplib, swaks) as child
//!   processes, bounded in time.
//! - [`dkimpy`]: checks our DKIM signatures with dkimpy.
//! - [`delivered`]: finds a delivered message by queue id and checks our
//!   trace headers and the bytes after them.
//! - [`mailer`]: a tolerant pipelining SMTP client for crash tests: it never
//!   panics on a dead server, it reports what the server said.
//! - [`mta`]: one tern in-process (spool, scheduler, relay agent,
//!   bouncer), for the delivery tests.
//! - [`pebble`]: a private pebble ACME server (scripts/pebble-instance),
//!   and TLS clients (HTTPS, STARTTLS, port 465) that verify the chain.
//! - [`rng`]: a small seeded PRNG, so random kill points can be replayed.
//! - [`submitter`]: the kill -9 campaign's client: DATA or BDAT, and
//!   STARTTLS with AUTH PLAIN for submission; says whether a dead
//!   connection died before or after the end of the content.
//! - [`tools`]: a repo script's path, a free port, `tern user passwd`'s
//!   line, a group's id; re-exported here.
//! - [`transcript_lang`]: the language of the SMTP transcripts under
//!   `tests/transcripts/`.
// Each test crate uses a part of the helpers, through `pub`.
#![allow(dead_code, unreachable_pub)]

pub mod burst;
pub mod delivered;
pub mod dkimpy;
pub mod dns;
pub mod harness;
pub mod mailer;
pub mod mta;
pub mod pebble;
pub mod peers;
pub mod postfix;
pub mod rng;
pub mod sink;
pub mod submitter;
pub mod tools;
pub mod transcript_lang;

#[allow(unused_imports)]
pub use harness::*;
#[allow(unused_imports)]
pub use tools::*;
