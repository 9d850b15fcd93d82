//! The user database Dovecot reads, written by tern from tern.toml, so the
//! owner keeps one list of users: `tern user passwd`, an edit of tern.toml
//! and `systemctl reload tern` give a user IMAP and POP3 with the same
//! password as submission.
//!
//! The file is a Dovecot passwd-file (used as its passdb and userdb): one
//! line per login, `alice` and `alice@<each local domain>`, with the
//! argon2id hash from tern.toml under Dovecot's `{ARGON2ID}` scheme, the
//! uid and gid that own the Maildirs (the daemon's own: tern delivers as
//! itself), and the user's Maildir as home. Users without a password get no
//! line; aliases are not logins. Written on start and on every reload,
//! atomically (a temporary file, fsync'd, renamed over the old one), mode
//! 0640 with `[dovecot] group` as its group, so Dovecot's auth process can
//! read it and nobody else.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::config::{Config, DovecotUsers};

/// Why the user database could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DovecotError {
    #[error("no group {0:?} in /etc/group")]
    NoSuchGroup(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The passwd-file text for `config`, the Maildirs owned by `uid`:`gid`.
pub fn users_file(config: &Config, uid: u32, gid: u32) -> String {
    let mut text = String::from(
        "# Written by tern from tern.toml on start and on every reload: do not edit.\n\
         # login:password:uid:gid::home:: (Dovecot passwd-file; home is the Maildir)\n",
    );
    for user in config.users.values() {
        let Some(hash) = &user.password else {
            continue;
        };
        let home = user.maildir.display();
        let logins = std::iter::once(user.name.clone())
            .chain(config.domains.iter().map(|d| format!("{}@{d}", user.name)));
        for login in logins {
            // Names, domains and PHC strings never hold ':' or a newline
            // (config validation), so no field can spill into another.
            let _ = writeln!(text, "{login}:{{ARGON2ID}}{hash}:{uid}:{gid}::{home}::");
        }
    }
    text
}

/// Writes the user database when `[dovecot]` asks for one; a no-op without.
pub fn write_users(config: &Config) -> Result<(), DovecotError> {
    let Some(DovecotUsers {
        users_file: path,
        group,
    }) = &config.dovecot
    else {
        return Ok(());
    };
    let gid = match group {
        None => None,
        Some(name) => Some(
            group_id(name, Path::new("/etc/group"))
                .ok_or_else(|| DovecotError::NoSuchGroup(name.clone()))?,
        ),
    };
    let text = users_file(
        config,
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    write_atomically(path, text.as_bytes(), gid).map_err(|source| DovecotError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The gid of group `name` in `file` (/etc/group). Read by hand: the static
/// binary's getgrnam would go through NSS, which static glibc cannot load.
fn group_id(name: &str, file: &Path) -> Option<nix::unistd::Gid> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
            .map(nix::unistd::Gid::from_raw)
    })
}

fn write_atomically(path: &Path, bytes: &[u8], gid: Option<nix::unistd::Gid>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    if let Some(gid) = gid {
        nix::unistd::fchown(&file, None, Some(gid)).map_err(io::Error::from)?;
    }
    file.set_permissions(fs::Permissions::from_mode(0o640))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/tern\"\n\
             domains = [\"example.org\", \"example.net\"]\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n\
             [[user]]\nname = \"alice\"\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$kT3oxdV+hYW0DpGfzuR7XQ$qCKSmZT0YqIOHh6Oqd7lahOpnViIrLKvN52ato5ERLA\"\n\
             [[user]]\nname = \"nopw\"\n\
             [aliases]\n\"info\" = \"alice\"\n{extra}"
        );
        Config::parse(&text, Path::new("/etc/tern/tern.toml")).unwrap()
    }

    #[test]
    fn one_line_per_login_and_no_aliases_or_passwordless_users() {
        let text = users_file(&config(""), 998, 997);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let hash = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$kT3oxdV+hYW0DpGfzuR7XQ$qCKSmZT0YqIOHh6Oqd7lahOpnViIrLKvN52ato5ERLA";
        let home = "/var/lib/tern/mail/alice";
        assert_eq!(
            lines,
            [
                format!("alice:{hash}:998:997::{home}::"),
                format!("alice@example.org:{hash}:998:997::{home}::"),
                format!("alice@example.net:{hash}:998:997::{home}::"),
            ]
        );
    }

    #[test]
    fn group_ids_come_from_the_group_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("group");
        fs::write(&file, "root:x:0:\ndovecot:x:113:tern\nbad line\n").unwrap();
        assert_eq!(group_id("dovecot", &file).map(|g| g.as_raw()), Some(113));
        assert_eq!(group_id("root", &file).map(|g| g.as_raw()), Some(0));
        assert_eq!(group_id("tern", &file), None);
        assert_eq!(group_id("bad line", &file), None);
    }

    #[test]
    fn written_atomically_private_and_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        write_users(&config("")).unwrap();
        let path = dir.path().join("sub/users");
        let cfg = config(&format!("[dovecot]\nusers_file = \"{}\"\n", path.display()));
        write_users(&cfg).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert!(fs::read_to_string(&path)
            .unwrap()
            .contains("alice@example.net:"));
        write_users(&cfg).unwrap();
        let left: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        let cfg = config(&format!(
            "[dovecot]\nusers_file = \"{}\"\ngroup = \"no-such-group-here\"\n",
            path.display()
        ));
        assert!(matches!(
            write_users(&cfg),
            Err(DovecotError::NoSuchGroup(_))
        ));
    }
}
