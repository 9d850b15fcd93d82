//! tern: a mail server appliance for one owner.
//!
//! Layout (see DESIGN.md for the message flow):
//! - [`config`]: tern.toml → validated [`config::Config`], errors with file:line:col.
//! - [`control`]: the unix socket `tern queue` (and later `sendmail`) uses to
//!   talk to the running daemon: protocol, daemon side, client side.
//! - [`dkim`]: DKIM signing of submitted mail, key files, DNS records.
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dkim;
pub mod inbound;
pub mod local;
pub mod message;
pub mod outbound;
pub mod queue;
pub mod sendmail;
pub mod smtp;
pub mod systemd;
pub mod tls;
