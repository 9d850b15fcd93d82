//! The `tern` command line: parses arguments (clap) and hands off to the
//! module that owns the command. `tern serve` runs the daemon
//! ([`tern::daemon`]); `tern config check` validates a tern.toml
//! ([`tern::live::check`]); `tern queue …` manages queued mail
//! ([`tern::control::command`]); `tern dkim …` makes DKIM keys and prints
//! their DNS records ([`tern::dkim::command`]); `tern user passwd` hashes a
//! password ([`tern::inbound::passwd`]). Invoked as `mailq` (a symlink), it is
//! `tern queue list`; as `sendmail`, it is [`tern::sendmail`]. Every command
//! finds its config the same way ([`Source`]). `tern dns` prints every record
//! to publish and `tern check` looks them up live ([`tern::check`]); `tern
//! status` shows the daemon ([`tern::status`]). Exit codes: 0 ok, 1 error,
//! 2 usage.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern::config::Source;
use tern::control::command::QueueCmd;
use tern::dkim::command::DkimCmd;

/// tern: a mail server appliance for one owner.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about)]
struct Cli {
    /// The configuration file [default: $TERN_CONFIG, else /etc/tern/tern.toml
    /// if it exists, else the embedded default: a test instance on
    /// 127.0.0.1:2525 with data in ./tern-data]
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mail server in the foreground (systemd runs it this way).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Re-read the configuration, certificates and DKIM keys in the running
    /// daemon (as `systemctl reload tern`): prints the file's mistake, or
    /// the daemon's answer; exit 1 when the old configuration stays.
    Reload,
    /// Inspect the configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Manage queued mail: list, show, flush, hold, release, delete.
    Queue {
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
    Dns,
    /// Look up live whether the world can reach, trust and deliver to this
    /// server (DNS records, reverse DNS, certificate, blocklists, queue);
    /// exit 1 when a check fails. Changes nothing.
    Check {
        /// Print JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// One screen about the server: the daemon's uptime, listeners, queue,
    /// last hour's deliveries, TLS, certificate, disk, last reload (read
    /// from disk, and marked so, when the daemon is down).
    Status {
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
    /// first mistake as file:line:col and exit 1. Without a path, the file in
    /// force (see --config), and which one that is.
    Check {
        /// The file to check
        path: Option<PathBuf>,
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
        Some("sendmail") => return tern::sendmail::run(&args[1..]),
        _ => args,
    };
    let cli = Cli::parse_from(args);
    let source = || Source::find(cli.config.as_deref());
    match cli.command {
        Command::Serve => tern::daemon::serve(&source()),
        Command::User {
            cmd: UserCmd::Passwd { name },
        } => tern::inbound::passwd::run(name.as_deref()),
        Command::Config {
            cmd: ConfigCmd::Check { path: Some(path) },
        } => tern::live::check(&Source::Given(path), false),
        Command::Config {
            cmd: ConfigCmd::Check { path: None },
        } => tern::live::check(&source(), true),
        Command::Queue { cmd } => tern::control::command::run(&source(), cmd),
        Command::Reload => tern::control::command::reload(&source()),
        Command::Dkim { cmd } => tern::dkim::command::run(&source(), cmd),
        Command::Sendmail { args } => tern::sendmail::run(&args),
        Command::Dns => ExitCode::from(tern::check::dns_cli(&source())),
        Command::Check { json } => ExitCode::from(tern::check::check_cli(
            &source(),
            json,
            tern::control::command::queued_messages,
        )),
        Command::Status { json } => ExitCode::from(tern::control::command::status(&source(), json)),
    }
}

/// The file name the program was started as (`mailq` for /usr/bin/mailq).
fn invoked_as(argv0: Option<&OsString>) -> Option<String> {
    let name = Path::new(argv0?).file_name()?;
    Some(name.to_string_lossy().into_owned())
}
