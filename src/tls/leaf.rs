//! What a certificate file says, read with x509-parser: the leaf's
//! validity, names, issuer and whether it is self-signed ([`read_leaf`]),
//! and the chain of a PEM file ([`read_chain`]). For `tern check`, `tern
//! status` and the ACME task's renewal time.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

/// What the leaf certificate says, for `tern status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The DNS names it is for (subjectAltName).
    pub names: Vec<String>,
    /// Issuer and subject are the same name.
    pub self_signed: bool,
    /// The issuer, as text.
    pub issuer: String,
}

/// Reads the leaf of a parsed certificate.
fn leaf_of(cert: &X509Certificate<'_>) -> Leaf {
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Leaf {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        names,
        self_signed: cert.issuer().as_raw() == cert.subject().as_raw(),
        issuer: cert.issuer().to_string(),
    }
}

/// The certificates of a PEM file, leaf first.
pub fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("the file holds no CERTIFICATE block".into());
    }
    Ok(chain)
}

/// The leaf of the certificate file at `path`.
pub fn read_leaf(path: &Path) -> Result<Leaf, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_leaf(&read_chain(&pem)?[0])
}

/// What the DER certificate `der` says.
pub fn parse_leaf(der: &[u8]) -> Result<Leaf, String> {
    let (_, cert) = parse_x509_certificate(der).map_err(|e| format!("not a certificate: {e}"))?;
    Ok(leaf_of(&cert))
}
