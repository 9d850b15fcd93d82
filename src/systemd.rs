//! Talking to systemd and the log: `sd_notify` messages (READY=1, STOPPING=1,
//! RELOADING=1, WATCHDOG=1, STATUS=...) over `$NOTIFY_SOCKET`, the watchdog
//! interval, and the logger: the journal (with structured fields such as
//! QUEUE_ID, PEER, ACTION, RCPT from the log records' key-values, so
//! `journalctl -u tern QUEUE_ID=...` follows one message) when stderr is
//! connected to it, plain lines on stderr otherwise.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// Sends one notification to systemd; does nothing when not started by
/// systemd (no `$NOTIFY_SOCKET`).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        log::warn!("sd_notify {state:?} failed: {e}");
    }
}

/// A logger writing `TIME LEVEL message` lines to stderr.
struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            // One write per line: lines of concurrent tasks never interleave,
            // and one system call instead of one per formatted piece.
            let line = format!(
                "{} {} {}\n",
                crate::date::iso8601(std::time::SystemTime::now()),
                record.level(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: the journal when systemd connected stderr to it,
/// stderr otherwise. `TERN_LOG` (error, warn, info, debug, trace) sets the
/// level; the default is info.
pub fn init_logging() {
    let level = std::env::var("TERN_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    let journal = logging_to_journal()
        .then(systemd_journal_logger::JournalLog::new)
        .and_then(Result::ok)
        .map(|j| {
            j.with_syslog_identifier("tern".to_string())
                .install()
                .is_ok()
        });
    if journal != Some(true) && log::set_boxed_logger(Box::new(StderrLogger { level })).is_err() {
        return;
    }
    log::set_max_level(level);
}

/// True when systemd connected our output to the journal.
pub fn logging_to_journal() -> bool {
    systemd_journal_logger::connected_to_journal()
}

/// How often to send WATCHDOG=1: half the interval systemd expects
/// (`$WATCHDOG_USEC`), if it asked for pings and they are meant for us.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

/// `RELOADING=1` with the monotonic timestamp systemd 253+ wants.
pub fn notify_reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
}
