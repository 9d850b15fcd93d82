//! Certificates and rustls configuration: loads the owner's PEM files, or
//! generates (once) and reuses a self-signed certificate under
//! `data_dir/tls/` until the owner installs a real one (or ACME issues one:
//! [`store`] holds what every listener presents). TLS 1.2 and 1.3 only.

pub mod leaf;
pub mod store;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, TlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path}: no PEM private key found ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("certificate and key do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The crypto provider every TLS config in tern uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate and key files in force for `config` (generating the
/// self-signed pair if that is what the config asks for and it is missing).
pub fn certificate_files(config: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    match &config.tls {
        TlsConfig::Files { cert, key } => Ok((cert.clone(), key.clone())),
        TlsConfig::SelfSigned => ensure_self_signed(&config.data_dir.join("tls"), &config.hostname),
    }
}

/// The configured certificate (the owner's files, or the self-signed pair)
/// as rustls presents it.
pub fn configured_key(config: &Config) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let (cert, key) = certificate_files(config)?;
    let (chain, key) = load_pem_files(&cert, &key)?;
    store::certified_key(chain, key)
}

/// A server configuration from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key_der) = load_pem_files(cert, key)?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(Arc::new(server))
}

/// A certificate chain and its private key from PEM files.
pub fn load_pem_files(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.into(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: cert.into(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.into(),
            detail: "the file holds no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.into(),
        detail: e.to_string(),
    })?;
    Ok((chain, key_der))
}

/// Makes sure `dir/cert.pem` and `dir/key.pem` exist, generating a
/// self-signed certificate for `hostname` when they do not.
pub fn ensure_self_signed(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let (cert_pem, key_pem) = self_signed(hostname, SystemTime::now())?;
    write_atomically(&key, key_pem.as_bytes(), 0o600).map_err(write_err(&key))?;
    write_atomically(&cert, cert_pem.as_bytes(), 0o644).map_err(write_err(&cert))?;
    log::info!(
        "generated a self-signed certificate for {hostname} in {} (valid for {SELF_SIGNED_DAYS} days)",
        dir.display()
    );
    Ok((cert, key))
}

/// How long a generated self-signed certificate is valid: 825 days, the
/// longest Apple's clients (iOS 13 and macOS 10.15 on) accept for a TLS
/// server certificate even when the user trusts it by hand; the phones and
/// laptops that read mail over IMAP are what meets this certificate. Older
/// tern wrote rcgen's default 1975-4096, which such clients refuse. To renew:
/// remove `data_dir/tls/*.pem` and restart (or install a real certificate).
pub const SELF_SIGNED_DAYS: i64 = 825;

/// A self-signed certificate (PEM) and its private key (PEM) for
/// `hostname`: the subject's common name and the first subject alternative
/// name are the hostname (plus "localhost"), the extended key usage is TLS
/// server authentication, and it is valid from the day before `now`
/// (00:00 UTC: a clock a day behind still accepts it) for
/// [`SELF_SIGNED_DAYS`] days.
fn self_signed(hostname: &str, now: SystemTime) -> Result<(String, String), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(generate)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = subject;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let today = now
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let day = |days: i64| {
        let (y, m, d) = crate::date::civil_from_days(days);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    params.not_before = day(today - 1);
    params.not_after = day(today - 1 + SELF_SIGNED_DAYS);
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `path` via a temporary file (created with `mode`), fsync and
/// rename, then fsyncs the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A client configuration that verifies the server's certificate chain and
/// name against the PEM bundle `ca_file` (RFC 6125 name checks by webpki).
pub fn client_verified(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let pem = fs::read(ca_file).map_err(|source| TlsError::Read {
        path: ca_file.into(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::NoCertificate {
            path: ca_file.into(),
            detail: e.to_string(),
        })?;
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca_file.into(),
            detail: "no usable CA certificate in the bundle".into(),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration for opportunistic TLS (RFC 7435): encryption
/// against passive eavesdropping, with any certificate accepted. Handshake
/// signatures are still checked.
pub fn client_opportunistic() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts every certificate (opportunistic TLS only).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `TLSv1.3 TLS13_AES_256_GCM_SHA384`, for logs and `Received:` headers.
pub fn describe(conn: &rustls::CommonState) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version} {:?}", suite.suite()),
        None => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), "mx.example.org").unwrap();
        let first = fs::read(&cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config_from_files(&cert, &key).unwrap();
        ensure_self_signed(dir.path(), "mx.example.org").unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first);
    }

    #[test]
    fn self_signed_names_the_host_and_has_a_sane_validity() {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        // 2026-12-06 12:00 UTC.
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_796_558_400);
        let (pem, _) = self_signed("mail.example.org", now).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cn, ["mail.example.org"]);
        assert_eq!(cert.subject(), cert.issuer());
        let sans: Vec<_> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["mail.example.org", "localhost"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth, "{eku:?}");
        // From 2026-12-05 00:00 UTC (a day of clock skew) for 825 days.
        let validity = cert.validity();
        assert_eq!(validity.not_before.timestamp(), 1_796_428_800);
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            SELF_SIGNED_DAYS * 86_400
        );
        let now_secs = 1_796_558_400;
        assert!(validity.not_before.timestamp() < now_secs);
        assert!(validity.not_after.timestamp() > now_secs + 2 * 365 * 86_400);
    }

    #[test]
    fn clear_errors_for_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "").unwrap();
        let err = server_config_from_files(&empty, &empty).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = server_config_from_files(&missing, &missing).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
