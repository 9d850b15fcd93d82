//! The validated `[acme]`, `[mta_sts]` and `[autoconfig]` tables: where
//! certificates come from, and what the HTTPS listener serves.

use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default `[acme] directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`[acme] staging = true`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[acme]`: certificates from an ACME CA (RFC 8555).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The CA's directory URL.
    pub directory: String,
    /// Contact URLs for the account (`mailto:` the address given).
    pub contact: Vec<String>,
    pub challenge: Challenge,
    /// A PEM CA certificate (the first in the file) trusted for the
    /// directory's HTTPS instead of the platform's roots (a private or test CA).
    pub ca_file: Option<PathBuf>,
    /// Run (argv, no shell) after each new certificate, e.g. `systemctl
    /// reload dovecot`; empty: nothing.
    pub reload_command: Vec<String>,
}

/// How the CA checks we hold a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// RFC 8737, on the https listener (443).
    TlsAlpn01,
    /// RFC 8555 §8.3, on the http listener (80).
    Http01,
}

impl Challenge {
    /// The name used in tern.toml.
    pub fn name(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        }
    }
}

/// `[mta_sts]`: the MTA-STS policy served at
/// `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaSts {
    pub mode: MtaStsMode,
    /// How long senders cache the policy; default one week.
    pub max_age: Duration,
}

/// RFC 8461 §3.2 `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtaStsMode {
    Testing,
    Enforce,
    None,
}

impl MtaStsMode {
    /// The policy's spelling.
    pub fn name(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::None => "none",
        }
    }
}

/// `[autoconfig]`: mail-client settings served at
/// `https://autoconfig.<domain>/mail/config-v1.1.xml` and as an Apple profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoconfig {
    /// Dovecot's IMAP port (implicit TLS); default 993.
    pub imap_port: u16,
}
