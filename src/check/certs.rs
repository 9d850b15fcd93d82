//! The certificate tern serves on its listeners (the `[tls]` files, or the
//! self-signed one under `data_dir/tls`), as `tern check` and `tern status`
//! see it: days until expiry, whether it names the hostname, whether its
//! chain leads to an authority in `[relay] ca_file`, self-signed flagged.
//! Read from the files, never generated here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::{Check, Status};
use crate::config::Config;
use crate::date::ymd;
use crate::tls::leaf::{parse_leaf, read_chain, Leaf};

/// Fewer days left than this is a warning.
pub const RENEW_DAYS: i64 = 14;

/// The certificate file tern serves, and whether tern makes it itself.
pub fn served_file(config: &Config) -> (PathBuf, bool) {
    let served = crate::acme::served::served(config);
    (served.cert, served.made_by_tern)
}

/// Seconds since the epoch (negative before it).
fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The certificate checks for `config` at `now`.
pub fn check(config: &Config, now: SystemTime) -> Vec<Check> {
    let (path, generated) = served_file(config);
    let subject = path.display().to_string();
    match std::fs::read(&path) {
        Ok(pem) => check_pem(&pem, &subject, &config.hostname, &config.relay.ca_file, now),
        Err(e) if generated && e.kind() == std::io::ErrorKind::NotFound => {
            vec![Check::new("tls-chain", subject, Status::Skipped)
                .found("not made yet: tern makes a self-signed certificate on its first start")]
        }
        Err(e) => vec![Check::new("tls-chain", subject, Status::Failed)
            .found(format!("cannot read it: {e}"))
            .fix("correct [tls] cert in tern.toml")],
    }
}

/// The checks of the PEM certificate chain `pem` (shown as `subject`),
/// served as `hostname`, against the authorities in `ca_file`.
pub fn check_pem(
    pem: &[u8],
    subject: &str,
    hostname: &str,
    ca_file: &Path,
    now: SystemTime,
) -> Vec<Check> {
    let unreadable = |why: String| {
        vec![Check::new("tls-chain", subject, Status::Failed)
            .found(why)
            .fix("install the certificate chain as PEM (leaf first), e.g. fullchain.pem")]
    };
    let chain = match read_chain(pem) {
        Ok(chain) => chain,
        Err(why) => return unreadable(why),
    };
    let leaf = match parse_leaf(&chain[0]) {
        Ok(leaf) => leaf,
        Err(why) => return unreadable(why),
    };
    vec![
        expiry(&leaf, subject, now),
        name(&leaf, subject, hostname),
        trust(&leaf, &chain, subject, hostname, ca_file),
    ]
}

/// Days until expiry.
fn expiry(leaf: &Leaf, subject: &str, now: SystemTime) -> Check {
    let now = epoch_secs(now);
    let days = (leaf.not_after - now).div_euclid(86_400);
    let until = ymd(leaf.not_after);
    let renew = "renew it (or remove [tls] to fall back to a self-signed one), then \
                 systemctl reload tern";
    if leaf.not_before > now {
        return Check::new("tls-expiry", subject, Status::Failed)
            .found(format!("not valid before {}", ymd(leaf.not_before)))
            .fix("check the machine's clock, or install a certificate valid now");
    }
    if leaf.not_after <= now {
        return Check::new("tls-expiry", subject, Status::Failed)
            .found(format!("expired on {until} ({} days ago)", -days))
            .fix(renew);
    }
    if days < RENEW_DAYS {
        return Check::new("tls-expiry", subject, Status::Warning)
            .found(format!("expires on {until}, in {days} days"))
            .fix(renew);
    }
    Check::new("tls-expiry", subject, Status::Ok)
        .found(format!("valid until {until} ({days} days)"))
}

/// Does `pattern` (a SAN name, maybe `*.example.org`) cover `host`?
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == host,
    }
}

/// The certificate names the hostname.
fn name(leaf: &Leaf, subject: &str, hostname: &str) -> Check {
    if leaf.names.iter().any(|n| covers(n, hostname)) {
        return Check::new("tls-name", subject, Status::Ok).found(format!("covers {hostname}"));
    }
    let names = if leaf.names.is_empty() {
        "no DNS name".to_string()
    } else {
        leaf.names.join(", ")
    };
    Check::new("tls-name", subject, Status::Failed)
        .found(format!("for {names}, not for {hostname}"))
        .fix(format!(
            "install a certificate whose names include {hostname}"
        ))
}

/// The chain leads to an authority of `ca_file` (checked at a moment the
/// leaf is valid, so that expiry is only reported once); self-signed is
/// flagged.
fn trust(
    leaf: &Leaf,
    chain: &[CertificateDer<'static>],
    subject: &str,
    hostname: &str,
    ca_file: &Path,
) -> Check {
    if leaf.self_signed {
        return Check::new("tls-chain", subject, Status::Warning)
            .found("self-signed: servers delivering to port 25 take it, mail clients on 587/465 warn")
            .fix(format!(
                "install a certificate for {hostname} from an authority (e.g. Let's Encrypt) in [tls]"
            ));
    }
    let roots = match std::fs::read(ca_file) {
        Ok(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
            roots
        }
        Err(e) => {
            return Check::new("tls-chain", subject, Status::Warning).found(format!(
                "cannot read the authorities in {}: {e}",
                ca_file.display()
            ))
        }
    };
    let verifier =
        match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
        {
            Ok(v) => v,
            Err(e) => {
                return Check::new("tls-chain", subject, Status::Warning).found(format!(
                    "no authority to check against in {}: {e}",
                    ca_file.display()
                ))
            }
        };
    let server_name = match ServerName::try_from(hostname.to_string()) {
        Ok(n) => n,
        Err(e) => return Check::new("tls-chain", subject, Status::Warning).found(e.to_string()),
    };
    let during = u64::try_from(leaf.not_before.max(0)).unwrap_or(0) + 60;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(during));
    match verifier.verify_server_cert(&chain[0], &chain[1..], &server_name, &[], at) {
        // The name is the tls-name check's business.
        Ok(_)
        | Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        )) => {
            Check::new("tls-chain", subject, Status::Ok).found(format!("issued by {}", leaf.issuer))
        }
        Err(e) => Check::new("tls-chain", subject, Status::Failed)
            .found(format!("the chain does not verify: {e}"))
            .fix(format!(
                "put the intermediate certificates after the leaf in the file \
                 (fullchain.pem); the authorities trusted are those of {}",
                ca_file.display()
            )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, KeyPair};

    const HOST: &str = "mx.example.org";

    /// A CA, and a leaf for `names` it signed, valid between the dates.
    fn signed(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> (String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        (leaf.pem(), ca_cert.pem())
    }

    fn run(pem: &str, ca: &str, now: SystemTime) -> Vec<Check> {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        check_pem(pem.as_bytes(), "cert.pem", HOST, &ca_file, now)
    }

    fn day(y: i32, m: u8, d: u8) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(rcgen::date_time_ymd(y, m, d).unix_timestamp() as u64)
    }

    fn statuses(checks: &[Check]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.check, c.status)).collect()
    }

    #[test]
    fn a_good_certificate_passes_every_check() {
        let (leaf, ca) = signed(&[HOST], (2026, 1, 1), (2027, 1, 1));
        let checks = run(&leaf, &ca, day(2026, 6, 1));
        assert_eq!(
            statuses(&checks),
            [
                ("tls-expiry", Status::Ok),
                ("tls-name", Status::Ok),
                ("tls-chain", Status::Ok)
            ],
            "{checks:#?}"
        );
        assert_eq!(checks[0].found, "valid until 2027-01-01 (214 days)");
    }

    #[test]
    fn an_expired_certificate_fails_only_the_expiry_check() {
        let (leaf, ca) = signed(&[HOST], (2025, 1, 1), (2026, 1, 1));
        let checks = run(&leaf, &ca, day(2026, 1, 11));
        assert_eq!(
            statuses(&checks),
            [
                ("tls-expiry", Status::Failed),
                ("tls-name", Status::Ok),
                ("tls-chain", Status::Ok)
            ],
            "{checks:#?}"
        );
        assert_eq!(checks[0].found, "expired on 2026-01-01 (10 days ago)");
        assert!(checks[0].fix.as_deref().unwrap().starts_with("renew it"));
        let soon = run(&leaf, &ca, day(2025, 12, 25));
        assert_eq!(soon[0].status, Status::Warning);
        assert_eq!(soon[0].found, "expires on 2026-01-01, in 7 days");
    }

    #[test]
    fn a_self_signed_certificate_is_flagged() {
        let made = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
        let (_, ca) = signed(&[HOST], (2026, 1, 1), (2027, 1, 1));
        let checks = run(&made.cert.pem(), &ca, SystemTime::now());
        assert_eq!(
            statuses(&checks),
            [
                ("tls-expiry", Status::Ok),
                ("tls-name", Status::Ok),
                ("tls-chain", Status::Warning)
            ],
            "{checks:#?}"
        );
        assert!(checks[2].found.starts_with("self-signed"), "{checks:#?}");
    }

    #[test]
    fn a_wrong_name_and_an_unknown_authority_fail() {
        let (leaf, _) = signed(&["other.example"], (2026, 1, 1), (2027, 1, 1));
        let (_, other_ca) = signed(&[HOST], (2026, 1, 1), (2027, 1, 1));
        let checks = run(&leaf, &other_ca, day(2026, 6, 1));
        assert_eq!(checks[1].status, Status::Failed);
        assert_eq!(checks[1].found, "for other.example, not for mx.example.org");
        assert_eq!(checks[2].status, Status::Failed, "{checks:#?}");
        assert!(checks[2].found.starts_with("the chain does not verify"));
        assert!(covers("*.example.org", HOST));
        assert!(!covers("*.org", HOST));
    }
}
