//! `tern user passwd`: reads a new password (twice, without echo, from the
//! terminal; or one line from a pipe) and prints the `password = "$argon2id$…"`
//! line to paste into the user's `[[user]]` table in tern.toml.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::auth::hash_password;

/// Prints the hash line for tern.toml; `name` only goes into its comment.
pub fn run(name: Option<&str>) -> ExitCode {
    let hashed = read_new_password().and_then(|p| hash_password(&p));
    match hashed {
        Ok(hash) => {
            if let Some(name) = name {
                println!("# [[user]] name = \"{name}\"");
            }
            println!("password = \"{hash}\"");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A new password: from the terminal without echo (asked twice), or one line
/// from standard input when it is not a terminal.
fn read_new_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        return if password.is_empty() {
            Err("empty password".into())
        } else {
            Ok(password)
        };
    }
    let ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let line = without_echo(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .map_err(|e| format!("cannot read the password: {e}"))?;
        eprintln!();
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("New password: ")?;
    if first.is_empty() {
        return Err("empty password".into());
    }
    if ask("Again: ")? != first {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// Runs `f` with terminal echo off, restoring it afterwards.
fn without_echo<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let result = f();
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    result
}
