//! The classic `sendmail` interface that cron, scripts and web applications
//! use (the binary installed as `sendmail`, or `tern sendmail`): reads the
//! message on stdin and has the running daemon queue it. Silent on success,
//! like sendmail; a clear message and a sysexits.h code otherwise (never a
//! silent drop: without a daemon nothing is accepted).
//!
//! - [`invocation`]: the flags, and turning the input into a message.
//!
//! The config is found as for every command ([`crate::config::Source`],
//! `-C` naming it). When tern.toml is not readable (root:tern 0640), other
//! users hand the message to the daemon's submission socket instead.
//!
//! Understood: `-t` (recipients from To/Cc/Bcc, Bcc removed), `-i` / `-oi`
//! (a line with a single dot does not end the input), `-f addr` / `-r addr`
//! (envelope sender), `-F name` (full name for a From: we add), `-C file`
//! (tern.toml to use), `--` (end of options), recipients as arguments. Other
//! `-o…` and `-b…`/`-d…`/`-v`/`-m`/`-n`/`-U` options that programs pass out of
//! habit are accepted and ignored; `-bp` means `mailq`.

pub mod invocation;

use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;
use std::time::SystemTime;

use crate::config::{ConfigError, Source};
use crate::control::command::{self, QueueCmd};
use crate::control::{self, Client, ControlError, FailureKind};
use crate::inbound::senders::login_of;

pub use invocation::{exit, parse_args, prepare, Defaults, Invocation, PrepareError, Prepared};

/// Runs sendmail with `args` (without the program name).
pub fn run(args: &[OsString]) -> ExitCode {
    let inv = match parse_args(args) {
        Ok(inv) => inv,
        Err(e) => return fail(exit::USAGE, &e.0),
    };
    let source = Source::find(inv.config.as_deref());
    if inv.list_queue {
        return match command::queue(&source, QueueCmd::List { json: false }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(exit::UNAVAILABLE, &e),
        };
    }
    // Where to hand the message over, and the two settings sendmail needs.
    let (socket, hostname, limit) = match source.load() {
        Ok(c) => (
            control::socket_path(&c.data_dir),
            c.hostname.clone(),
            c.limits.message_size,
        ),
        // tern.toml is root:tern 0640: other users (a web application, a
        // user's cron job) ask the daemon on the submission socket instead.
        Err(ConfigError::Io { error, .. })
            if error.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let socket = control::submit_socket_path();
            // This connection only asks; the message goes over a new one once
            // it is read (the daemon does not wait for a slow pipe).
            match Client::connect(&socket).and_then(|mut c| c.ping()) {
                Ok(info) => (socket, info.hostname, info.message_size),
                Err(ControlError::NotRunning(_)) => {
                    return fail(
                        exit::UNAVAILABLE,
                        &format!(
                            "the tern daemon is not running (nothing answers on {}); the message was NOT sent",
                            socket.display()
                        ),
                    )
                }
                Err(e) => return fail(exit::TEMPFAIL, &format!("message not sent: {e}")),
            }
        }
        Err(e) => return fail(exit::CONFIG, &e),
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut input)
    {
        return fail(exit::IOERR, &format!("cannot read the message: {e}"));
    }
    if input.len() as u64 > limit {
        return fail(
            exit::DATAERR,
            &format!("message larger than the limit of {limit} octets; not sent"),
        );
    }
    let login = login_of(nix::unistd::getuid().as_raw()).unwrap_or_else(|| "nobody".into());
    let sender = inv
        .sender
        .clone()
        .unwrap_or_else(|| format!("{login}@{hostname}"));
    let now = SystemTime::now();
    let unique = format!(
        "{}.{}",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0),
        std::process::id()
    );
    let defaults = Defaults {
        sender: if sender.is_empty() || sender == "<>" {
            "MAILER-DAEMON"
        } else {
            &sender
        },
        hostname: &hostname,
        date: &crate::date::rfc5322(now),
        unique: &unique,
    };
    let prepared = match prepare(&input, &inv, &defaults) {
        Ok(p) => p,
        Err(e) => return fail(e.exit_code(), &e),
    };
    let result = Client::connect(&socket)
        .or_else(|e| match e {
            // A readable tern.toml, but the data directory is not ours.
            ControlError::Io { error, .. }
                if error.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Client::connect(&control::submit_socket_path())
            }
            e => Err(e),
        })
        .and_then(|mut c| c.submit(&sender, &prepared.recipients, &prepared.content));
    match result {
        Ok(_) => ExitCode::from(exit::OK),
        Err(ControlError::NotRunning(_)) => fail(
            exit::UNAVAILABLE,
            &"the tern daemon is not running; the message was NOT sent (start it: systemctl start tern)",
        ),
        Err(ControlError::Refused(f)) => {
            let code = match f.kind {
                FailureKind::NoSuchUser => exit::NOUSER,
                FailureKind::BadAddress
                | FailureKind::TooBig
                | FailureKind::BadMessage
                | FailureKind::TooManyRecipients
                | FailureKind::Spam => exit::DATAERR,
                FailureKind::SenderRefused => exit::NOPERM,
                FailureKind::Io
                | FailureKind::Timeout
                | FailureKind::RateLimited
                | FailureKind::SpamDeferred => {
                    exit::TEMPFAIL
                }
                _ => exit::SOFTWARE,
            };
            fail(code, &format!("message not sent: {f}"))
        }
        Err(e) => fail(exit::TEMPFAIL, &format!("message not sent: {e}")),
    }
}

/// Says why on stderr, and exits with `code`.
fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sendmail: {message}");
    ExitCode::from(code)
}
