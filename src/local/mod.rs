//! Local delivery: writing mail into Maildirs ([`maildir`]). [`Maildirs`] is
//! the queue's [`Agent`] for local routes: it writes a message's local
//! recipients through one writer thread ([`writer`]), which batches them with
//! the other deliveries of the moment so that they share their flushes
//! ([`maildir`]). A message whose [`Folder`] is Junk goes to the Maildir++
//! folder `.Junk` of each local recipient. Who lives here is `crate::routing`'s to say.

pub mod maildir;
pub mod writer;

use std::io;
use std::sync::Arc;

use crate::config::Config;
use crate::live::Live;
use crate::queue::{Agent, Diagnostic, Folder, Loaded, Outcome};
use crate::smtp::{EnhancedCode, Reply, Route};
use crate::BoxFuture;

pub use maildir::{Delivered, Maildir};
use writer::{Content, Job, Writer};

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

/// The local delivery agent: Maildirs, under the config in force, written
/// by one [`Writer`] thread.
pub struct Maildirs {
    live: Arc<Live>,
    writer: Writer,
}

impl Maildirs {
    pub fn new(live: Arc<Live>) -> Maildirs {
        Maildirs {
            live,
            writer: Writer::default(),
        }
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
            // Every recipient's file in one request to the writer, which
            // batches it with the other deliveries of the moment.
            let content: Content = Arc::new(Shared(message.clone()));
            let mut outcomes = Vec::with_capacity(recipients.len());
            let mut jobs = Vec::new();
            let mut written = Vec::new();
            for i in recipients {
                match job(&config, &message, i, &content) {
                    Ok(job) => {
                        written.push((i, job.maildir.root().display().to_string()));
                        jobs.push(job);
                    }
                    Err(e) => outcomes.push((i, outcome(Err(e)))),
                }
            }
            if !jobs.is_empty() {
                let results = self.writer.deliver(jobs).await;
                for ((i, path), result) in written.into_iter().zip(results) {
                    let result = match result {
                        Ok(Delivered::New(p)) => {
                            Ok(format!("delivered to maildir {}", p.display()))
                        }
                        Ok(Delivered::AlreadyThere(p)) => {
                            Ok(format!("already in maildir {}", p.display()))
                        }
                        Err(source) => Err(LocalError::Io { path, source }),
                    };
                    outcomes.push((i, outcome(result)));
                }
            }
            outcomes
        })
    }

    /// A redelivery finds the Maildir file of the first (its name is fixed
    /// per message and recipient) and keeps it.
    fn redo_is_harmless(&self) -> bool {
        true
    }
}

/// A queued message's content, for the writer.
struct Shared(Arc<Loaded>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0.content
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

/// The file for recipient `index` of `loaded` (a local route) in the user's
/// Maildir, with `Return-Path:` and `Delivered-To:` in front (RFC 5321
/// §4.4).
fn job(
    config: &Config,
    loaded: &Loaded,
    index: usize,
    content: &Content,
) -> Result<Job, LocalError> {
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
    let head = format!("Return-Path: <{return_path}>\r\nDelivered-To: {original}\r\n");
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
    Ok(Job {
        maildir,
        name,
        head: head.into_bytes(),
        content: content.clone(),
    })
}
