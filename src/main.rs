//! The `tern` command line: parses arguments (clap) and hands off to the library.
//! `tern serve` runs the daemon; `tern config check` validates a tern.toml;
//! `tern queue …` manages queued mail through the daemon's control socket (or
//! reads the spool when the daemon is down). Invoked as `mailq` (a symlink),
//! it is `tern queue list`. Exit codes: 0 ok, 1 error, 2 usage.
//! `tern dkim keygen` and `tern dkim dns` make DKIM keys and print their DNS
//! records. `tern dns` prints every record to publish, `tern check` looks
//! them up live (both in [`tern::check`]); `tern status` shows the daemon
//! ([`tern::status`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use tern::config::{Config, ConfigError};
use tern::control::{self, Client, ControlError};
use tern::dkim::keys::{self, KeyKind};
use tern::dkim::Signer;
use tern::queue::listing;
use tern::queue::{QueueId, SpoolError};

/// Where `tern config check` looks when no path is given.
const DEFAULT_CONFIG_PATH: &str = "/etc/tern/tern.toml";

/// tern: a mail server appliance for one owner.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mail server in the foreground (systemd runs it this way).
    Serve {
        /// The configuration file [default: the embedded default config: a test
        /// instance on 127.0.0.1:2525 with data in ./tern-data]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Inspect the configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Manage queued mail: list, show, flush, hold, release, delete.
    Queue {
        /// The configuration file (it names the data directory)
        #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: QueueCmd,
    },
    /// DKIM keys and the DNS records that publish them.
    Dkim {
        #[command(subcommand)]
        cmd: DkimCmd,
    },
    /// Print every DNS record the domains need (MX, SPF, DKIM, DMARC, the
    /// hostname's addresses, the PTR to ask for) as zone-file snippets.
    Dns {
        /// The configuration file
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Look up live whether the world can reach, trust and deliver to this
    /// server (DNS records, reverse DNS, certificate, blocklists, queue);
    /// exit 1 when a check fails. Changes nothing.
    Check {
        /// The configuration file
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// One screen about the server: the daemon's uptime, listeners, queue,
    /// last hour's deliveries, TLS, certificate, disk, last reload (read
    /// from disk, and marked so, when the daemon is down).
    Status {
        /// The configuration file
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The sendmail interface (also when invoked as `sendmail`): reads a
    /// message on stdin and hands it to the running daemon. Flags: -t -i -oi
    /// -f ADDR -F NAME -C CONFIG, then recipients. Exit codes from sysexits.h.
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// `tern queue …`
#[derive(Debug, Subcommand)]
enum QueueCmd {
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

/// `tern user …`
#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Read a password (twice, without echo; or one line from a pipe) and print
    /// the `password = "$argon2id$..."` line to paste into the user's [[user]]
    /// table in tern.toml.
    Passwd {
        /// The user, only for the comment printed with the line.
        name: Option<String>,
    },
}

/// `tern config …`
#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate a tern.toml: print a one-line summary and exit 0, or print the
    /// first mistake as file:line:col and exit 1.
    Check {
        /// The file to check [default: /etc/tern/tern.toml]
        path: Option<PathBuf>,
    },
}

/// `tern dkim …`
#[derive(Debug, Subcommand)]
enum DkimCmd {
    /// Generate a domain's DKIM keys (RSA 2048 and Ed25519, mode 0600) into
    /// the configured key directory and print the DNS TXT records to publish.
    Keygen {
        /// The domain mail is signed for, e.g. example.org
        #[arg(long, required_unless_present = "all_missing")]
        domain: Option<String>,
        /// Every signing domain that has no keys yet (first boot); domains
        /// with keys are left alone
        #[arg(long, conflicts_with_all = ["domain", "force"])]
        all_missing: bool,
        /// The base selector; the keys get <selector>-rsa and
        /// <selector>-ed25519 [default: selector of [dkim], or "tern"]
        #[arg(long)]
        selector: Option<String>,
        /// The configuration file [default: /etc/tern/tern.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the keys into this directory instead of [dkim] keys
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace existing keys (the old DNS records stop working)
        #[arg(long)]
        force: bool,
    },
    /// Print the DNS TXT records of every signing domain again.
    Dns {
        /// The configuration file [default: /etc/tern/tern.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // argv[0] dispatch: the same binary installed under other names.
    let args = match invoked_as(args.first()).as_deref() {
        // `mailq [--config PATH] [--json]` = `tern queue list …`.
        Some("mailq") => ["tern", "queue", "list"]
            .map(OsString::from)
            .into_iter()
            .chain(args.into_iter().skip(1))
            .collect(),
        // sendmail's own flags (-t, -i, -oi, -f, -F, recipients), not clap's.
        Some("sendmail") => return sendmail(&args[1..]),
        _ => args,
    };
    match Cli::parse_from(args).command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::User {
            cmd: UserCmd::Passwd { name },
        } => user_passwd(name.as_deref()),
        Command::Config {
            cmd: ConfigCmd::Check { path },
        } => config_check(path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_PATH))),
        Command::Queue { config, cmd } => match queue(&config, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tern: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Dkim { cmd } => dkim(cmd),
        Command::Sendmail { args } => sendmail(&args),
        Command::Dns { config } => ExitCode::from(tern::check::dns_cli(&config)),
        Command::Check { config, json } => ExitCode::from(tern::check::check_cli(&config, json)),
        Command::Status { config, json } => ExitCode::from(tern::status::cli(&config, json)),
    }
}

/// The file name the program was started as (`mailq` for /usr/bin/mailq).
fn invoked_as(argv0: Option<&OsString>) -> Option<String> {
    let name = Path::new(argv0?).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

/// `tern queue …`: through the daemon; `list` and `show` fall back to reading
/// the spool when no daemon answers. Changes need the daemon: it alone writes
/// the spool (two writers would corrupt its log).
fn queue(config_path: &Path, cmd: QueueCmd) -> anyhow::Result<()> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = control::socket_path(&config.data_dir);
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
                println!("{}", listing::to_json(&messages)?);
            } else {
                print!("{}", listing::format_list(&messages, now));
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
                println!("{}", listing::to_json(&details)?);
            } else {
                print!("{}", listing::format_details(&details, now));
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

/// `tern serve`: runs until SIGTERM or SIGINT.
fn serve(path: Option<&Path>) -> ExitCode {
    tern::systemd::init_logging();
    let config = match path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default_config(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tern::daemon::run(config, path.map(Path::to_path_buf))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tern config check`: the summary on stdout, or the error on stderr. The
/// DKIM keys the file names must be there and usable.
fn config_check(path: &Path) -> ExitCode {
    match Config::load(path).and_then(|c| Signer::from_config(&c).map(|_| c)) {
        Ok(config) => {
            println!("{}", config.summary(path));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `tern user passwd`: prints the hash line for tern.toml.
fn user_passwd(name: Option<&str>) -> ExitCode {
    let password = match read_new_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tern: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tern::inbound::auth::hash_password(&password) {
        Ok(hash) => {
            if let Some(name) = name {
                println!("# [[user]] name = \"{name}\"");
            }
            println!("password = \"{hash}\"");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A new password: from the terminal without echo (asked twice), or one line
/// from standard input when it is not a terminal.
fn read_new_password() -> Result<String, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        return if password.is_empty() {
            Err("empty password".into())
        } else {
            Ok(password)
        };
    }
    let ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let line = without_echo(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .map_err(|e| format!("cannot read the password: {e}"))?;
        eprintln!();
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("New password: ")?;
    if first.is_empty() {
        return Err("empty password".into());
    }
    if ask("Again: ")? != first {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// Runs `f` with terminal echo off, restoring it afterwards.
fn without_echo<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let result = f();
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    result
}

/// `tern dkim keygen` and `tern dkim dns`: records on stdout, the rest on
/// stderr.
fn dkim(cmd: DkimCmd) -> ExitCode {
    let config_path = |c: Option<PathBuf>| c.unwrap_or_else(|| DEFAULT_CONFIG_PATH.into());
    let result: Result<Vec<tern::dkim::keys::DomainKeys>, tern::dkim::DkimError> = match cmd {
        DkimCmd::Keygen {
            domain,
            all_missing: _,
            selector,
            config,
            dir,
            force,
        } => {
            // With --dir and --domain alone, no config is needed.
            let config = match (&dir, config, &domain) {
                (Some(_), None, Some(_)) => None,
                (_, path, _) => match Config::load(&config_path(path)) {
                    Ok(config) => Some(config),
                    Err(e) => return fail(&e),
                },
            };
            let dkim = config.as_ref().and_then(|c| c.dkim.as_ref());
            let dir = dir
                .or_else(|| dkim.map(|d| d.keys_dir.clone()))
                .or_else(|| config.as_ref().map(|c| c.data_dir.join("dkim")))
                .unwrap_or_default();
            let selector = selector
                .or_else(|| dkim.map(|d| d.selector.clone()))
                .unwrap_or_else(|| tern::config::DEFAULT_DKIM_SELECTOR.into());
            let wanted: Vec<String> = match (domain, &config) {
                (Some(d), _) => vec![d],
                (None, Some(c)) => {
                    let all = dkim.map_or(&c.domains, |d| &d.domains);
                    let missing = |d: &&String| {
                        !KeyKind::ALL
                            .iter()
                            .all(|k| k.path(&dir, d, &selector).is_file())
                    };
                    all.iter().filter(missing).cloned().collect()
                }
                (None, None) => Vec::new(),
            };
            let mut made = Vec::new();
            for domain in wanted {
                match keys::keygen(&dir, &domain, &selector, force) {
                    Ok(keys) => {
                        for kind in KeyKind::ALL {
                            eprintln!(
                                "wrote {}",
                                kind.path(&dir, &keys.domain, &keys.selector).display()
                            );
                        }
                        match (&config, dkim) {
                            (_, Some(d)) if !d.domains.contains(&keys.domain) => eprintln!(
                                "note: mail from {} is not signed until [dkim] domains lists it",
                                keys.domain
                            ),
                            _ => {}
                        }
                        eprintln!("publish these DNS records in the zone of {}:", keys.domain);
                        made.push(keys);
                    }
                    Err(e) => return fail(&e),
                }
            }
            Ok(made)
        }
        DkimCmd::Dns { config } => {
            let path = config_path(config);
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match Signer::from_config(&config) {
                Ok(Some(signer)) => Ok(signer.into_domains()),
                Ok(None) => {
                    eprintln!(
                        "{}: no DKIM keys in {}: nothing is signed (tern dkim keygen --all-missing)",
                        path.display(),
                        config.data_dir.join("dkim").display()
                    );
                    return ExitCode::FAILURE;
                }
                Err(e) => return fail(&e),
            }
        }
    };
    match result {
        Ok(domains) => {
            for record in domains.iter().flat_map(|keys| keys.dns_records()) {
                println!("{record}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Prints `error` and fails.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{error}");
    ExitCode::FAILURE
}

/// `sendmail`: reads the message, has the daemon queue it. Silent on
/// success, like sendmail; a clear message and a sysexits.h code otherwise
/// (never a silent drop: without a daemon nothing is accepted).
fn sendmail(args: &[OsString]) -> ExitCode {
    use std::io::Read;
    use tern::sendmail::{exit, parse_args, prepare, Defaults};
    let fail = |code: u8, message: &dyn std::fmt::Display| {
        eprintln!("sendmail: {message}");
        ExitCode::from(code)
    };
    let inv = match parse_args(args) {
        Ok(inv) => inv,
        Err(e) => return fail(exit::USAGE, &e.0),
    };
    let config_path = inv
        .config
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into());
    if inv.list_queue {
        return match queue(&config_path, QueueCmd::List { json: false }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(exit::UNAVAILABLE, &e),
        };
    }
    // Where to hand the message over, and the two settings sendmail needs.
    let (socket, hostname, limit) = match Config::load(&config_path) {
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
    let login = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "nobody".to_string(), |u| u.name);
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
        date: &tern::smtp::date::rfc5322(now),
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
                control::FailureKind::NoSuchUser => exit::NOUSER,
                control::FailureKind::BadAddress
                | control::FailureKind::TooBig
                | control::FailureKind::BadMessage
                | control::FailureKind::TooManyRecipients => exit::DATAERR,
                control::FailureKind::SenderRefused => exit::NOPERM,
                control::FailureKind::Io
                | control::FailureKind::Timeout
                | control::FailureKind::RateLimited => exit::TEMPFAIL,
                _ => exit::SOFTWARE,
            };
            fail(code, &format!("message not sent: {f}"))
        }
        Err(e) => fail(exit::TEMPFAIL, &format!("message not sent: {e}")),
    }
}
