//! DKIM keys on disk and in DNS: loading a domain's two private keys (PEM,
//! PKCS#8 as `tern dkim keygen` and `openssl genpkey` write them; PKCS#1 for
//! RSA too), generating new ones ([`keygen`]), and the TXT records that
//! publish their public halves ([`DnsRecord`]).
//!
//! Files: `<dir>/<domain>.<selector>.rsa.pem` and
//! `<dir>/<domain>.<selector>.ed25519.pem`. DNS: one TXT record per key, at
//! `<selector>-rsa._domainkey.<domain>` and
//! `<selector>-ed25519._domainkey.<domain>` (a selector names one key, RFC
//! 6376 §3.1, so the two keys cannot share one).
//!
//! RSA keys are generated with the pure-Rust `rsa` crate (ring cannot
//! generate RSA keys); Ed25519 keys with ring, through mail-auth. Signing
//! always uses ring.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::DkimError;
use crate::config::{dns_name_problem, selector_problem};
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// The size of the RSA keys `tern dkim keygen` makes.
pub const RSA_BITS: usize = 2048;
/// RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits and SHOULD
/// use 2048; we sign with nothing smaller.
const RSA_MIN_BITS: usize = 2048;
/// The longest character-string of a TXT record (RFC 1035 §3.3.14).
const TXT_STRING_MAX: usize = 255;

/// The two key types a domain signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// rsa-sha256 (RFC 6376 §3.3.1), 2048 bits.
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

impl KeyKind {
    /// Both kinds, in the order the signatures are added to a message.
    pub const ALL: [KeyKind; 2] = [KeyKind::Rsa, KeyKind::Ed25519];

    /// The name in file names, selectors and the DNS record's `k=` tag.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }

    /// The selector of this kind's key: `<base>-rsa` or `<base>-ed25519`.
    pub fn selector(self, base: &str) -> String {
        format!("{base}-{}", self.name())
    }

    /// Where this kind's private key of `domain` lives.
    pub fn path(self, dir: &Path, domain: &str, base: &str) -> PathBuf {
        dir.join(format!("{domain}.{base}.{}.pem", self.name()))
    }
}

/// The loaded keys of one signing domain.
pub struct DomainKeys {
    /// The `d=` domain, lowercase.
    pub domain: String,
    /// The base selector (see [`KeyKind::selector`]).
    pub selector: String,
    pub rsa: RsaKey<Sha256>,
    pub ed25519: Ed25519Key,
    /// SubjectPublicKeyInfo DER of the RSA key (what `p=` holds).
    rsa_public: Vec<u8>,
    /// The raw 32-byte Ed25519 public key (RFC 8463 §4.2).
    ed25519_public: Vec<u8>,
}

impl fmt::Debug for DomainKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainKeys")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl DomainKeys {
    /// Loads both keys of `domain` from `dir`.
    pub fn load(dir: &Path, domain: &str, selector: &str) -> Result<DomainKeys, DkimError> {
        let rsa_path = KeyKind::Rsa.path(dir, domain, selector);
        let ed_path = KeyKind::Ed25519.path(dir, domain, selector);
        let (rsa, rsa_public) = load_rsa(&rsa_path, &read_key(&rsa_path, domain)?)?;
        let (ed25519, ed25519_public) = load_ed25519(&ed_path, &read_key(&ed_path, domain)?)?;
        Ok(DomainKeys {
            domain: domain.to_string(),
            selector: selector.to_string(),
            rsa,
            ed25519,
            rsa_public,
            ed25519_public,
        })
    }

    /// The TXT records that publish both public keys, RSA first.
    pub fn dns_records(&self) -> Vec<DnsRecord> {
        KeyKind::ALL
            .into_iter()
            .map(|kind| {
                let public = match kind {
                    KeyKind::Rsa => &self.rsa_public,
                    KeyKind::Ed25519 => &self.ed25519_public,
                };
                DnsRecord {
                    name: format!(
                        "{}._domainkey.{}.",
                        kind.selector(&self.selector),
                        self.domain
                    ),
                    value: format!(
                        "v=DKIM1; k={}; p={}",
                        kind.name(),
                        BASE64_STANDARD.encode(public)
                    ),
                }
            })
            .collect()
    }
}

/// A TXT record to publish. `Display` is one zone-file line with the value
/// split into strings of at most 255 characters (RFC 1035 §3.3.14; a
/// 2048-bit RSA key needs two), e.g.
/// `tern-ed25519._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p=..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The owner name, fully qualified with the final dot.
    pub name: String,
    /// The record's text, all strings joined (as verifiers read it).
    pub value: String,
}

impl fmt::Display for DnsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} IN TXT", self.name)?;
        // The value is ASCII (tags and base64): any byte is a boundary.
        for chunk in self.value.as_bytes().chunks(TXT_STRING_MAX) {
            write!(f, " \"{}\"", String::from_utf8_lossy(chunk))?;
        }
        Ok(())
    }
}

/// Reads a key file; a missing one says which command makes it.
fn read_key(path: &Path, domain: &str) -> Result<Vec<u8>, DkimError> {
    fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => DkimError::MissingKey {
            path: path.to_path_buf(),
            domain: domain.to_string(),
        },
        _ => DkimError::ReadKey {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// An RSA private key (PKCS#8 or PKCS#1 PEM) for ring, and its public half.
fn load_rsa(path: &Path, pem: &[u8]) -> Result<(RsaKey<Sha256>, Vec<u8>), DkimError> {
    let bad = |reason: String| DkimError::BadKey {
        path: path.to_path_buf(),
        kind: KeyKind::Rsa,
        reason,
    };
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("not a PEM private key ({e})")))?;
    let parsed = match &der {
        PrivateKeyDer::Pkcs8(key) => rsa::RsaPrivateKey::from_pkcs8_der(key.secret_pkcs8_der())
            .map_err(|e| bad(e.to_string()))?,
        PrivateKeyDer::Pkcs1(key) => rsa::RsaPrivateKey::from_pkcs1_der(key.secret_pkcs1_der())
            .map_err(|e| bad(e.to_string()))?,
        _ => return Err(bad("expected an RSA key in PKCS#8 or PKCS#1 form".into())),
    };
    let bits = parsed.size() * 8;
    if bits < RSA_MIN_BITS {
        return Err(bad(format!(
            "it has {bits} bits; tern signs with at least {RSA_MIN_BITS} (RFC 8301 §3.2)"
        )));
    }
    let public = parsed
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| bad(e.to_string()))?
        .as_bytes()
        .to_vec();
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| bad(e.to_string()))?;
    Ok((key, public))
}

/// An Ed25519 private key (PKCS#8 PEM, v1 as openssl writes it or v2 as ring
/// does) and its raw public key.
fn load_ed25519(path: &Path, pem: &[u8]) -> Result<(Ed25519Key, Vec<u8>), DkimError> {
    let bad = |reason: String| DkimError::BadKey {
        path: path.to_path_buf(),
        kind: KeyKind::Ed25519,
        reason,
    };
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("not a PKCS#8 PEM private key ({e})")))?;
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der())
        .map_err(|e| bad(format!("not an Ed25519 key ({e})")))?;
    let public = key.public_key();
    Ok((key, public))
}

/// Generates both keys of `domain` (a DNS name) with base `selector` into
/// `dir` (created, mode 0700, if missing) and loads them back. Each file is written whole or not at all:
/// a temporary file (mode 0600) is written and fsync'd, then linked into
/// place (or renamed over the old key with `force`), and the directory
/// fsync'd. Without `force`, existing keys are never replaced.
///
/// When run as root in a directory that belongs to another user (the tern
/// user on the appliance), the new directory and files are given to that
/// user, so that the server can read them.
pub fn keygen(
    dir: &Path,
    domain: &str,
    selector: &str,
    force: bool,
) -> Result<DomainKeys, DkimError> {
    if let Some(problem) = dns_name_problem(domain) {
        return Err(DkimError::BadName(format!(
            "domain \"{domain}\" is not a valid DNS name: {problem}"
        )));
    }
    if let Some(problem) = selector_problem(selector) {
        return Err(DkimError::BadName(format!(
            "selector \"{selector}\" is not valid: {problem}"
        )));
    }
    let (domain, selector) = (&domain.to_ascii_lowercase(), &selector.to_ascii_lowercase());
    let paths = KeyKind::ALL.map(|kind| kind.path(dir, domain, selector));
    if !force {
        if let Some(existing) = paths.iter().find(|p| p.exists()) {
            return Err(DkimError::KeyExists {
                path: existing.clone(),
                domain: domain.to_string(),
            });
        }
    }
    let rsa_pem = generate_rsa()?;
    let ed_pem = generate_ed25519()?;
    let owner = prepare_dir(dir).map_err(|error| DkimError::WriteKey {
        path: dir.to_path_buf(),
        error,
    })?;
    for (path, pem) in paths.iter().zip([rsa_pem, ed_pem]) {
        write_key(path, pem.as_bytes(), force, owner).map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => DkimError::KeyExists {
                path: path.clone(),
                domain: domain.to_string(),
            },
            _ => DkimError::WriteKey {
                path: path.clone(),
                error,
            },
        })?;
    }
    DomainKeys::load(dir, domain, selector)
}

/// A new 2048-bit RSA key, PKCS#8 PEM.
fn generate_rsa() -> Result<String, DkimError> {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
        .map_err(|e| DkimError::Generate(format!("RSA: {e}")))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| DkimError::Generate(format!("RSA: {e}")))?;
    Ok(pem("PRIVATE KEY", der.as_bytes()))
}

/// A new Ed25519 key, PKCS#8 PEM.
fn generate_ed25519() -> Result<String, DkimError> {
    let der =
        Ed25519Key::generate_pkcs8().map_err(|e| DkimError::Generate(format!("Ed25519: {e}")))?;
    Ok(pem("PRIVATE KEY", &der))
}

/// PEM (RFC 7468): base64 in lines of 64 characters between the labels.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = BASE64_STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates `dir` (mode 0700) if missing. Returns the owner that new files
/// should get: when we are root and the directory (or, for a new one, its
/// parent) belongs to someone else, that someone.
fn prepare_dir(dir: &Path) -> io::Result<Option<(u32, u32)>> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            let meta = fs::metadata(parent)?;
            if is_root() && meta.uid() != 0 {
                std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()))?;
            }
            File::open(parent)?.sync_all()?;
        }
    }
    let meta = fs::metadata(dir)?;
    Ok((is_root() && meta.uid() != 0).then(|| (meta.uid(), meta.gid())))
}

/// Are we root? (`/proc/self` belongs to our effective user.)
fn is_root() -> bool {
    matches!(fs::metadata("/proc/self").map(|m| m.uid()), Ok(0))
}

/// Writes `bytes` to `path` atomically with mode 0600 (see [`keygen`]).
fn write_key(path: &Path, bytes: &[u8], force: bool, owner: Option<(u32, u32)>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        if force {
            fs::rename(&tmp, path)?;
        } else {
            // link() fails if the key appeared meanwhile: never overwrite.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)?;
        }
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_paths() {
        assert_eq!(KeyKind::Rsa.selector("tern"), "tern-rsa");
        assert_eq!(KeyKind::Ed25519.selector("tern"), "tern-ed25519");
        assert_eq!(
            KeyKind::Rsa.path(Path::new("/k"), "example.org", "tern"),
            PathBuf::from("/k/example.org.tern.rsa.pem")
        );
    }

    #[test]
    fn long_txt_values_are_split_into_255_character_strings() {
        let record = DnsRecord {
            name: "tern-rsa._domainkey.example.org.".into(),
            value: "x".repeat(300),
        };
        let line = record.to_string();
        assert_eq!(
            line,
            format!(
                "tern-rsa._domainkey.example.org. IN TXT \"{}\" \"{}\"",
                "x".repeat(255),
                "x".repeat(45)
            )
        );
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let text = pem("PRIVATE KEY", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END PRIVATE KEY-----"));
        let der = PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()).expect("parses");
        assert_eq!(der.secret_pkcs8_der(), &[7u8; 100][..]);
    }

    #[test]
    fn missing_and_broken_key_files_say_which_and_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        match DomainKeys::load(dir.path(), "example.org", "tern") {
            Err(DkimError::MissingKey { path, domain }) => {
                assert_eq!(path, dir.path().join("example.org.tern.rsa.pem"));
                assert_eq!(domain, "example.org");
            }
            other => panic!("{other:?}"),
        }
        let rsa = KeyKind::Rsa.path(dir.path(), "example.org", "tern");
        fs::write(&rsa, "not a key").expect("write");
        match DomainKeys::load(dir.path(), "example.org", "tern") {
            Err(DkimError::BadKey { path, kind, .. }) => {
                assert_eq!((path, kind), (rsa, KeyKind::Rsa));
            }
            other => panic!("{other:?}"),
        }
    }
}
