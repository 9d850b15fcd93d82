//! What the daemon has done lately, for `tern status`: per-minute counts of
//! the last hour (recipients delivered, deferred and bounced; messages
//! received and sessions to other servers, with and without TLS), the
//! listeners bound, the last reload and the ACME task's last outcome. One [`Activity`] per process
//! ([`activity`]), bounded whatever the traffic; the scheduler, the
//! listeners, the SMTP client and reload each record into it with one call.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Role;

use super::spool::millis;
use super::Outcome;

/// Minutes the counters cover.
const WINDOW_MINUTES: usize = 60;

/// The counts of one minute (or, summed, of the last hour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Recipients delivered, deferred, bounced (failed or expired).
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Messages accepted from SMTP clients, with and without TLS.
    pub inbound_tls: u64,
    pub inbound_plain: u64,
    /// SMTP sessions to other servers, with and without TLS.
    pub outbound_tls: u64,
    pub outbound_plain: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.delivered += o.delivered;
        self.deferred += o.deferred;
        self.bounced += o.bounced;
        self.inbound_tls += o.inbound_tls;
        self.inbound_plain += o.inbound_plain;
        self.outbound_tls += o.outbound_tls;
        self.outbound_plain += o.outbound_plain;
    }
}

/// The last reload: when, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reload {
    /// Milliseconds since the epoch.
    pub at: u64,
    pub ok: bool,
    /// The summary of the new config, or why it was refused.
    pub message: String,
}

/// What the daemon counts for `tern status`.
#[derive(Debug)]
pub struct Activity {
    started: SystemTime,
    /// (minute since the epoch, its counts), indexed by minute % 60.
    minutes: Mutex<[(u64, Counts); WINDOW_MINUTES]>,
    listeners: Mutex<Vec<(SocketAddr, Role)>>,
    reload: Mutex<Option<Reload>>,
    acme: Mutex<Option<Reload>>,
}

/// This process's counters (made, and the uptime started, at first use:
/// the daemon calls this first thing).
pub fn activity() -> &'static Activity {
    static ACTIVITY: OnceLock<Activity> = OnceLock::new();
    ACTIVITY.get_or_init(|| Activity {
        started: SystemTime::now(),
        minutes: Mutex::new([(0, Counts::default()); WINDOW_MINUTES]),
        listeners: Mutex::default(),
        reload: Mutex::default(),
        acme: Mutex::default(),
    })
}

impl Activity {
    fn count(&self, f: impl FnOnce(&mut Counts)) {
        let minute = millis(SystemTime::now()) / 60_000;
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut minutes[(minute % WINDOW_MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, Counts::default());
        }
        f(&mut slot.1);
    }

    /// One recipient's delivery attempt came out as `outcome` (`expired`:
    /// a deferral past the queue lifetime, which bounces).
    pub fn delivery(&self, outcome: &Outcome, expired: bool) {
        self.count(|c| match outcome {
            Outcome::Delivered(_) => c.delivered += 1,
            Outcome::Failed(_) => c.bounced += 1,
            Outcome::Deferred(_) if expired => c.bounced += 1,
            Outcome::Deferred(_) => c.deferred += 1,
        });
    }

    /// A message was accepted from an SMTP client, over TLS or not.
    pub fn received(&self, tls: bool) {
        self.count(|c| match tls {
            true => c.inbound_tls += 1,
            false => c.inbound_plain += 1,
        });
    }

    /// A session with another server is ready to send, over TLS or not.
    pub fn sent_over(&self, tls: bool) {
        self.count(|c| match tls {
            true => c.outbound_tls += 1,
            false => c.outbound_plain += 1,
        });
    }

    /// The listeners bound at start.
    pub fn listening(&self, listeners: Vec<(SocketAddr, Role)>) {
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners;
    }

    /// A reload (SIGHUP) was applied (`Ok` with the summary) or refused.
    pub fn reloaded(&self, result: Result<String, String>) {
        let (ok, message) = match result {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reload {
            at: millis(SystemTime::now()),
            ok,
            message,
        });
    }

    /// The ACME task's latest outcome (`ok`: a certificate issued or loaded;
    /// otherwise why not).
    pub fn acme(&self, ok: bool, message: String) {
        *self.acme.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reload {
            at: millis(SystemTime::now()),
            ok,
            message,
        });
    }

    /// The ACME task's latest outcome, if it ran.
    pub fn last_acme(&self) -> Option<Reload> {
        self.acme.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// When this process's counters started (its uptime's start).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The listeners bound at start.
    pub fn listeners(&self) -> Vec<(SocketAddr, Role)> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last reload, if there was one.
    pub fn last_reload(&self) -> Option<Reload> {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sum of the last hour's minutes.
    pub fn last_hour(&self) -> Counts {
        let now = millis(SystemTime::now()) / 60_000;
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = Counts::default();
        for (minute, counts) in minutes.iter() {
            if now.saturating_sub(*minute) < WINDOW_MINUTES as u64 {
                sum.add(counts);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x() -> crate::queue::Diagnostic {
        crate::queue::Diagnostic::note(crate::smtp::EnhancedCode(2, 0, 0), "x")
    }

    #[test]
    fn counts_cover_the_last_hour() {
        let a = activity();
        let before = a.last_hour();
        a.delivery(&Outcome::Delivered(x()), false);
        a.delivery(&Outcome::Deferred(x()), false);
        a.delivery(&Outcome::Deferred(x()), true);
        a.received(true);
        a.sent_over(false);
        let after = a.last_hour();
        assert_eq!(after.delivered, before.delivered + 1);
        assert_eq!(after.deferred, before.deferred + 1);
        assert_eq!(after.bounced, before.bounced + 1);
        assert_eq!(after.inbound_tls, before.inbound_tls + 1);
        assert_eq!(after.outbound_plain, before.outbound_plain + 1);
    }
}
