//! The scheduler: takes due messages from the spool, hands each pending
//! recipient to its delivery agent (local Maildir, or the remote relay), and
//! records every outcome durably: delivered, failed (bounced), or deferred with
//! the next attempt time. A message leaves the queue only when every recipient
//! is final.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Semaphore};

use crate::config::Live;
use crate::local;
use crate::smtp::Route;

use super::record::{RcptStatus, Record};
use super::retry::RetryPolicy;
use super::spool::{millis, Loaded, Spool, SpoolError};
use super::QueueId;

/// How long the idle scheduler waits after new mail arrives before it starts
/// delivering: messages that come together are delivered together.
const GATHER: Duration = Duration::from_millis(20);

/// What one delivery attempt did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text says where (for the log and `tern queue show`).
    Delivered(String),
    /// Will never work (5xx): bounce. The text is the reason, with its code.
    Failed(String),
    /// Did not work now (4xx, timeouts): try again later.
    Deferred(String),
}

/// A boxed future, for the agent trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivers to recipients on other servers (the outbound relay).
pub trait RemoteAgent: Send + Sync + 'static {
    /// Attempts delivery of `loaded` to the recipients at `indices` (all with
    /// remote routes); returns an outcome for each.
    fn deliver<'a>(
        &'a self,
        loaded: &'a Loaded,
        indices: Vec<usize>,
    ) -> BoxFuture<'a, Vec<(usize, Outcome)>>;
}

/// Turns a finished message with failed recipients into a bounce.
pub trait Bouncer: Send + Sync + 'static {
    /// Queues the delivery status notification for `loaded` whose recipients
    /// at `failed` failed; returns once it is durable.
    fn bounce<'a>(
        &'a self,
        loaded: &'a Loaded,
        failed: Vec<usize>,
    ) -> BoxFuture<'a, Result<(), SpoolError>>;

    /// Queues the "still trying" notification for the recipients at the given
    /// indices (with their last error).
    fn delayed<'a>(
        &'a self,
        loaded: &'a Loaded,
        deferred: Vec<(usize, String)>,
    ) -> BoxFuture<'a, Result<(), SpoolError>>;
}

/// Runs deliveries; see the module docs.
#[derive(Clone)]
pub struct Scheduler {
    spool: Spool,
    config: Arc<Live>,
    remote: Option<Arc<dyn RemoteAgent>>,
    bouncer: Option<Arc<dyn Bouncer>>,
    concurrency: usize,
}

impl Scheduler {
    /// A scheduler delivering locally only, `concurrency` messages at a time;
    /// the retry schedule comes from the config's `[queue]`.
    pub fn new(spool: Spool, config: Arc<Live>, concurrency: usize) -> Scheduler {
        Scheduler {
            spool,
            config,
            remote: None,
            bouncer: None,
            concurrency: concurrency.max(1),
        }
    }

    /// The retry schedule in force (read at each use, so a reload applies).
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::from(&self.config.get().queue)
    }

    /// Adds the agent for remote recipients.
    pub fn with_remote(mut self, remote: Arc<dyn RemoteAgent>) -> Scheduler {
        self.remote = Some(remote);
        self
    }

    /// Adds the bounce generator.
    pub fn with_bouncer(mut self, bouncer: Arc<dyn Bouncer>) -> Scheduler {
        self.bouncer = Some(bouncer);
        self
    }

    /// Delivers until `shutdown` turns true, then waits (up to `grace`) for the
    /// deliveries in progress.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        'outer: loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            loop {
                if *shutdown.borrow() {
                    break 'outer;
                }
                let now = self.spool.clock().now();
                if let Some(id) = self.spool.lease_due(now, 1).pop() {
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.process(id).await;
                        drop(permit);
                    });
                    break;
                }
                let wait = self
                    .spool
                    .next_due()
                    .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(60))
                    .clamp(Duration::from_millis(1), Duration::from_secs(60));
                tokio::select! {
                    _ = self.spool.changed() => {
                        // New mail: let the messages arriving with it come
                        // too, so their deliveries run together and share
                        // the filesystem's flushes.
                        tokio::time::sleep(GATHER).await;
                    }
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break 'outer,
                }
            }
        }
        let all = self.concurrency as u32;
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            log::warn!("scheduler: deliveries still running at shutdown; they will be retried after restart");
        }
    }

    /// One delivery attempt for every pending recipient of message `id`, which
    /// the caller has leased; gives the lease back.
    pub async fn process(&self, id: QueueId) {
        self.process_leased(id).await;
        self.spool.release(id);
    }

    async fn process_leased(&self, id: QueueId) {
        // Reading the message and its local deliveries are one blocking
        // task: one hand-off between threads instead of two.
        let spool = self.spool.clone();
        let config = self.config.get();
        let read_and_deliver = tokio::task::spawn_blocking(move || {
            let loaded = spool.load(id)?;
            let outcomes = deliver_locally(&config, &loaded);
            Ok::<_, SpoolError>((loaded, outcomes))
        });
        let (loaded, mut outcomes) = match read_and_deliver.await {
            Ok(Ok(done)) => done,
            Ok(Err(SpoolError::NotFound(_))) => return,
            Ok(Err(SpoolError::Damaged(_))) => {
                // Keep it for the administrator rather than deliver garbage.
                if let Err(e) = self
                    .spool
                    .update(vec![Record::Hold { id, held: true }])
                    .await
                {
                    log::error!("queue_id={id} cannot hold damaged message: {e}");
                }
                return;
            }
            Ok(Err(e)) => {
                log::error!("queue_id={id} cannot read message: {e}");
                let attempts = self.spool.entry(id).map_or(0, |e| e.attempts);
                return self.retry_later(id, attempts, &e.to_string()).await;
            }
            Err(e) => {
                log::error!("queue_id={id} delivery task failed: {e}");
                return;
            }
        };
        let loaded = Arc::new(loaded);
        outcomes.extend(self.deliver_remotely(&loaded).await);
        self.record(loaded, outcomes).await;
    }

    /// Runs the remote agent for the pending remote recipients.
    async fn deliver_remotely(&self, loaded: &Arc<Loaded>) -> Vec<(usize, Outcome)> {
        let remotes: Vec<usize> = pending(loaded)
            .filter(|&(_, route)| matches!(route, Route::Remote(_)))
            .map(|(i, _)| i)
            .collect();
        if remotes.is_empty() {
            return Vec::new();
        }
        match &self.remote {
            Some(agent) => agent.deliver(loaded, remotes).await,
            None => remotes
                .into_iter()
                .map(|i| (i, Outcome::Deferred("no outbound relay is running".into())))
                .collect(),
        }
    }

    /// Writes the outcomes; finishes the message or schedules the next attempt.
    async fn record(&self, loaded: Arc<Loaded>, outcomes: Vec<(usize, Outcome)>) {
        let id = loaded.entry.message.id;
        let now = self.spool.clock().now();
        let retry = self.retry();
        let expired = retry.expired(loaded.entry.message.received_at, now);
        let mut statuses = loaded.entry.message.statuses.clone();
        let mut records = Vec::new();
        let mut failed_now = Vec::new();
        let mut deferred = Vec::new();
        for (i, outcome) in outcomes {
            let to = &loaded.entry.message.envelope.recipients[i].original;
            crate::status::activity().delivery(&outcome, expired);
            let status = match outcome {
                Outcome::Delivered(detail) => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "sent"; "queue_id={id} to=<{to}> status=sent ({detail})");
                    RcptStatus::Delivered(detail)
                }
                Outcome::Failed(reason) => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "bounced"; "queue_id={id} to=<{to}> status=bounced ({reason})");
                    RcptStatus::Failed(reason)
                }
                Outcome::Deferred(reason) if expired => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "expired"; "queue_id={id} to=<{to}> status=expired ({reason})");
                    RcptStatus::Failed(format!("delivery time expired; last error: {reason}"))
                }
                Outcome::Deferred(reason) => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "deferred"; "queue_id={id} to=<{to}> status=deferred ({reason})");
                    deferred.push((i, reason));
                    continue;
                }
            };
            if matches!(status, RcptStatus::Failed(_)) {
                failed_now.push(i);
            }
            statuses[i] = status.clone();
            records.push(Record::Recipient {
                id,
                index: i as u32,
                status,
            });
        }
        // The sender learns of failures at once, not when the last recipient
        // is settled. The bounce is durable before the failure is recorded: a
        // crash in between repeats the attempt (and maybe the bounce), but
        // never loses it.
        if !failed_now.is_empty() {
            let mut with_reasons = (*loaded).clone();
            with_reasons.entry.message.statuses = statuses.clone();
            if let Err(e) = self.bounce(&with_reasons, failed_now).await {
                log::error!("queue_id={id} cannot queue bounce: {e}");
                return self
                    .retry_later(id, loaded.entry.attempts, &e.to_string())
                    .await;
            }
        }
        let finished = statuses.iter().all(RcptStatus::is_final);
        if finished {
            // One durable write for the outcomes and the removal.
            records.push(Record::Done { id });
        }
        // Local deliveries are idempotent (the Maildir file name is fixed per
        // message and recipient, and found again if redone), so their
        // outcome needs no flush of its own; anything else does.
        let all_local = records.iter().all(|r| match r {
            Record::Recipient {
                index,
                status: RcptStatus::Delivered(_),
                ..
            } => {
                matches!(
                    loaded.entry.message.envelope.recipients[*index as usize].route,
                    Route::Local(_)
                )
            }
            Record::Done { .. } => true,
            _ => false,
        });
        if !records.is_empty() {
            let written = if all_local {
                self.spool.update_lazy(records).await
            } else {
                self.spool.update(records).await
            };
            if let Err(e) = written {
                log::error!("queue_id={id} cannot record delivery results: {e}");
                return self
                    .retry_later(id, loaded.entry.attempts, &e.to_string())
                    .await;
            }
        }
        if finished {
            log::info!(queue_id:% = id, action = "removed"; "queue_id={id} removed");
        } else if !deferred.is_empty() {
            let waited = age(loaded.entry.message.received_at, now);
            if waited >= retry.delay_notice && !loaded.entry.delay_notified {
                self.notify_delay(&loaded, deferred.clone()).await;
            }
            let errors: Vec<&str> = deferred.iter().map(|(_, e)| e.as_str()).collect();
            self.retry_later(id, loaded.entry.attempts, &errors.join("; "))
                .await;
        }
    }

    /// Tells the sender (once) that the message is delayed.
    async fn notify_delay(&self, loaded: &Loaded, deferred: Vec<(usize, String)>) {
        let id = loaded.entry.message.id;
        let Some(bouncer) = &self.bouncer else {
            return;
        };
        if let Err(e) = bouncer.delayed(loaded, deferred).await {
            log::error!("queue_id={id} cannot queue delay notice: {e}");
            return;
        }
        if let Err(e) = self.spool.update(vec![Record::DelayNotified { id }]).await {
            log::error!("queue_id={id} cannot record the delay notice: {e}");
        }
    }

    async fn bounce(&self, loaded: &Loaded, failed: Vec<usize>) -> Result<(), SpoolError> {
        match &self.bouncer {
            Some(b) => b.bounce(loaded, failed).await,
            None => {
                log::warn!(
                    "queue_id={} failed recipients, and no bouncer configured",
                    loaded.entry.message.id
                );
                Ok(())
            }
        }
    }

    async fn retry_later(&self, id: QueueId, attempts: u32, error: &str) {
        let now = self.spool.clock().now();
        let next = now + self.retry().delay(attempts + 1);
        let record = Record::Attempt {
            id,
            attempts: attempts + 1,
            next_attempt: millis(next),
            error: error.chars().take(1000).collect(),
        };
        if let Err(e) = self.spool.update(vec![record]).await {
            log::error!("queue_id={id} cannot record the next attempt: {e}");
            // Do not spin on a broken disk.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// How long ago `received_at` (ms) was, at `now`.
pub fn age(received_at: u64, now: SystemTime) -> Duration {
    Duration::from_millis(millis(now).saturating_sub(received_at))
}

/// The recipients of `loaded` still to be delivered: index and route.
fn pending(loaded: &Loaded) -> impl Iterator<Item = (usize, &Route)> {
    let message = &loaded.entry.message;
    message
        .envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|&(i, _)| !message.statuses[i].is_final())
        .map(|(i, r)| (i, &r.route))
}

/// Delivers the pending local recipients of `loaded` into their Maildirs.
/// Blocking.
fn deliver_locally(config: &crate::config::Config, loaded: &Loaded) -> Vec<(usize, Outcome)> {
    pending(loaded)
        .filter_map(|(i, route)| match route {
            Route::Local(user) => Some((i, user)),
            Route::Remote(_) => None,
        })
        .map(|(i, user)| {
            let outcome = match local::deliver(config, loaded, i, user) {
                Ok(detail) => Outcome::Delivered(detail),
                Err(e) if e.is_permanent() => {
                    Outcome::Failed(crate::smtp::Reply::from(&e).to_string())
                }
                Err(e) => Outcome::Deferred(e.to_string()),
            };
            (i, outcome)
        })
        .collect()
}
