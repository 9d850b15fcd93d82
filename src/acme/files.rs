//! What ACME keeps on disk, under `data_dir/acme` (mode 0700): the account
//! (`account.json`: the CA's directory URL and instant-acme's credentials,
//! key included) and the certificate in force (`key.pem`, then `cert.pem`,
//! the chain leaf first). Every file is 0600 and written atomically (temporary
//! file, fsync, rename, directory fsync). A key and certificate that do not
//! fit together (a crash between the two renames) count as no certificate:
//! the next order replaces them.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use crate::tls::leaf::{read_leaf, Leaf};
use crate::tls::write_atomically;

/// The files of one data directory.
#[derive(Debug, Clone)]
pub struct AcmeFiles {
    dir: PathBuf,
}

/// `account.json`.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The certificate in force, as loaded from disk.
#[derive(Debug, Clone)]
pub struct Issued {
    pub key: CertifiedKey,
    pub leaf: Leaf,
}

impl AcmeFiles {
    /// The files under `data_dir/acme`.
    pub fn new(data_dir: &Path) -> AcmeFiles {
        AcmeFiles {
            dir: data_dir.join("acme"),
        }
    }

    /// The certificate chain file (what Dovecot's `ssl_cert` may read).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The private key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    fn make_dir(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    /// The stored account for `directory` (an account of another CA does
    /// not count).
    pub fn account(&self, directory: &str) -> io::Result<Option<AccountCredentials>> {
        let bytes = match fs::read(self.account_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let stored: StoredAccount = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.account_path().display()),
            )
        })?;
        Ok((stored.directory == directory).then_some(stored.credentials))
    }

    /// Keeps the account created at `directory`.
    pub fn store_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> io::Result<()> {
        self.make_dir()?;
        let stored = StoredAccount {
            directory: directory.to_string(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
        write_atomically(&self.account_path(), &json, 0o600)
    }

    /// Keeps a new key and chain (the key first: see the module doc).
    pub fn store_certificate(&self, key_pem: &str, chain_pem: &str) -> io::Result<()> {
        self.make_dir()?;
        write_atomically(&self.key_path(), key_pem.as_bytes(), 0o600)?;
        write_atomically(&self.cert_path(), chain_pem.as_bytes(), 0o600)
    }

    /// The certificate on disk; `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<Issued>, String> {
        let (cert, key) = (self.cert_path(), self.key_path());
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        let (chain, key_der) =
            crate::tls::load_pem_files(&cert, &key).map_err(|e| e.to_string())?;
        let key = crate::tls::store::certified_key(chain, key_der).map_err(|e| e.to_string())?;
        let leaf = read_leaf(&cert)?;
        Ok(Some(Issued { key, leaf }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn certificates_and_accounts_are_private_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path());
        assert!(files.load().unwrap().is_none());
        assert!(files.account("https://ca/dir").unwrap().is_none());
        let made = rcgen::generate_simple_self_signed(vec!["mx.example.org".into()]).unwrap();
        files
            .store_certificate(&made.signing_key.serialize_pem(), &made.cert.pem())
            .unwrap();
        let issued = files.load().unwrap().unwrap();
        assert_eq!(issued.leaf.names, ["mx.example.org"]);
        for path in [files.cert_path(), files.key_path()] {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let mode = fs::metadata(dir.path().join("acme"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        // A key that does not fit the certificate: an error, not a crash.
        let other = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        fs::write(files.key_path(), other.signing_key.serialize_pem()).unwrap();
        assert!(files.load().is_err());
    }
}
