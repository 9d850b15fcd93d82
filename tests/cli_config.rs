//! `tern config check` as the owner runs it: the real binary, real files;
//! and how every command finds its config: `-c`, else `TERN_CONFIG`, else
//! /etc/tern/tern.toml when it exists, else the embedded default with
//! ./tern-data.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{tern_bin, TestServer};

fn tern_config_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["config", "check"])
        .arg(path)
        .output()
        .expect("the tern binary runs")
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn a_good_config_prints_one_ok_line_and_exits_0() {
    let path = repo_file("config/tern.toml");
    let output = tern_config_check(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "ok: {}: hostname mail.example.org, 3 listeners (",
            path.display()
        )),
        "{stdout}"
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn a_bad_config_prints_file_line_col_and_exits_1() {
    let dir = repo_file("tests/configs/bad_role");
    let output = tern_config_check(&dir.join("tern.toml"));
    let expected = std::fs::read_to_string(dir.join("expected")).expect("fixture");
    // The fixture's expected line names "tern.toml"; the CLI names the path given.
    let expected = format!(
        "{}{}",
        dir.join("tern.toml").display(),
        &expected["tern.toml".len()..]
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
    assert!(expected.contains("tern.toml:8:8: listener role \"smtp\""));
}

#[test]
fn an_unreadable_config_says_so_and_exits_1() {
    let path = repo_file("tests/configs/no-such-file.toml");
    let output = tern_config_check(&path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}: cannot read the configuration: ",
            path.display()
        )),
        "{stderr}"
    );
}

/// Runs the tern binary (or a link to it) in `cwd` with `TERN_CONFIG` set
/// to `env` (or unset), stdin empty.
fn tern_in(program: &Path, cwd: &Path, env: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd).stdin(Stdio::null());
    match env {
        Some(path) => command.env("TERN_CONFIG", path),
        None => command.env_remove("TERN_CONFIG"),
    };
    command.output().expect("the tern binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// True when this machine has the appliance's own config (then the
/// fallback past it cannot be seen here).
fn system_config() -> bool {
    Path::new("/etc/tern/tern.toml").exists()
}

#[test]
fn config_check_without_a_path_checks_the_one_in_force_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let tern = Path::new(tern_bin());
    let reference = repo_file("config/tern.toml");
    let from_env = tern_in(tern, dir.path(), Some(&reference), &["config", "check"]);
    let stdout = text(&from_env.stdout);
    assert_eq!(from_env.status.code(), Some(0), "{from_env:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("ok: {}: ", reference.display())),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        format!("in force: {} (from TERN_CONFIG)", reference.display())
    );
    // -c wins over TERN_CONFIG.
    let bad = repo_file("tests/configs/bad_role/tern.toml");
    let given = tern_in(
        tern,
        dir.path(),
        Some(&reference),
        &["config", "check", "-c"],
    );
    assert_eq!(given.status.code(), Some(2), "-c needs a value");
    let given = tern_in(
        tern,
        dir.path(),
        Some(&reference),
        &["-c", bad.to_str().unwrap(), "config", "check"],
    );
    assert_eq!(given.status.code(), Some(1), "{given:?}");
    assert!(text(&given.stderr).contains("tern.toml:8:8:"), "{given:?}");
    // Neither: the system's file, or the embedded default.
    let neither = tern_in(tern, dir.path(), None, &["config", "check"]);
    let stdout = text(&neither.stdout);
    if system_config() {
        assert!(stdout.contains("in force: /etc/tern/tern.toml"), "{stdout}");
    } else {
        assert_eq!(neither.status.code(), Some(0), "{neither:?}");
        assert!(stdout.starts_with("ok: <embedded default>: "), "{stdout}");
        assert!(
            stdout.contains("in force: the embedded default (no --config, no TERN_CONFIG, no /etc/tern/tern.toml), with its data in ./tern-data"),
            "{stdout}"
        );
    }
}

#[test]
fn every_command_finds_the_config_the_same_way() {
    let server = TestServer::start("");
    let config = server.config_path.clone();
    let cwd = tempfile::tempdir().unwrap();
    let tern = Path::new(tern_bin());
    let mailq = cwd.path().join("mailq");
    std::os::unix::fs::symlink(tern, &mailq).unwrap();
    let sendmail = cwd.path().join("sendmail");
    std::os::unix::fs::symlink(tern, &sendmail).unwrap();
    // TERN_CONFIG alone: the running daemon answers each of them.
    let list = tern_in(tern, cwd.path(), Some(&config), &["queue", "list"]);
    assert_eq!(list.status.code(), Some(0), "{list:?}");
    assert!(
        text(&list.stderr).is_empty(),
        "the daemon answered: {list:?}"
    );
    let listed = tern_in(&mailq, cwd.path(), Some(&config), &[]);
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    assert_eq!(listed.stdout, list.stdout);
    let mut child = Command::new(&sendmail)
        .arg("me")
        .current_dir(cwd.path())
        .env("TERN_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: found\n\nby TERN_CONFIG\n")
        .unwrap();
    let sent = child.wait_with_output().unwrap();
    assert_eq!(sent.status.code(), Some(0), "{sent:?}");
    let keys = tern_in(
        tern,
        cwd.path(),
        Some(&config),
        &["dkim", "keygen", "--domain", "example.org"],
    );
    assert_eq!(keys.status.code(), Some(0), "{keys:?}");
    let data = server.dir.path().join("data");
    assert!(
        text(&keys.stderr).contains(&format!("wrote {}", data.join("dkim").display())),
        "keys go to the data directory of the config in force: {keys:?}"
    );
    // Nothing at all: the embedded default, whose data is in ./tern-data.
    if !system_config() {
        let list = tern_in(tern, cwd.path(), None, &["queue", "list"]);
        assert!(text(&list.stderr).contains("tern-data"), "{list:?}");
        let listed = tern_in(&mailq, cwd.path(), None, &[]);
        assert_eq!(listed.stderr, list.stderr);
    }
}
