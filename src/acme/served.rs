//! Which certificate files tern serves ([`served`]): ACME's once there is
//! one (and `[acme]` is on), else the `[tls]` files, else the self-signed
//! pair under `data_dir/tls`. [`link`] keeps two symbolic links in
//! `data_dir/tls` pointing at them, `served-cert.pem` and `served-key.pem`,
//! so another server on the machine (the appliance's Dovecot) reads the
//! same certificate as tern without knowing which one that is; each link is
//! replaced atomically (a new link renamed over the old), and only when its
//! target changes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, TlsConfig};

use super::files::AcmeFiles;

/// The link to the certificate chain tern serves.
pub const CERT_LINK: &str = "served-cert.pem";
/// The link to its private key.
pub const KEY_LINK: &str = "served-key.pem";

/// The certificate tern serves, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by tern (self-signed or ACME), not the owner's `[tls]` files.
    pub made_by_tern: bool,
}

/// The files of the certificate `config` has tern serve.
pub fn served(config: &Config) -> Served {
    let acme = AcmeFiles::new(&config.data_dir);
    if config.acme.is_some() && acme.cert_path().exists() {
        return Served {
            cert: acme.cert_path(),
            key: acme.key_path(),
            made_by_tern: true,
        };
    }
    match &config.tls {
        TlsConfig::Files { cert, key } => Served {
            cert: cert.clone(),
            key: key.clone(),
            made_by_tern: false,
        },
        TlsConfig::SelfSigned => Served {
            cert: config.data_dir.join("tls").join("cert.pem"),
            key: config.data_dir.join("tls").join("key.pem"),
            made_by_tern: true,
        },
    }
}

/// Points `data_dir/tls/served-*.pem` at [`served`]'s files; a failure is
/// logged (tern's own listeners do not depend on the links).
pub fn link(config: &Config) {
    let served = served(config);
    let dir = config.data_dir.join("tls");
    for (name, target) in [(CERT_LINK, &served.cert), (KEY_LINK, &served.key)] {
        match link_one(&dir, name, target) {
            Ok(false) => {}
            Ok(true) => log::info!(
                "{} now points at {}",
                dir.join(name).display(),
                target.display()
            ),
            Err(e) => log::warn!(
                "cannot point {} at {}: {e}",
                dir.join(name).display(),
                target.display()
            ),
        }
    }
}

/// Makes `dir/name` a link to `target`; false when it already was one.
fn link_one(dir: &Path, name: &str, target: &Path) -> io::Result<bool> {
    let path = dir.join(name);
    if fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(false);
    }
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.new"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(data: &Path, extra: &str) -> Config {
        let text = format!(
            "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\ndomains = [\"example.org\"]\n\
             [[listener]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n\
             [[listener]]\naddress = \"127.0.0.1:4443\"\nrole = \"https\"\n\
             [[user]]\nname = \"me\"\n{extra}",
            data.display()
        );
        Config::parse(&text, Path::new("tern.toml")).unwrap()
    }

    #[test]
    fn the_links_follow_the_certificate_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let plain = config(dir.path(), "");
        link(&plain);
        assert_eq!(
            fs::read_link(tls.join(CERT_LINK)).unwrap(),
            tls.join("cert.pem")
        );
        assert_eq!(
            fs::read_link(tls.join(KEY_LINK)).unwrap(),
            tls.join("key.pem")
        );
        assert!(served(&plain).made_by_tern);

        // [acme] on but nothing issued yet: still the self-signed pair.
        let acme = config(dir.path(), "[acme]\ncontact = \"me@example.org\"\n");
        link(&acme);
        assert_eq!(
            fs::read_link(tls.join(CERT_LINK)).unwrap(),
            tls.join("cert.pem")
        );
        // Once ACME has a certificate, the links move to it...
        let files = AcmeFiles::new(dir.path());
        fs::create_dir_all(files.cert_path().parent().unwrap()).unwrap();
        fs::write(files.cert_path(), "chain").unwrap();
        link(&acme);
        assert_eq!(
            fs::read_link(tls.join(CERT_LINK)).unwrap(),
            files.cert_path()
        );
        assert_eq!(fs::read_link(tls.join(KEY_LINK)).unwrap(), files.key_path());
        // ...and back when [acme] is turned off.
        link(&plain);
        assert_eq!(
            fs::read_link(tls.join(CERT_LINK)).unwrap(),
            tls.join("cert.pem")
        );
        // The owner's files, when [tls] names them.
        let owner = config(
            dir.path(),
            "[tls]\ncert = \"/etc/tern/tls/full.pem\"\nkey = \"/etc/tern/tls/k.pem\"\n",
        );
        link(&owner);
        assert_eq!(
            fs::read_link(tls.join(CERT_LINK)).unwrap(),
            Path::new("/etc/tern/tls/full.pem")
        );
        assert!(!served(&owner).made_by_tern);
        assert!(!tls.join(".served-cert.pem.new").exists());
    }
}
