//! Unit tests of the scheduler: its two budgets (how many messages are in
//! delivery at once, and how many octets of message content they hold: a
//! test agent holds each delivery for a while and counts how many run
//! together) and its retries, on a real spool in a temporary directory.

use super::*;
use crate::config::Config;
use crate::queue::Body;
use crate::smtp::{Address, Envelope, Recipient};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Delivers after `hold`, counting the deliveries running at once.
struct Counting {
    now: AtomicUsize,
    most: AtomicUsize,
    done: AtomicUsize,
    hold: Duration,
}

impl Agent for Counting {
    fn deliver<'a>(
        &'a self,
        _message: Arc<Loaded>,
        recipients: Vec<usize>,
    ) -> crate::BoxFuture<'a, Vec<(usize, Outcome)>> {
        Box::pin(async move {
            let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(self.hold).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            let ok = Diagnostic::note(EnhancedCode(2, 0, 0), "taken");
            recipients
                .into_iter()
                .map(|r| (r, Outcome::Delivered(ok.clone())))
                .collect()
        })
    }
}

/// An envelope with one recipient on another server.
fn remote() -> Envelope {
    let to = Address::parse("someone@remote.example").unwrap();
    Envelope {
        sender: None,
        recipients: vec![Recipient {
            original: to.to_string(),
            route: Route::Remote(to),
        }],
        eight_bit: false,
        smtputf8: false,
    }
}

/// A scheduler over `spool` whose every delivery goes to `agent`.
fn scheduler(
    spool: &Spool,
    live: Arc<Live>,
    agent: Arc<dyn Agent>,
    concurrency: usize,
) -> Scheduler {
    let notifier = Arc::new(Notifier::new(
        spool.clone(),
        live.clone(),
        Arc::new(|_: &Config, _: &Address| None),
    ));
    let agents = Agents {
        local: agent.clone(),
        remote: agent,
    };
    Scheduler::new(spool.clone(), live, agents, notifier, concurrency)
}

/// Runs a scheduler (`concurrency` messages, `budget` octets) over
/// messages with bodies of `sizes` octets, each delivery taking 100 ms;
/// returns the most deliveries seen at once.
async fn most_at_once(concurrency: usize, budget: u64, sizes: &[usize]) -> usize {
    let (_dir, spool) = crate::queue::spool::scratch();
    let live = Arc::new(Live::new(Config::default_config()));
    let agent = Arc::new(Counting {
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        hold: Duration::from_millis(100),
    });
    for &size in sizes {
        let mut body = b"Subject: s\r\n\r\n".to_vec();
        body.resize(size.max(body.len()), b'x');
        spool
            .enqueue(spool.new_id(), remote(), Vec::new(), Body::from_bytes(body))
            .await
            .unwrap();
    }
    let scheduler = scheduler(&spool, live, agent.clone(), concurrency).with_loaded_bytes(budget);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(stopped, Duration::from_secs(5)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agent.done.load(Ordering::SeqCst) < sizes.len() {
        assert!(tokio::time::Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    agent.most.load(Ordering::SeqCst)
}

#[test]
fn a_message_takes_a_unit_per_started_64_kib_and_at_most_the_budget() {
    assert_eq!(units(0, LOADED_BYTES), 1);
    assert_eq!(units(UNIT - 1, LOADED_BYTES), 1);
    assert_eq!(units(UNIT, LOADED_BYTES), 2);
    assert_eq!(units(u64::MAX, LOADED_BYTES), (LOADED_BYTES / UNIT) as u32);
    assert_eq!(
        units(10 * UNIT, UNIT),
        1,
        "a budget under one unit is one unit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_messages_run_up_to_the_message_budget() {
    assert_eq!(most_at_once(4, LOADED_BYTES, &[100; 10]).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_run_within_the_byte_budget() {
    // A budget of 4 units: bodies of 100 KiB take 2 units each, so two run
    // together, never more, whatever the message budget.
    let budget = 4 * UNIT;
    assert_eq!(most_at_once(16, budget, &[100 << 10; 6]).await, 2);
    // A body larger than the whole budget still goes, alone.
    assert_eq!(most_at_once(16, budget, &[1 << 20; 3]).await, 1);
}

/// Defers the first attempt of every message, delivers the next; notes
/// when each attempt started.
#[derive(Default)]
struct DeferOnce {
    attempts: Mutex<Vec<std::time::Instant>>,
}

impl Agent for DeferOnce {
    fn deliver<'a>(
        &'a self,
        _message: Arc<Loaded>,
        recipients: Vec<usize>,
    ) -> crate::BoxFuture<'a, Vec<(usize, Outcome)>> {
        Box::pin(async move {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push(std::time::Instant::now());
            let outcome = if attempts.len() == 1 {
                Outcome::Deferred(Diagnostic::note(EnhancedCode(4, 4, 1), "not now"))
            } else {
                Outcome::Delivered(Diagnostic::note(EnhancedCode(2, 0, 0), "taken"))
            };
            recipients
                .into_iter()
                .map(|r| (r, outcome.clone()))
                .collect()
        })
    }
}

/// The retry comes when the config says, also when the deferred message was
/// the only one: while it was in delivery nothing was due, and the idle
/// scheduler must not sleep its full minute past the retry.
#[tokio::test]
async fn a_deferred_message_is_retried_when_due_even_alone() {
    let (_dir, spool) = crate::queue::spool::scratch();
    let mut config = Config::default_config();
    config.queue.retry_first = Duration::from_secs(1);
    config.queue.retry_max = Duration::from_secs(1);
    let agent = Arc::new(DeferOnce::default());
    let scheduler = scheduler(&spool, Arc::new(Live::new(config)), agent.clone(), 8);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(stopped, Duration::from_secs(5)));
    spool
        .enqueue(
            spool.new_id(),
            remote(),
            Vec::new(),
            Body::from_bytes(b"x\r\n".to_vec()),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !spool.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let attempts = agent.attempts.lock().unwrap();
    assert_eq!(attempts.len(), 2);
    // Due after at most retry_first (less its jitter); the scheduler's
    // idle wait is a minute.
    let gap = attempts[1] - attempts[0];
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
}
