//! What `tern status` shows: one screen about the server. The running
//! daemon answers the control socket's `status` request with a
//! [`StatusReport`] ([`snapshot`]: version, uptime, listeners, queue counts,
//! deliveries and TLS share in the last hour, certificate expiry, free disk
//! against the reserve, last reload); with the daemon down, the command
//! (`control::command::status`) builds what it can from disk
//! ([`from_config`]: config, spool, certificate, disk) and says so.
//! [`format`] is the screen. The daemon's counters are the queue's
//! [`crate::queue::activity`].

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::check::certs;
use crate::config::Config;
use crate::queue::activity::{activity, Counts, Reload};
use crate::queue::listing::MessageSummary;
use crate::queue::spool::millis;
use crate::terminal::terminal_safe;

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

/// What config, queue, certificate and disk say (both sides share it:
/// `tern status` builds it alone when the daemon is down).
pub fn from_config(config: &Config, messages: &[MessageSummary]) -> StatusReport {
    let (file, _) = certs::served_file(config);
    let certificate = match crate::tls::leaf::read_leaf(&file) {
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
        .duration_since(a.started())
        .ok()
        .map(|d| d.as_secs());
    let bound = a.listeners();
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
    report.last_reload = a.last_reload();
    report.acme = a.last_acme();
    report
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
                format!("EXPIRED on {}", crate::date::ymd(until))
            } else {
                format!("valid until {} ({days} days)", crate::date::ymd(until))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
