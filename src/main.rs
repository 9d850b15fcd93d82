//! The `tern` command line: parses arguments (clap) and hands off to the library.
//! `tern serve` runs the daemon; `tern config check` validates a tern.toml.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern::config::Config;

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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::User {
            cmd: UserCmd::Passwd { name },
        } => user_passwd(name.as_deref()),
        Command::Config {
            cmd: ConfigCmd::Check { path },
        } => config_check(path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_PATH))),
    }
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

/// `tern config check`: the summary on stdout, or the error on stderr.
fn config_check(path: &Path) -> ExitCode {
    match Config::load(path) {
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
