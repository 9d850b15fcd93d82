//! Local delivery: writing mail into Maildirs ([`maildir`]). [`deliver`] is
//! the local delivery agent the scheduler calls for each local recipient of
//! a queued message. Who lives here is `crate::routing`'s to say.

pub mod maildir;

use std::io;

use crate::config::Config;
use crate::queue::Loaded;
use crate::smtp::{EnhancedCode, Reply};

pub use maildir::{Delivered, Maildir};

/// Why a local delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The user was removed from the config after the message was accepted.
    #[error("no local user {0:?}")]
    UnknownUser(String),
    /// Disk full, permissions...: tried again later.
    #[error("cannot write to {path}: {source}")]
    Io { path: String, source: io::Error },
}

impl LocalError {
    /// True when trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, LocalError::UnknownUser(_))
    }
}

impl From<&LocalError> for Reply {
    fn from(e: &LocalError) -> Reply {
        match e {
            LocalError::UnknownUser(_) => Reply::new(550, EnhancedCode(5, 1, 1), e.to_string()),
            // RFC 3463 X.2.0: other mailbox status (temporary).
            LocalError::Io { .. } => Reply::new(451, EnhancedCode(4, 2, 0), e.to_string()),
        }
    }
}

/// Delivers recipient `index` of `loaded` (a local route to `user`) into the
/// user's Maildir, with `Return-Path:` and `Delivered-To:` in front (RFC 5321
/// §4.4). Blocking. Returns where it went.
pub fn deliver(
    config: &Config,
    loaded: &Loaded,
    index: usize,
    user: &str,
) -> Result<String, LocalError> {
    let account = config
        .users
        .get(user)
        .ok_or_else(|| LocalError::UnknownUser(user.to_string()))?;
    let message = &loaded.entry.message;
    let return_path = message
        .envelope
        .sender
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let original = &message.envelope.recipients[index].original;
    let header = format!("Return-Path: <{return_path}>\r\nDelivered-To: {original}\r\n");
    let maildir = Maildir::new(&account.maildir);
    let name = Maildir::file_name(
        message.received_at / 1000,
        &message.id.to_string(),
        index,
        &config.hostname,
    );
    let io_error = |source| LocalError::Io {
        path: account.maildir.display().to_string(),
        source,
    };
    match maildir
        .deliver(&name, &[header.as_bytes(), &loaded.content])
        .map_err(io_error)?
    {
        Delivered::New(path) => Ok(format!("delivered to maildir {}", path.display())),
        Delivered::AlreadyThere(path) => Ok(format!("already in maildir {}", path.display())),
    }
}
