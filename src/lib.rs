//! tern: a mail server appliance for one owner.
//!
//! Layout (DESIGN.md has the message flow):
//! - [`smtp`]: the SMTP protocol core, sans-IO: commands, replies, addresses,
//!   DATA/BDAT receivers, AUTH exchanges, the session state machine.
//! - [`inbound`]: tokio listeners (25/587/465), TLS, the per-connection
//!   driver, limits, logins, the relay policy, and [`inbound::accept`], the
//!   one path by which accepted mail enters the queue.
//! - [`queue`]: the durable spool (segment log, group commit, recovery), the
//!   scheduler, retries, bounces (DSN), administration and listings.
//! - [`routing`]: where a recipient goes, for every entry point: who
//!   lives here (users, aliases, catch-alls, +tags) and the relay rule.
//! - [`local`]: Maildir delivery.
//! - [`outbound`]: DNS (MX) and the SMTP client that relays mail onwards.
//! - [`dkim`]: signing what our users send; key files and DNS records.
//! - [`dovecot`]: the user database Dovecot (IMAP/POP3) reads, from tern.toml.
//! - [`message`]: RFC 5322 header fields and address lists.
//! - [`sendmail`]: the classic `sendmail` command line.
//! - [`control`]: the unix socket `tern queue` and `sendmail` talk over.
//! - [`config`]: tern.toml → validated [`config::Config`] (file:line:col errors).
//! - [`tls`]: certificates and rustls configurations; [`tls::store`], the
//!   one swappable certificate every listener presents.
//! - [`acme`]: certificates from an ACME CA (Let's Encrypt), renewed in place.
//! - [`web`]: the https/http listeners: ACME challenges, MTA-STS, autoconfig.
//! - [`live`]: what a reload swaps, as one value: config, TLS, DKIM signer.
//! - [`daemon`], [`systemd`]: start-up, reload, shutdown; sd_notify, journald.
//! - [`clock`]: the injected clock; [`date`]: RFC 5322 and ISO 8601 dates
//!   of the times it gives.
//!
//! [`BoxFuture`] is what the object-safe async traits return (the delivery
//! agents' contract, the DNS resolver).
//! - [`check`]: `tern dns` (the records to publish) and `tern check` (are
//!   they published, is the certificate good, is mail stuck); [`status`]:
//!   `tern status`, and the daemon's counters behind it.
pub mod acme;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod date;
pub mod dkim;
pub mod dovecot;
pub mod inbound;
pub mod live;
pub mod local;
pub mod message;
pub mod outbound;
pub mod queue;
pub mod routing;
pub mod sendmail;
pub mod smtp;
pub mod status;
pub mod systemd;
pub mod terminal;
pub mod tls;
pub mod web;

/// A boxed, sendable future: the return type of the async methods of traits
/// used as objects (`dyn queue::Agent`, `dyn outbound::resolver::Resolver`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
