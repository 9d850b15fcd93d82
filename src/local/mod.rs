//! Local delivery: writing mail into Maildirs ([`maildir`]). [`Maildirs`] is
//! the queue's [`Agent`] for local routes: it writes a message's local
//! recipients in one blocking task, the flushes that make them durable shared
//! with concurrent deliveries ([`maildir`]). A message whose [`Folder`] is Junk goes to the Maildir++
//! folder `.Junk` of each local recipient. Who lives here is `crate::routing`'s to say.

pub mod maildir;

use std::io;
use std::sync::Arc;

use crate::config::Config;
use crate::live::Live;
use crate::queue::{Agent, Diagnostic, Folder, Loaded, Outcome};
use crate::smtp::{EnhancedCode, Reply, Route};
use crate::BoxFuture;

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

/// The local delivery agent: Maildirs, under the config in force.
pub struct Maildirs {
    live: Arc<Live>,
}

impl Maildirs {
    pub fn new(live: Arc<Live>) -> Maildirs {
        Maildirs { live }
    }
}

impl Agent for Maildirs {
    fn deliver<'a>(
        &'a self,
        message: Arc<Loaded>,
        recipients: Vec<usize>,
    ) -> BoxFuture<'a, Vec<(usize, Outcome)>> {
        let config = self.live.config();
        Box::pin(async move {
            // Every recipient in one blocking task: one hand-off between
            // threads per message, and their flushes shared.
            let batch = recipients.clone();
            let task = tokio::task::spawn_blocking(move || {
                batch
                    .into_iter()
                    .map(|i| (i, outcome(deliver(&config, &message, i))))
                    .collect()
            });
            match task.await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    log::error!("local delivery task failed: {e}");
                    let why = Diagnostic::note(
                        EnhancedCode(4, 3, 0),
                        format!("local delivery task failed: {e}"),
                    );
                    recipients
                        .into_iter()
                        .map(|i| (i, Outcome::Deferred(why.clone())))
                        .collect()
                }
            }
        })
    }

    /// A redelivery finds the Maildir file of the first (its name is fixed
    /// per message and recipient) and keeps it.
    fn redo_is_harmless(&self) -> bool {
        true
    }
}

/// The queue's outcome for one local delivery.
fn outcome(result: Result<String, LocalError>) -> Outcome {
    match result {
        // RFC 3463 X.0.0 of class 2: delivered.
        Ok(detail) => Outcome::Delivered(Diagnostic::note(EnhancedCode(2, 0, 0), detail)),
        Err(e) if e.is_permanent() => Outcome::Failed(Diagnostic::from(&Reply::from(&e))),
        Err(e) => {
            let enhanced = Reply::from(&e).enhanced.unwrap_or(EnhancedCode(4, 0, 0));
            Outcome::Deferred(Diagnostic::note(enhanced, e.to_string()))
        }
    }
}

/// Delivers recipient `index` of `loaded` (a local route) into the user's
/// Maildir, with `Return-Path:` and `Delivered-To:` in front (RFC 5321
/// §4.4). Blocking. Returns where it went.
fn deliver(config: &Config, loaded: &Loaded, index: usize) -> Result<String, LocalError> {
    let message = &loaded.entry.message;
    let user = match &message.envelope.recipients[index].route {
        Route::Local(user) => user,
        Route::Remote(addr) => return Err(LocalError::UnknownUser(addr.to_string())),
    };
    let account = config
        .users
        .get(user)
        .ok_or_else(|| LocalError::UnknownUser(user.to_string()))?;
    let return_path = message
        .envelope
        .sender
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let original = &message.envelope.recipients[index].original;
    let header = format!("Return-Path: <{return_path}>\r\nDelivered-To: {original}\r\n");
    let maildir = match message.folder {
        Folder::Inbox => Maildir::new(&account.maildir),
        Folder::Junk => Maildir::new(&account.maildir).folder("Junk"),
    };
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
