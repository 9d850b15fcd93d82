//! Every broken config under `tests/configs/<mistake>/` fails with exactly the
//! line in its `expected` file (DESIGN invariant 6: file:line:col and what was
//! expected). One directory per mistake; add a directory to add a case.

use std::fs;
use std::path::{Path, PathBuf};

use tern::config::Config;

/// The fixture directories, sorted.
fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_directory_has_a_config_and_its_expected_error() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 20, "only {} fixtures", dirs.len());
    for dir in &dirs {
        for file in ["tern.toml", "expected"] {
            assert!(dir.join(file).is_file(), "{} has no {file}", dir.display());
        }
    }
}

#[test]
fn every_broken_config_fails_with_exactly_the_expected_error() {
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (Ok(bytes), Ok(expected)) = (
            fs::read(dir.join("tern.toml")),
            fs::read_to_string(dir.join("expected")),
        ) else {
            failures.push(format!("{name}: tern.toml or expected is missing"));
            continue;
        };
        let expected = expected.trim_end_matches('\n');
        match Config::parse_bytes(&bytes, Path::new("tern.toml")) {
            Ok(_) => failures.push(format!("{name}: accepted, expected\n    {expected}")),
            Err(error) if error.to_string() == expected => {}
            Err(error) => failures.push(format!(
                "{name}:\n    expected {expected}\n    got      {error}"
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_expected_error_is_one_line_naming_the_file() {
    for dir in fixture_dirs() {
        let expected = fs::read_to_string(dir.join("expected")).unwrap_or_default();
        assert!(expected.starts_with("tern.toml"), "{}", dir.display());
        assert_eq!(
            expected.trim_end_matches('\n').lines().count(),
            1,
            "{}",
            dir.display()
        );
    }
}
