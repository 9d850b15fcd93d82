//! `tern config check` as the owner runs it: the real binary, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
