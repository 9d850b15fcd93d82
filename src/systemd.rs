//! Talking to systemd and the log: `sd_notify` messages (READY=1, STOPPING=1,
//! RELOADING=1, WATCHDOG=1, STATUS=...) over `$NOTIFY_SOCKET`, and the logger
//! (stderr, one line per event, `key=value` fields).

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

/// A logger writing `LEVEL message` lines to stderr.
struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `TERN_LOG` (error, warn, info, debug, trace) sets the
/// level; the default is info.
pub fn init_logging() {
    let level = std::env::var("TERN_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_boxed_logger(Box::new(StderrLogger { level })).is_ok() {
        log::set_max_level(level);
    }
}
