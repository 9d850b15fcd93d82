//! Small things many test crates need: a repo script's path, a free port on
//! 127.0.0.1, the `password = "..."` line of `tern user passwd`, and a
//! group's id.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::harness::tern_bin;

/// `scripts/NAME` of this repository.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// A free port on 127.0.0.1 (bound and released: the kernel's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `password = "$argon2id$..."` line `tern user passwd` prints for
/// `password` (fed on stdin, as from a pipe).
pub fn password_line(password: &str) -> String {
    let mut child = Command::new(tern_bin())
        .args(["user", "passwd", "someone"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tern user passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().expect("tern user passwd");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find(|l| l.starts_with("password = \"$argon2id$"))
        .unwrap_or_else(|| panic!("no password line in {stdout:?}"))
        .to_string()
}

/// The id of group `group` (getent); panics naming `install` when there is
/// no such group.
pub fn gid_of(group: &str, install: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or_else(|| panic!("no group {group}: {install}"))
}

/// The uid tern runs as beside Dovecot in the tests (nobody): Dovecot runs
/// no mail process as root.
pub const NOBODY: u32 = 65534;

/// A tern for a private Dovecot: run as nobody with group dovecot, user
/// alice with `password`, `[dovecot]` writing its user database in the
/// test directory, no checks on incoming mail (the loopback DNS answers
/// nothing); `extra` TOML is appended. Returns the server and the path of
/// the user database.
pub fn tern_for_dovecot(password: &str, extra: &str) -> (super::TestServer, PathBuf) {
    let dovecot_gid = gid_of("dovecot", "apt-get install -y dovecot-core");
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        dir.path(),
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(dovecot_gid)),
    )
    .unwrap();
    let users = dir.path().join("dovecot-users");
    let config = format!(
        "{}\n[[user]]\nname = \"alice\"\n{}\n[dovecot]\nusers_file = \"{}\"\ngroup = \"dovecot\"\n\
         [relay]\nnameservers = [\"127.0.0.1:9\"]\n[mx]\nverify_sender_domain = false\n\
         authenticate = false\n{extra}",
        super::BASE_CONFIG.replace("{data}", dir.path().join("data").to_str().unwrap()),
        password_line(password),
        users.display()
    );
    let server = super::TestServer::start_with_config_as(dir, &config, Some((NOBODY, dovecot_gid)));
    (server, users)
}
