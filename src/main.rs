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
        Command::Serve { config } => serve(config.as_deref()),
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
    match runtime.block_on(tern::daemon::run(config)) {
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
