//! `tern dkim keygen` and `tern dkim dns`: which keys to make (one domain, or
//! every signing domain still without keys), where (the configured key
//! directory, or `--dir`), with which selector, and the DNS TXT records to
//! publish. Records go to stdout, everything else to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{Config, Source, DEFAULT_DKIM_SELECTOR};

use super::keys::{self, DomainKeys, KeyKind};
use super::Signer;

/// `tern dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimCmd {
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
        /// Write the keys into this directory instead of [dkim] keys
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace existing keys (the old DNS records stop working)
        #[arg(long)]
        force: bool,
    },
    /// Print the DNS TXT records of every signing domain again.
    Dns,
}

/// Runs `cmd` with the config from `source`.
pub fn run(source: &Source, cmd: DkimCmd) -> ExitCode {
    let made = match cmd {
        DkimCmd::Keygen {
            domain,
            all_missing: _,
            selector,
            dir,
            force,
        } => {
            // With --dir and --domain alone, no config is needed.
            let config = match (&dir, source, &domain) {
                (Some(_), Source::Environment(_) | Source::System | Source::Embedded, Some(_)) => {
                    None
                }
                _ => match source.load() {
                    Ok(config) => Some(config),
                    Err(e) => return fail(&e),
                },
            };
            keygen(config.as_ref(), domain, selector, dir, force)
        }
        DkimCmd::Dns => dns(source),
    };
    match made {
        Ok(domains) => {
            for record in domains.iter().flat_map(|keys| keys.dns_records()) {
                println!("{record}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => e,
    }
}

/// `tern dkim keygen`: the keys of `domain`, or of every signing domain of
/// `config` that has none yet.
fn keygen(
    config: Option<&Config>,
    domain: Option<String>,
    selector: Option<String>,
    dir: Option<PathBuf>,
    force: bool,
) -> Result<Vec<DomainKeys>, ExitCode> {
    let dkim = config.and_then(|c| c.dkim.as_ref());
    let dir = dir
        .or_else(|| dkim.map(|d| d.keys_dir.clone()))
        .or_else(|| config.map(|c| c.data_dir.join("dkim")))
        .unwrap_or_default();
    let selector = selector
        .or_else(|| dkim.map(|d| d.selector.clone()))
        .unwrap_or_else(|| DEFAULT_DKIM_SELECTOR.into());
    let wanted: Vec<String> = match (domain, config) {
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
        let keys = keys::keygen(&dir, &domain, &selector, force).map_err(|e| fail(&e))?;
        for kind in KeyKind::ALL {
            eprintln!(
                "wrote {}",
                kind.path(&dir, &keys.domain, &keys.selector).display()
            );
        }
        if dkim.is_some_and(|d| !d.domains.contains(&keys.domain)) {
            eprintln!(
                "note: mail from {} is not signed until [dkim] domains lists it",
                keys.domain
            );
        }
        eprintln!("publish these DNS records in the zone of {}:", keys.domain);
        made.push(keys);
    }
    Ok(made)
}

/// `tern dkim dns`: the keys of every signing domain.
fn dns(source: &Source) -> Result<Vec<DomainKeys>, ExitCode> {
    let config = source.load().map_err(|e| fail(&e))?;
    match Signer::from_config(&config) {
        Ok(Some(signer)) => Ok(signer.into_domains()),
        Ok(None) => {
            let from = source
                .path()
                .map_or_else(|| source.to_string(), |p| p.display().to_string());
            eprintln!(
                "{from}: no DKIM keys in {}: nothing is signed (tern dkim keygen --all-missing)",
                config.data_dir.join("dkim").display()
            );
            Err(ExitCode::FAILURE)
        }
        Err(e) => Err(fail(&e)),
    }
}

/// Prints `error` and fails.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{error}");
    ExitCode::FAILURE
}
