//! The login throttle (DESIGN invariant 5): failed logins are counted per
//! client (an IPv4 address or an IPv6 /64, the key [`client_key`] gives, so
//! a client cannot rotate through its /64) and per login across all
//! addresses; and the argon2 checks running at once are capped, since each
//! one takes ~19 MiB and tens of milliseconds.
//!
//! - A client with [`ADDRESS_BUDGET`] failures in its window gets 454 4.7.0
//!   without a check, whatever login and password it sends.
//! - A login with [`LOGIN_BUDGET`] failures in its window, from anywhere, is
//!   locked: logged with the login and the peer. The trade-off chosen so that
//!   a stranger cannot lock the owner out: a locked login is still checked for
//!   a client with no failures of its own (a clean address, one check at a
//!   time), so the owner with the right password still gets in from a clean
//!   address; every client that has failed gets 454 4.7.0 without a check. An
//!   attacker with many addresses thus keeps one guess per fresh address while
//!   the login is locked (instead of five), bounded by the cap on checks.
//! - At most [`CONCURRENT_CHECKS`] password checks run at once; up to
//!   [`WAITING_CHECKS`] more wait, each at most [`CHECK_WAIT`]; beyond that a
//!   login gets 454 4.7.0 at once (it is not counted as a failure).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::client_key;
use crate::smtp::Reply;

/// How many failures within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub failures: usize,
    pub window: Duration,
}

/// Per client (address or IPv6 /64): 5 failures in 10 minutes.
pub const ADDRESS_BUDGET: Budget = Budget {
    failures: 5,
    window: Duration::from_secs(600),
};
/// Per login, from all addresses together: 20 failures in an hour lock it.
pub const LOGIN_BUDGET: Budget = Budget {
    failures: 20,
    window: Duration::from_secs(3600),
};
/// Password checks running at once (each argon2id check holds ~19 MiB).
pub const CONCURRENT_CHECKS: usize = 4;
/// Logins waiting for a check; more are refused at once. A waiting login
/// holds only its session (already counted by the connection limits), and
/// 128 are served within [`CHECK_WAIT`] even on one core (~25 ms a check);
/// with 32, fifty mail programs logging in at once got 454 by the dozen
/// (scripts/bench --submission, c = 50, a new connection per message).
pub const WAITING_CHECKS: usize = 128;
/// The longest a login waits for its check to start.
pub const CHECK_WAIT: Duration = Duration::from_secs(10);

/// The most clients remembered; beyond it the stalest is forgotten.
const MAX_CLIENTS: usize = 100_000;
/// The most logins remembered (unknown logins are counted too, so that a
/// lock does not tell which logins exist).
const MAX_LOGINS: usize = 10_000;

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This client has used up its failures.
    Client,
    /// The login is locked and this client has failed too.
    LoginLocked,
    /// Too many checks running and waiting.
    Busy,
}

impl Refusal {
    /// The reply: 454 4.7.0 (RFC 4954 §6, temporary authentication failure).
    pub fn reply(self) -> Reply {
        match self {
            Refusal::Client | Refusal::LoginLocked => Reply::AUTH_THROTTLED,
            Refusal::Busy => Reply::AUTH_BUSY,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Client => "too many failed attempts from this client",
            Refusal::LoginLocked => {
                "the login is locked after too many failed attempts, and this client failed too"
            }
            Refusal::Busy => "too many password checks running and waiting",
        })
    }
}

/// Failure times per key within a window, and attempts being checked.
#[derive(Debug)]
struct Failures<K> {
    budget: Budget,
    max_keys: usize,
    failures: HashMap<K, VecDeque<Instant>>,
    in_flight: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(budget: Budget, max_keys: usize) -> Self {
        Failures {
            budget,
            max_keys,
            failures: HashMap::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Failures of `key` within the window (older ones are dropped).
    fn recent(&mut self, key: &K, now: Instant) -> usize {
        let window = self.budget.window;
        let Some(times) = self.failures.get_mut(key) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        let n = times.len();
        if n == 0 {
            self.failures.remove(key);
        }
        n
    }

    fn pending(&self, key: &K) -> usize {
        self.in_flight.get(key).copied().unwrap_or(0)
    }

    fn start(&mut self, key: &K) {
        *self.in_flight.entry(key.clone()).or_insert(0) += 1;
    }

    fn finish(&mut self, key: &K) {
        if let Some(n) = self.in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(key);
            }
        }
    }

    /// Records a failure; returns the failures now within the window.
    fn record(&mut self, key: &K, now: Instant) -> usize {
        if self.failures.len() >= self.max_keys && !self.failures.contains_key(key) {
            let window = self.budget.window;
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.failures.len() >= self.max_keys {
                // Still full of recent failures: forget the stalest.
                let stalest = self
                    .failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.failures.remove(&k);
                }
            }
        }
        self.recent(key, now);
        let times = self.failures.entry(key.clone()).or_default();
        times.push_back(now);
        while times.len() > self.budget.failures {
            times.pop_front();
        }
        times.len()
    }
}

#[derive(Debug)]
struct State {
    clients: Failures<IpAddr>,
    logins: Failures<String>,
}

/// Counts failed logins and caps the password checks running at once.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
    checks: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

impl Default for Throttle {
    /// The budgets and caps of the module documentation.
    fn default() -> Self {
        Throttle::new(
            ADDRESS_BUDGET,
            LOGIN_BUDGET,
            CONCURRENT_CHECKS,
            WAITING_CHECKS,
            CHECK_WAIT,
        )
    }
}

/// One login attempt being checked; see [`Throttle::begin`]. Dropped
/// without [`Attempt::failed`], it counts as nothing (a success).
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    client: IpAddr,
    login: String,
}

impl Attempt<'_> {
    /// The password was wrong: a failure for the client and for the login.
    /// True when this failure locked the login (for the log).
    pub fn failed(self, now: Instant) -> bool {
        let mut state = self.throttle.lock();
        state.clients.record(&self.client, now);
        let budget = state.logins.budget.failures;
        state.logins.record(&self.login, now) == budget
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut state = self.throttle.lock();
        state.clients.finish(&self.client);
        state.logins.finish(&self.login);
    }
}

/// A place among the password checks running; see [`Throttle::check_permit`].
#[derive(Debug)]
pub struct CheckPermit {
    _permit: OwnedSemaphorePermit,
}

/// Counts a login waiting for a check while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Throttle {
    /// A throttle with these budgets, `checks` password checks at once, and
    /// up to `max_waiting` more waiting at most `wait` each.
    pub fn new(
        client: Budget,
        login: Budget,
        checks: usize,
        max_waiting: usize,
        wait: Duration,
    ) -> Throttle {
        Throttle {
            state: Mutex::new(State {
                clients: Failures::new(client, MAX_CLIENTS),
                logins: Failures::new(login, MAX_LOGINS),
            }),
            checks: Arc::new(Semaphore::new(checks.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login attempt by `login` (see `auth::throttle_key`) from
    /// `ip`, or says why it is refused without a check. Attempts still being
    /// checked count as failures of their client: otherwise a client could
    /// start many checks before its first failure is recorded.
    pub fn begin(&self, ip: IpAddr, login: &str, now: Instant) -> Result<Attempt<'_>, Refusal> {
        let client = client_key(ip);
        let login = login.to_string();
        let mut state = self.lock();
        let used = state.clients.recent(&client, now) + state.clients.pending(&client);
        if used >= state.clients.budget.failures {
            return Err(Refusal::Client);
        }
        if state.logins.recent(&login, now) >= state.logins.budget.failures && used > 0 {
            return Err(Refusal::LoginLocked);
        }
        state.clients.start(&client);
        state.logins.start(&login);
        drop(state);
        Ok(Attempt {
            throttle: self,
            client,
            login,
        })
    }

    /// Waits for a place among the password checks running (at most the
    /// configured wait), or refuses at once when too many already wait.
    pub async fn check_permit(&self) -> Result<CheckPermit, Refusal> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, self.checks.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(CheckPermit { _permit: permit }),
            Ok(Err(_)) | Err(_) => Err(Refusal::Busy),
        }
    }

    /// True while the client of `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let client = client_key(ip);
        let mut state = self.lock();
        state.clients.recent(&client, now) >= state.clients.budget.failures
    }

    /// True while `login` is locked.
    pub fn login_locked(&self, login: &str, now: Instant) -> bool {
        let mut state = self.lock();
        state.logins.recent(&login.to_string(), now) >= state.logins.budget.failures
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
