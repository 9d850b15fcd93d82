//! The appliance's tern.toml (image/tern.toml.in filled by
//! image/overlay/usr/libexec/tern/render-config, as scripts/build-image and
//! first boot do): the placeholder and a seeded config both pass
//! `tern config check`; the placeholder is recognised as one (what
//! `systemctl status tern` reports) and the seeded one is not; a seed with a
//! bad value is refused before it reaches the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn render(args: &[&str]) -> Output {
    Command::new("sh")
        .arg(repo_file("image/overlay/usr/libexec/tern/render-config"))
        .arg(repo_file("image/tern.toml.in"))
        .args(args)
        .output()
        .expect("sh runs")
}

fn check(text: &[u8]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    (dir, path, output)
}

/// The `password = "..."` line `tern user passwd` prints for `password`.
fn password_line(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["user", "passwd", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("password = "))
        .expect("a password line")
        .to_string()
}

#[test]
fn the_placeholder_checks_and_is_recognised_as_a_placeholder() {
    let out = render(&["mail.example.org", "example.org", "owner", "--placeholder"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.contains("# PLACEHOLDER:"), "{text}");
    for marker in [
        "@NOTICE@",
        "@HOSTNAME@",
        "@DOMAINS@",
        "@USER@",
        "@PASSWORD@",
    ] {
        assert!(!text.contains(marker), "{marker} left in {text}");
    }
    let (_dir, path, checked) = check(&out.stdout);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    let config = tern::config::Config::load(&path).unwrap();
    assert_eq!(
        config.placeholder_names(),
        ["mail.example.org", "example.org"]
    );
    assert!(config.users["owner"].password.is_none());
    assert!(
        config.dovecot.is_some(),
        "the appliance's config has [dovecot] on"
    );
}

#[test]
fn a_seeded_config_checks_with_the_owners_names_and_password() {
    let line = password_line("correct horse");
    let hash = line
        .trim_start_matches("password = \"")
        .trim_end_matches('"');
    let out = render(&["mail.tern.test", "tern.test seed2.test", "alice", hash]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(!text.contains("PLACEHOLDER"), "{text}");
    assert!(text.lines().any(|l| l == line), "{text}");
    let (_dir, path, checked) = check(&out.stdout);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    let config = tern::config::Config::load(&path).unwrap();
    assert!(config.placeholder_names().is_empty());
    assert_eq!(config.hostname, "mail.tern.test");
    assert_eq!(config.domains, ["tern.test", "seed2.test"]);
    assert_eq!(config.postmaster, "alice");
    assert!(config.users["alice"].password.is_some());
}

#[test]
fn a_seed_with_a_bad_value_is_refused() {
    for (args, says) in [
        (["mail example", "tern.test", "alice", ""], "hostname"),
        (["mail.tern.test", "tern.test\"]", "alice", ""], "domain"),
        (["mail.tern.test", "", "alice", ""], "no domain"),
        (["mail.tern.test", "tern.test", "al ice", ""], "user"),
        (
            ["mail.tern.test", "tern.test", "alice", "secret\"|"],
            "argon2id",
        ),
    ] {
        let out = render(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
