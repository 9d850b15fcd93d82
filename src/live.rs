//! What a reload swaps, as one value: the configuration, the TLS server
//! configuration and the DKIM signer ([`Snapshot`]), held by [`Live`].
//! Readers take an `Arc<Snapshot>` (or just its config) and keep it for the
//! work at hand: a session keeps the snapshot it started with, so a reload
//! never changes rules, certificates or keys under a client's feet. A new
//! snapshot is built whole before it is put in force ([`Snapshot::load`]):
//! if any part of it fails, nothing changes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use crate::config::{Config, ConfigError, Source};
use crate::dkim::Signer;
use crate::routing::srs::Srs;
use crate::tls::store::CertStore;
use crate::tls::TlsError;

/// The settings in force, all from one reading of tern.toml.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// The certificate for STARTTLS and port 465; `None` offers no TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Signs what our users send; `None` without `[dkim]` keys.
    pub signer: Option<Arc<Signer>>,
    /// Rewrites the sender of forwarded mail (SRS); `None` in tests that do
    /// not load one.
    pub srs: Option<Arc<Srs>>,
}

/// Why a snapshot could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A DKIM key the config names is missing or unusable.
    #[error(transparent)]
    Dkim(#[from] ConfigError),
    /// The SRS secret in the data directory cannot be read or made.
    #[error("SRS secret in the data directory: {0}")]
    Srs(#[from] std::io::Error),
}

impl Snapshot {
    /// Loads what `config` names: the certificate (made self-signed in the
    /// data directory when none is configured), then the DKIM keys. Only
    /// when all of them load is the certificate put into `certs`, the store
    /// every listener presents from (where an ACME certificate, when there
    /// is one, still outranks it).
    pub fn load(config: Config, certs: &Arc<CertStore>) -> Result<Snapshot, SnapshotError> {
        let key = crate::tls::configured_key(&config)?;
        let tls = crate::tls::store::server_config(certs, &[])?;
        let signer = Signer::from_config(&config)?;
        let srs = Srs::load_or_create(&config.data_dir)?;
        certs.set_configured(key);
        Ok(Snapshot::new(config, Some(tls), signer).with_srs(srs))
    }

    /// A snapshot of parts already loaded.
    pub fn new(
        config: Config,
        tls: Option<Arc<rustls::ServerConfig>>,
        signer: Option<Signer>,
    ) -> Snapshot {
        Snapshot {
            config: Arc::new(config),
            tls,
            signer: signer.map(Arc::new),
            srs: None,
        }
    }

    /// The same, rewriting forwarded mail's sender with `srs`.
    pub fn with_srs(mut self, srs: Srs) -> Snapshot {
        self.srs = Some(Arc::new(srs));
        self
    }
}

/// A config alone: no TLS offered, nothing signed (for the parts that need
/// only the config, and their tests).
impl From<Config> for Snapshot {
    fn from(config: Config) -> Snapshot {
        Snapshot::new(config, None, None)
    }
}

/// The snapshot in force; cheap to read, replaced whole.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Snapshot>>,
}

impl Live {
    /// Starts with `snapshot` (a bare [`Config`] will do: see [`Snapshot`]'s
    /// `From<Config>`).
    pub fn new(snapshot: impl Into<Snapshot>) -> Live {
        Live {
            current: RwLock::new(Arc::new(snapshot.into())),
        }
    }

    /// The snapshot in force now.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.get().config.clone()
    }

    /// Puts `snapshot` in force for everything that starts from now on.
    pub fn replace(&self, snapshot: Snapshot) {
        crate::dkim::log_domains(snapshot.signer.as_deref());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}

/// `tern config check`: validates the config from `source` and the DKIM keys
/// it names (what a start or a reload would refuse), and prints a one-line
/// summary on stdout, or the first mistake (file:line:col) on stderr. `say`:
/// also name the file in force and why it is the one (when none was given).
pub fn check(source: &Source, say: bool) -> ExitCode {
    match source
        .load()
        .and_then(|c| Signer::from_config(&c).map(|_| c))
    {
        Ok(config) => {
            let origin = source.path().unwrap_or(Path::new("<embedded default>"));
            println!("{}", config.summary(origin));
            if say {
                println!("in force: {source}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
