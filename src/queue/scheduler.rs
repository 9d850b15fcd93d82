//! The scheduler: takes due messages from the spool, hands each pending
//! recipient to its delivery [`Agent`] (local or remote, by its route), and
//! records every outcome durably: delivered, failed (bounced), or deferred with
//! the next attempt time. A message leaves the queue only when every recipient
//! is final; a failed recipient always gets its bounce (the [`Notifier`] is
//! part of the scheduler, not an option).
//!
//! A delivery holds its message in memory, so two budgets bound what runs
//! at once: a number of messages (many, since a delivery to another server
//! mostly waits on the network) and [`LOADED_BYTES`] of their contents (a
//! message larger than the whole budget runs alone).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Semaphore};

use crate::live::Live;
use crate::smtp::{EnhancedCode, Route};

use super::agent::{Agent, Outcome};
use super::diagnostic::Diagnostic;
use super::dsn::Notifier;
use super::record::{RcptStatus, Record};
use super::retry::RetryPolicy;
use super::spool::{millis, Loaded, Spool, SpoolError};
use super::QueueId;

/// How long the idle scheduler waits after new mail arrives before it starts
/// delivering: messages that come together are delivered together.
const GATHER: Duration = Duration::from_millis(20);

/// The message contents that deliveries in progress may hold in memory
/// together.
pub const LOADED_BYTES: u64 = 64 << 20;

/// The grain of [`LOADED_BYTES`]: a message takes one unit per started
/// 64 KiB (trace fields included), at least one.
const UNIT: u64 = 64 << 10;

/// The units of a budget of `budget` octets that a message of `body_len`
/// octets takes (never more than the whole budget).
fn units(body_len: u64, budget: u64) -> u32 {
    let all = (budget / UNIT).max(1);
    (body_len / UNIT + 1).min(all) as u32
}

/// The delivery agents, one per kind of [`Route`].
#[derive(Clone)]
pub struct Agents {
    /// For [`Route::Local`]: the Maildirs.
    pub local: Arc<dyn Agent>,
    /// For [`Route::Remote`]: the outbound relay.
    pub remote: Arc<dyn Agent>,
}

/// Runs deliveries; see the module docs.
#[derive(Clone)]
pub struct Scheduler {
    spool: Spool,
    config: Arc<Live>,
    agents: Agents,
    notifier: Arc<Notifier>,
    concurrency: usize,
    /// [`LOADED_BYTES`], or less in tests.
    loaded_bytes: u64,
}

impl Scheduler {
    /// A scheduler delivering through `agents`, `concurrency` messages at a
    /// time, telling senders of failures and delays through `notifier`; the
    /// retry schedule comes from the config's `[queue]`.
    pub fn new(
        spool: Spool,
        config: Arc<Live>,
        agents: Agents,
        notifier: Arc<Notifier>,
        concurrency: usize,
    ) -> Scheduler {
        Scheduler {
            spool,
            config,
            agents,
            notifier,
            concurrency: concurrency.max(1),
            loaded_bytes: LOADED_BYTES,
        }
    }

    /// The same with another budget for message contents in memory.
    #[cfg(test)]
    fn with_loaded_bytes(mut self, bytes: u64) -> Scheduler {
        self.loaded_bytes = bytes;
        self
    }

    /// The retry schedule in force (read at each use, so a reload applies).
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::from(&self.config.config().queue)
    }

    /// Delivers until `shutdown` turns true, then waits (up to `grace`) for the
    /// deliveries in progress.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let bytes = Arc::new(Semaphore::new((self.loaded_bytes / UNIT).max(1) as usize));
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
                    let size = self.spool.body_len(id).unwrap_or(0);
                    let room = tokio::select! {
                        r = bytes.clone().acquire_many_owned(units(size, self.loaded_bytes)) => r.ok(),
                        _ = shutdown.changed() => None,
                    };
                    let Some(room) = room else {
                        self.spool.release(id);
                        break 'outer;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.process(id).await;
                        drop((permit, room));
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
        // A message written lately is read here (from the page cache);
        // an older one by a blocking thread.
        let loaded = match self.spool.load_if_recent(id) {
            Some(result) => Ok(result),
            None => {
                let spool = self.spool.clone();
                tokio::task::spawn_blocking(move || spool.load(id)).await
            }
        };
        let loaded = match loaded {
            Ok(Ok(loaded)) => Arc::new(loaded),
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
                return self
                    .retry_later(id, attempts, vec![spool_trouble(&e)])
                    .await;
            }
            Err(e) => {
                log::error!("queue_id={id} delivery task failed: {e}");
                return;
            }
        };
        let (local, remote): (Vec<(usize, &Route)>, _) =
            pending(&loaded).partition(|(_, route)| matches!(route, Route::Local(_)));
        let indices = |v: Vec<(usize, &Route)>| v.into_iter().map(|(i, _)| i).collect();
        let (local, remote): (Vec<usize>, Vec<usize>) = (indices(local), indices(remote));
        let (mut outcomes, remote_outcomes) = tokio::join!(
            run(&self.agents.local, &loaded, local),
            run(&self.agents.remote, &loaded, remote),
        );
        outcomes.extend(remote_outcomes);
        self.record(loaded, outcomes).await;
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
        // Only the outcomes of agents whose deliveries can be redone harmlessly
        // may be written without a flush of their own.
        let mut all_harmless = true;
        for (i, outcome) in outcomes {
            let to = &loaded.entry.message.envelope.recipients[i].original;
            crate::queue::activity::activity().delivery(&outcome, expired);
            let status = match outcome {
                Outcome::Delivered(detail) => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "sent"; "queue_id={id} to=<{to}> status=sent ({detail})");
                    all_harmless &= self.agent_for(&loaded, i).redo_is_harmless();
                    RcptStatus::Delivered(detail)
                }
                Outcome::Failed(reason) => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "bounced"; "queue_id={id} to=<{to}> status=bounced ({reason})");
                    all_harmless = false;
                    RcptStatus::Failed(reason)
                }
                Outcome::Deferred(reason) if expired => {
                    log::info!(queue_id:% = id, rcpt = to.as_str(), action = "expired"; "queue_id={id} to=<{to}> status=expired ({reason})");
                    all_harmless = false;
                    RcptStatus::Failed(Diagnostic::expired(&reason))
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
            if let Err(e) = self.notifier.bounce(&with_reasons, failed_now).await {
                log::error!("queue_id={id} cannot queue bounce: {e}");
                return self
                    .retry_later(id, loaded.entry.attempts, vec![spool_trouble(&e)])
                    .await;
            }
        }
        let finished = statuses.iter().all(RcptStatus::is_final);
        if finished {
            // One durable write for the outcomes and the removal.
            records.push(Record::Done { id });
        }
        // Deliveries that a redo finds again (a Maildir file's name is fixed
        // per message and recipient) need no flush of their own; anything
        // else does.
        if !records.is_empty() {
            let written = if all_harmless {
                self.spool.update_lazy(records).await
            } else {
                self.spool.update(records).await
            };
            if let Err(e) = written {
                log::error!("queue_id={id} cannot record delivery results: {e}");
                return self
                    .retry_later(id, loaded.entry.attempts, vec![spool_trouble(&e)])
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
            let mut errors: Vec<Diagnostic> = Vec::new();
            for (_, e) in deferred {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
            self.retry_later(id, loaded.entry.attempts, errors).await;
        }
    }

    /// Tells the sender (once) that the message is delayed.
    async fn notify_delay(&self, loaded: &Loaded, deferred: Vec<(usize, Diagnostic)>) {
        let id = loaded.entry.message.id;
        if let Err(e) = self.notifier.delayed(loaded, deferred).await {
            log::error!("queue_id={id} cannot queue delay notice: {e}");
            return;
        }
        if let Err(e) = self.spool.update(vec![Record::DelayNotified { id }]).await {
            log::error!("queue_id={id} cannot record the delay notice: {e}");
        }
    }

    /// The agent for recipient `index` of `loaded`.
    fn agent_for(&self, loaded: &Loaded, index: usize) -> &Arc<dyn Agent> {
        match loaded.entry.message.envelope.recipients[index].route {
            Route::Local(_) => &self.agents.local,
            Route::Remote(_) => &self.agents.remote,
        }
    }

    async fn retry_later(&self, id: QueueId, attempts: u32, mut errors: Vec<Diagnostic>) {
        let now = self.spool.clock().now();
        let next = now + self.retry().delay(attempts + 1);
        // A few reasons, each of bounded length, are plenty to say why.
        errors.truncate(8);
        for e in &mut errors {
            if e.text.len() > 1000 {
                e.text = e.text.chars().take(1000).collect();
            }
        }
        let record = Record::Attempt {
            id,
            attempts: attempts + 1,
            next_attempt: millis(next),
            errors,
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

/// Runs `agent` for `recipients` of `message` (nothing when there are
/// none); a recipient the agent gave no outcome for is deferred.
async fn run(
    agent: &Arc<dyn Agent>,
    message: &Arc<Loaded>,
    recipients: Vec<usize>,
) -> Vec<(usize, Outcome)> {
    if recipients.is_empty() {
        return Vec::new();
    }
    let mut outcomes = agent.deliver(message.clone(), recipients.clone()).await;
    for i in recipients {
        if !outcomes.iter().any(|&(j, _)| j == i) {
            outcomes.push((
                i,
                Outcome::Deferred(Diagnostic::note(
                    EnhancedCode(4, 3, 0),
                    "the delivery agent gave no outcome",
                )),
            ));
        }
    }
    outcomes
}

/// The reason a message could not be read or its results not written.
fn spool_trouble(e: &SpoolError) -> Diagnostic {
    // RFC 3463 X.3.0: other or undefined mail system status.
    Diagnostic::note(EnhancedCode(4, 3, 0), e.to_string())
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
