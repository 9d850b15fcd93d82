//! `tern status`: one screen about the server. The running daemon answers
//! the control socket's `status` request with a [`StatusReport`] (version,
//! uptime, listeners, queue counts, deliveries and TLS share in the last
//! hour, certificate expiry, free disk against the reserve, last reload);
//! with the daemon down, the command builds what it can from disk (config,
//! spool, certificate, disk) and says so.
//!
//! The daemon's counters live in [`Activity`], one per process
//! ([`activity`]): per-minute buckets of the last hour, bounded whatever
//! the traffic. The scheduler, the listeners, the SMTP client and reload
//! each record into it with one call.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::check::certs;
use crate::config::{Config, Role, Source};
use crate::control::display::terminal_safe;
use crate::control::{self, Client, ControlError, Reply, Request};
use crate::queue::listing::{self, MessageSummary};
use crate::queue::Outcome;

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

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// Messages in the queue by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub total: usize,
    /// Tried, waiting for the next attempt (not held).
    pub deferred: usize,
    pub held: usize,
    /// Not tried yet.
    pub waiting: usize,
    /// When the oldest was received (ms since the epoch).
    pub oldest: Option<u64>,
}

impl QueueCounts {
    pub fn of(messages: &[MessageSummary]) -> QueueCounts {
        QueueCounts {
            total: messages.len(),
            deferred: messages
                .iter()
                .filter(|m| !m.held && m.attempts > 0)
                .count(),
            held: messages.iter().filter(|m| m.held).count(),
            waiting: messages
                .iter()
                .filter(|m| !m.held && m.attempts == 0)
                .count(),
            oldest: messages.iter().map(|m| m.received_at).min(),
        }
    }
}

/// The certificate tern serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    pub file: String,
    /// Seconds since the epoch.
    pub not_after: Option<i64>,
    pub self_signed: bool,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerView {
    pub address: String,
    pub role: String,
}

/// Everything `tern status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon answered (false: read from disk by the command).
    pub running: bool,
    pub version: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub listeners: Vec<ListenerView>,
    pub queue: QueueCounts,
    /// Unknown (None) when the daemon is down.
    pub last_hour: Option<Counts>,
    pub certificate: CertificateView,
    /// Free space on data_dir's filesystem, and the reserve kept.
    pub disk_free: Option<u64>,
    pub disk_reserve: u64,
    pub last_reload: Option<Reload>,
    /// The ACME task's latest outcome (`[acme]` on and the daemon running).
    #[serde(default)]
    pub acme: Option<Reload>,
}

/// What config, queue, certificate and disk say (both sides share it).
fn from_config(config: &Config, messages: &[MessageSummary]) -> StatusReport {
    let (file, _) = certs::served_file(config);
    let certificate = match certs::read_leaf(&file) {
        Ok(leaf) => CertificateView {
            file: file.display().to_string(),
            not_after: Some(leaf.not_after),
            self_signed: leaf.self_signed,
            error: None,
        },
        Err(e) => CertificateView {
            file: file.display().to_string(),
            not_after: None,
            self_signed: false,
            error: Some(e),
        },
    };
    StatusReport {
        running: false,
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: None,
        uptime_secs: None,
        listeners: config
            .listeners
            .iter()
            .map(|l| ListenerView {
                address: l.address.to_string(),
                role: l.role.name().to_string(),
            })
            .collect(),
        queue: QueueCounts::of(messages),
        last_hour: None,
        certificate,
        disk_free: crate::queue::free_space::available_now(&config.data_dir).ok(),
        disk_reserve: config.limits.free_space,
        last_reload: None,
        acme: None,
    }
}

/// The daemon's answer to `status`.
pub fn snapshot(config: &Config, messages: &[MessageSummary]) -> StatusReport {
    let a = activity();
    let mut report = from_config(config, messages);
    report.running = true;
    report.pid = Some(std::process::id());
    report.uptime_secs = SystemTime::now()
        .duration_since(a.started)
        .ok()
        .map(|d| d.as_secs());
    let bound = a
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !bound.is_empty() {
        report.listeners = bound
            .iter()
            .map(|(address, role)| ListenerView {
                address: address.to_string(),
                role: role.name().to_string(),
            })
            .collect();
    }
    report.last_hour = Some(a.last_hour());
    report.last_reload = a.reload.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report.acme = a.acme.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report
}

/// `tern status`: asks the daemon, or reads the disk when it is down.
pub fn report(source: &Source) -> Result<StatusReport, String> {
    let config = source.load().map_err(|e| e.to_string())?;
    let socket = control::socket_path(&config.data_dir);
    let asked = Client::connect(&socket).and_then(|mut c| c.request(&Request::Status));
    match asked {
        Ok(Reply::Status { status }) => Ok(*status),
        Ok(_) => Err("the daemon answered status with something else".into()),
        Err(ControlError::NotRunning(_)) => {
            let messages = listing::inspect_list(&config.spool_dir())
                .map_err(|e| format!("cannot read the spool: {e}"))?;
            Ok(from_config(&config, &messages))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `1h 5m`, `3d 2h`, `42s`.
fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `1.2 GB`.
fn size(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// `3 of 4 messages (75%)`.
fn share(tls: u64, plain: u64, what: &str) -> String {
    let all = tls + plain;
    if all == 0 {
        return format!("no {what} yet");
    }
    format!("{tls} of {all} {what} ({}%)", tls * 100 / all)
}

/// The screen for people, at `now`.
pub fn format(r: &StatusReport, now: SystemTime) -> String {
    let mut out = String::new();
    let now_ms = millis(now);
    let unknown = "unknown (the daemon is not running)";
    let state = match (r.running, r.pid, r.uptime_secs) {
        (true, Some(pid), Some(up)) => format!("running (pid {pid}), up {}", duration(up)),
        (true, _, _) => "running".into(),
        (false, _, _) => "NOT RUNNING: what follows is read from disk".into(),
    };
    let _ = writeln!(out, "tern {}: {state}", r.version);
    let listeners: Vec<String> = r
        .listeners
        .iter()
        .map(|l| format!("{} {}", l.role, l.address))
        .collect();
    let _ = writeln!(
        out,
        "listeners:    {}{}",
        listeners.join(", "),
        if r.running { "" } else { " (configured)" }
    );
    let q = &r.queue;
    let oldest = q.oldest.map_or(String::new(), |t| {
        format!("; oldest {}", duration(now_ms.saturating_sub(t) / 1000))
    });
    let _ = writeln!(
        out,
        "queue:        {} message(s): {} deferred, {} held, {} waiting{oldest}",
        q.total, q.deferred, q.held, q.waiting
    );
    match &r.last_hour {
        Some(c) => {
            let _ = writeln!(
                out,
                "last hour:    {} delivered, {} deferred, {} bounced (recipients)",
                c.delivered, c.deferred, c.bounced
            );
            let _ = writeln!(
                out,
                "TLS:          inbound {}, outbound {}",
                share(c.inbound_tls, c.inbound_plain, "messages"),
                share(c.outbound_tls, c.outbound_plain, "sessions")
            );
        }
        None => {
            let _ = writeln!(out, "last hour:    {unknown}");
            let _ = writeln!(out, "TLS:          {unknown}");
        }
    }
    let cert = &r.certificate;
    let cert_line = match (cert.not_after, &cert.error) {
        (Some(until), _) => {
            let days = (until - now_ms as i64 / 1000).div_euclid(86_400);
            let when = if days < 0 {
                format!("EXPIRED on {}", certs::date(until))
            } else {
                format!("valid until {} ({days} days)", certs::date(until))
            };
            format!(
                "{when}{}",
                if cert.self_signed {
                    ", self-signed"
                } else {
                    ""
                }
            )
        }
        (None, Some(e)) => e.clone(),
        (None, None) => "unknown".into(),
    };
    let _ = writeln!(out, "certificate:  {}: {cert_line}", cert.file);
    let disk = match r.disk_free {
        Some(free) if r.disk_reserve > 0 && free < r.disk_reserve => format!(
            "{} free, BELOW the reserve of {}: new mail is refused for now",
            size(free),
            size(r.disk_reserve)
        ),
        Some(free) if r.disk_reserve > 0 => {
            format!("{} free; reserve {}", size(free), size(r.disk_reserve))
        }
        Some(free) => format!("{} free; no reserve", size(free)),
        None => "unknown".into(),
    };
    let _ = writeln!(out, "disk:         {disk}");
    let reload = match (&r.last_reload, r.running) {
        (_, false) => unknown.to_string(),
        (None, true) => "none since start".into(),
        (Some(rl), true) => format!(
            "{} ago, {}: {}",
            duration(now_ms.saturating_sub(rl.at) / 1000),
            if rl.ok { "applied" } else { "REFUSED" },
            rl.message
        ),
    };
    let _ = writeln!(out, "last reload:  {reload}");
    if let Some(acme) = &r.acme {
        let _ = writeln!(
            out,
            "acme:         {} ago, {}: {}",
            duration(now_ms.saturating_sub(acme.at) / 1000),
            if acme.ok { "ok" } else { "FAILED" },
            acme.message
        );
    }
    // Reload messages and paths are the owner's text; still, no escape
    // sequences reach the terminal.
    out.lines().map(|l| terminal_safe(l) + "\n").collect()
}

/// `tern status` on the command line; the exit code (0 also when the
/// daemon is down: the screen says so).
pub fn cli(source: &Source, json: bool) -> u8 {
    let report = match report(source) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern: {e}");
            return 1;
        }
    };
    let text = |r: &StatusReport| format(r, SystemTime::now());
    u8::from(!crate::control::display::print_report(&report, json, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x() -> crate::queue::Diagnostic {
        crate::queue::Diagnostic::note(crate::smtp::EnhancedCode(2, 0, 0), "x")
    }
    use std::time::Duration;

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

    #[test]
    fn the_screen_says_when_the_daemon_is_down() {
        let report = StatusReport {
            running: false,
            version: "0.1.0".into(),
            pid: None,
            uptime_secs: None,
            listeners: vec![ListenerView {
                address: "0.0.0.0:25".into(),
                role: "mx".into(),
            }],
            queue: QueueCounts {
                total: 2,
                deferred: 1,
                held: 1,
                waiting: 0,
                oldest: Some(0),
            },
            last_hour: None,
            certificate: CertificateView {
                file: "/x/cert.pem".into(),
                not_after: Some(86_400 * 10),
                self_signed: true,
                error: None,
            },
            disk_free: Some(3 << 30),
            disk_reserve: 1 << 30,
            last_reload: None,
            acme: None,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(3600);
        let text = format(&report, now);
        for line in [
            "tern 0.1.0: NOT RUNNING: what follows is read from disk\n",
            "listeners:    mx 0.0.0.0:25 (configured)\n",
            "queue:        2 message(s): 1 deferred, 1 held, 0 waiting; oldest 1h 0m\n",
            "last hour:    unknown (the daemon is not running)\n",
            "certificate:  /x/cert.pem: valid until 1970-01-11 (9 days), self-signed\n",
            "disk:         3.0 GB free; reserve 1.0 GB\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
    }
}
