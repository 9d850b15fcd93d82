//! `tern queue …` (and `mailq`): manage queued mail through the daemon's
//! control socket; `list` and `show` fall back to reading the spool when no
//! daemon answers. Changes need the daemon: it alone writes the spool (two
//! writers would corrupt its log). Also `tern reload`, which asks the
//! daemon to re-read its configuration and prints its answer, and `tern
//! status`, which asks for the daemon's [`StatusReport`] (or builds it
//! from disk when no daemon answers).

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;

use crate::config::{Config, Source};
use crate::queue::listing::{self, MessageSummary};
use crate::queue::{QueueId, SpoolError};
use crate::status::{self, StatusReport};
use crate::terminal::{print_report, to_json};

use super::display;
use super::{socket_path, Client, ControlError, Reply, Request};

/// `tern queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages (also what `mailq` prints). Works read-only from
    /// the spool when the daemon is not running.
    List {
        /// Print JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Show one message: envelope, recipients and their status, headers.
    /// Works read-only from the spool when the daemon is not running.
    Show {
        id: QueueId,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Retry deferred messages now: one, or all of them.
    Flush { id: Option<QueueId> },
    /// Stop delivery attempts of a message until it is released.
    Hold { id: QueueId },
    /// Let a held message be delivered again (at once).
    Release { id: QueueId },
    /// Remove a message from the queue.
    Delete {
        id: QueueId,
        /// Tell the sender (a bounce) that the pending recipients were not delivered
        #[arg(long)]
        bounce: bool,
    },
}

/// Runs `cmd` against the daemon (or the spool) of the config from `source`;
/// errors on stderr.
pub fn run(source: &Source, cmd: QueueCmd) -> ExitCode {
    match queue(source, cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tern reload` (and systemd's ExecReload): checks the file from `source`
/// and prints its mistake without disturbing the daemon, or asks the
/// daemon to reload and prints what it says: `reloaded: <file>: <summary>` (exit
/// 0) or why it kept the configuration in force (exit 1). The daemon reads
/// the file it was started with, and also loads the certificates and DKIM
/// keys, which a check of the file alone does not.
pub fn reload(source: &Source) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("tern: not reloaded; the daemon keeps the configuration in force");
            // The file names no data directory now, but a daemon under
            // systemd also listens on the submission socket: asked there,
            // it reads the file, refuses it too, and keeps the reason on
            // its status line (`systemctl status tern`, `tern status`).
            if let Ok(mut client) = Client::connect(&super::submit_socket_path()) {
                let _ = client.reload();
            }
            return ExitCode::FAILURE;
        }
    };
    let answer = Client::connect(&socket_path(&config.data_dir)).and_then(|mut c| c.reload());
    match answer {
        Ok(summary) => {
            println!(
                "reloaded: {}",
                summary.strip_prefix("ok: ").unwrap_or(&summary)
            );
            ExitCode::SUCCESS
        }
        Err(ControlError::Refused(failure)) => {
            eprintln!("{failure}");
            eprintln!("tern: reload refused; the daemon keeps the configuration in force");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tern status`'s report: the daemon's answer, or what the disk says when
/// it is down.
pub fn status_report(source: &Source) -> Result<StatusReport, String> {
    let config = source.load().map_err(|e| e.to_string())?;
    let socket = socket_path(&config.data_dir);
    let asked = Client::connect(&socket).and_then(|mut c| c.request(&Request::Status));
    match asked {
        Ok(Reply::Status { status }) => Ok(*status),
        Ok(_) => Err("the daemon answered status with something else".into()),
        Err(ControlError::NotRunning(_)) => {
            let messages = listing::inspect_list(&config.spool_dir())
                .map_err(|e| format!("cannot read the spool: {e}"))?;
            Ok(status::from_config(&config, &messages))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `tern status` on the command line; the exit code (0 also when the
/// daemon is down: the screen says so).
pub fn status(source: &Source, json: bool) -> u8 {
    let report = match status_report(source) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern: {e}");
            return 1;
        }
    };
    let text = |r: &StatusReport| status::format(r, SystemTime::now());
    u8::from(!print_report(&report, json, text))
}

/// The queued messages: the daemon's list, or the spool's (read-only) when
/// no daemon answers; for `tern check`.
pub fn queued_messages(config: &Config) -> Result<Vec<MessageSummary>, String> {
    match Client::connect(&socket_path(&config.data_dir)).and_then(|mut c| c.list()) {
        Ok(messages) => Ok(messages),
        Err(ControlError::NotRunning(_)) => listing::inspect_list(&config.spool_dir())
            .map_err(|e| format!("cannot read the spool: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `tern queue …`, errors returned.
pub fn queue(source: &Source, cmd: QueueCmd) -> anyhow::Result<()> {
    let config = source.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = socket_path(&config.data_dir);
    let mut client = match Client::connect(&socket) {
        Ok(client) => Some(client),
        Err(ControlError::NotRunning(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let spool_dir = config.spool_dir();
    let read_only = || {
        eprintln!(
            "tern: the daemon is not running; reading the spool in {} (read-only)",
            spool_dir.display()
        );
    };
    let now = SystemTime::now();
    match cmd {
        QueueCmd::List { json } => {
            let messages = match &mut client {
                Some(c) => c.list()?,
                None => {
                    read_only();
                    listing::inspect_list(&spool_dir).map_err(|e| spool_error(&spool_dir, e))?
                }
            };
            if json {
                println!("{}", to_json(&messages)?);
            } else {
                print!("{}", display::format_list(&messages, now));
                // Spool bytes the start-up scan could not read (issue 14.4).
                let (pieces, bytes) = crate::queue::scan::damaged_summary(&spool_dir);
                if pieces > 0 {
                    println!(
                        "{pieces} damaged piece(s) of the spool ({bytes} bytes) set aside in {} \
                         (the log says what and where)",
                        crate::queue::scan::damaged_dir(&spool_dir).display()
                    );
                }
            }
        }
        QueueCmd::Show { id, json } => {
            let details = match &mut client {
                Some(c) => c.show(id)?,
                None => {
                    read_only();
                    listing::inspect_details(&spool_dir, id)
                        .map_err(|e| spool_error(&spool_dir, e))?
                }
            };
            if json {
                println!("{}", to_json(&details)?);
            } else {
                print!("{}", display::format_details(&details, now));
            }
        }
        QueueCmd::Flush { id } => flush(daemon(&mut client, &socket)?, id)?,
        QueueCmd::Hold { id } => {
            daemon(&mut client, &socket)?.hold(id)?;
            println!("{id}: held");
        }
        QueueCmd::Release { id } => {
            daemon(&mut client, &socket)?.release(id)?;
            println!("{id}: released; will be tried now");
        }
        QueueCmd::Delete { id, bounce } => {
            daemon(&mut client, &socket)?.delete(id, bounce)?;
            if bounce {
                println!("{id}: deleted; the sender is told (unless it is <>)");
            } else {
                println!("{id}: deleted");
            }
        }
    }
    Ok(())
}

/// A spool error on one line (its message already names the cause).
fn spool_error(spool_dir: &Path, e: SpoolError) -> anyhow::Error {
    match e {
        SpoolError::NotFound(_) => anyhow::anyhow!("{e}"),
        _ => anyhow::anyhow!("cannot read the spool in {}: {e}", spool_dir.display()),
    }
}

/// The connection to the daemon, which every change to the queue needs.
fn daemon<'a>(client: &'a mut Option<Client>, socket: &Path) -> anyhow::Result<&'a mut Client> {
    client.as_mut().ok_or_else(|| {
        anyhow::anyhow!(
            "the daemon is not running (nothing answers on {}); changes to the queue \
             need it: start it (systemctl start tern) and try again",
            socket.display()
        )
    })
}

/// `tern queue flush [ID]`.
fn flush(c: &mut Client, id: Option<QueueId>) -> anyhow::Result<()> {
    let (scheduled, held) = c.flush(id)?;
    match id {
        None if held > 0 => println!(
            "{scheduled} deferred message(s) will be tried now; {held} held message(s) left alone"
        ),
        None => println!("{scheduled} deferred message(s) will be tried now"),
        Some(id) if held > 0 => {
            anyhow::bail!("{id} is held; release it (tern queue release {id}) to deliver it")
        }
        Some(id) if scheduled == 0 => println!("{id}: already due; delivery is under way"),
        Some(id) => println!("{id}: will be tried now"),
    }
    Ok(())
}
