//! What an administrator can do to queued mail (the equivalent of Postfix's
//! postqueue/postsuper): hold, release, retry now, delete (optionally with a
//! bounce to the sender). Every change is a durable spool record.

use std::sync::Arc;

use crate::smtp::EnhancedCode;

use super::diagnostic::Diagnostic;
use super::dsn::{self, Kind, Notifier};
use super::record::{RcptStatus, Record};
use super::spool::{Spool, SpoolError};
use super::QueueId;

/// Queue operations for the control socket.
pub struct Admin {
    spool: Spool,
    notifier: Arc<Notifier>,
}

impl Admin {
    pub fn new(spool: Spool, notifier: Arc<Notifier>) -> Admin {
        Admin { spool, notifier }
    }

    /// The spool the operations act on.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    fn exists(&self, id: QueueId) -> Result<(), SpoolError> {
        self.spool
            .entry(id)
            .map(|_| ())
            .ok_or(SpoolError::NotFound(id))
    }

    /// Stops delivery attempts of `id` until released.
    pub async fn hold(&self, id: QueueId) -> Result<(), SpoolError> {
        self.exists(id)?;
        self.spool
            .update(vec![Record::Hold { id, held: true }])
            .await
    }

    /// Lets `id` be delivered again (at once).
    pub async fn release(&self, id: QueueId) -> Result<(), SpoolError> {
        let entry = self.spool.entry(id).ok_or(SpoolError::NotFound(id))?;
        self.spool
            .update(vec![
                Record::Hold { id, held: false },
                Record::Attempt {
                    id,
                    attempts: entry.attempts,
                    next_attempt: 0,
                    errors: entry.last_errors.to_vec(),
                },
            ])
            .await?;
        self.spool.wake();
        Ok(())
    }

    /// Retries `id` (or every deferred message) now. Held messages stay held.
    /// Returns how many were scheduled.
    pub async fn flush(&self, id: Option<QueueId>) -> Result<usize, SpoolError> {
        let entries = match id {
            Some(id) => vec![self.spool.entry(id).ok_or(SpoolError::NotFound(id))?],
            None => self.spool.entries(),
        };
        let records: Vec<Record> = entries
            .into_iter()
            .filter(|e| !e.held && e.next_attempt > 0)
            .map(|e| Record::Attempt {
                id: e.message.id,
                attempts: e.attempts,
                next_attempt: 0,
                errors: e.last_errors.to_vec(),
            })
            .collect();
        let n = records.len();
        if n > 0 {
            self.spool.update(records).await?;
        }
        self.spool.wake();
        Ok(n)
    }

    /// Removes `id` from the queue. With `bounce`, the sender is told that
    /// the pending recipients were not delivered.
    pub async fn delete(&self, id: QueueId, bounce: bool) -> Result<(), SpoolError> {
        self.exists(id)?;
        if bounce {
            let spool = self.spool.clone();
            let loaded = tokio::task::spawn_blocking(move || spool.load(id))
                .await
                .map_err(|e| SpoolError::Io(std::io::Error::other(e)))??;
            let message = &loaded.entry.message;
            let reason = Diagnostic::reply(
                550,
                EnhancedCode(5, 0, 0),
                "Deleted from the queue by the administrator",
            );
            let reported: Vec<dsn::Reported> = message
                .statuses
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, RcptStatus::Pending))
                .map(|(i, _)| dsn::reported(&message.envelope.recipients[i], reason.clone()))
                .collect();
            if !reported.is_empty() {
                self.notifier
                    .notify(&loaded, Kind::Failed, reported)
                    .await?;
            }
        }
        self.spool.update(vec![Record::Done { id }]).await?;
        log::info!(
            "queue_id={id} deleted by the administrator{}",
            if bounce { " (bounced)" } else { "" }
        );
        Ok(())
    }
}
