//! The `tern` command line: parses arguments (clap) and hands off to the library.
//! Only `tern config check [PATH]` exists so far; `serve`, `queue …`, `dkim …` and
//! `user …` join `Command` as they are built.

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
    /// Inspect the configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
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
        Command::Config {
            cmd: ConfigCmd::Check { path },
        } => config_check(path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_PATH))),
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
