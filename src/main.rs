//! The `tern` command line: parses arguments (clap) and hands off to the library.
//! `tern serve` runs the daemon; `tern config check` validates a tern.toml;
//! `tern dkim keygen` and `tern dkim dns` make DKIM keys and print their DNS
//! records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern::config::Config;
use tern::dkim::keys::{self, KeyKind};
use tern::dkim::Signer;

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
    /// DKIM keys and the DNS records that publish them.
    Dkim {
        #[command(subcommand)]
        cmd: DkimCmd,
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
        #[arg(long)]
        domain: String,
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
    /// Print the DNS TXT records of every [dkim] domain again.
    Dns {
        /// The configuration file [default: /etc/tern/tern.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::Config {
            cmd: ConfigCmd::Check { path },
        } => config_check(path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_PATH))),
        Command::Dkim { cmd } => dkim(cmd),
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

/// `tern dkim keygen` and `tern dkim dns`: records on stdout, the rest on
/// stderr.
fn dkim(cmd: DkimCmd) -> ExitCode {
    let config_path = |c: Option<PathBuf>| c.unwrap_or_else(|| DEFAULT_CONFIG_PATH.into());
    let result = match cmd {
        DkimCmd::Keygen {
            domain,
            selector,
            config,
            dir,
            force,
        } => {
            // With --dir alone, no config is needed.
            let config = match (&dir, config) {
                (Some(_), None) => None,
                (_, path) => match Config::load(&config_path(path)) {
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
            keys::keygen(&dir, &domain, &selector, force).map(|keys| {
                for kind in KeyKind::ALL {
                    let path = kind.path(&dir, &keys.domain, &keys.selector);
                    eprintln!("wrote {}", path.display());
                }
                match (&config, dkim) {
                    (Some(_), None) => {
                        eprintln!("note: nothing is signed until tern.toml has a [dkim] table")
                    }
                    (_, Some(d)) if !d.domains.contains(&keys.domain) => eprintln!(
                        "note: mail from {} is not signed until [dkim] domains lists it",
                        keys.domain
                    ),
                    _ => {}
                }
                eprintln!("publish these DNS records in the zone of {}:", keys.domain);
                vec![keys]
            })
        }
        DkimCmd::Dns { config } => {
            let path = config_path(config);
            match Config::load(&path).map(|c| c.dkim) {
                Ok(Some(dkim)) => match Signer::load(&dkim) {
                    Ok(signer) => Ok(signer.into_domains()),
                    Err(e) => return fail(&dkim.place.error(e.to_string())),
                },
                Ok(None) => {
                    eprintln!("{}: no [dkim] table: nothing is signed", path.display());
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
