//! A real Postfix for interop tests: a private instance started by
//! `scripts/postfix-instance` in a temporary directory, listening on a free
//! port of a loopback address, delivering mail for one domain into Maildirs
//! under that directory. It is stopped when dropped (by the script, then by
//! the master's PID if the script could not), so a failing test leaves no
//! Postfix behind.
//!
//! Tests call [`Postfix::available`] first and skip, loudly, only when Debian's
//! postfix package is not installed (`.ci/run` installs it).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The script that owns instances.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postfix-instance")
}

/// What to start.
#[derive(Debug, Clone)]
pub struct PostfixOptions {
    /// The loopback address to listen on.
    pub ip: &'static str,
    /// The domain it accepts mail for.
    pub domain: &'static str,
    /// Local parts with a Maildir of their own (others go to `catchall`).
    pub users: Vec<&'static str>,
    /// STARTTLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `DOMAIN=IP:PORT` routes for relaying.
    pub relays: Vec<String>,
    /// Extra `NAME=VALUE` main.cf settings.
    pub settings: Vec<String>,
}

impl PostfixOptions {
    pub fn new(ip: &'static str, domain: &'static str) -> PostfixOptions {
        PostfixOptions {
            ip,
            domain,
            users: Vec::new(),
            tls: None,
            relays: Vec::new(),
            settings: Vec::new(),
        }
    }
}

/// A running instance.
pub struct Postfix {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub master_pid: u32,
    /// How long `start` took (config, checks, start, first greeting).
    pub start_time: Duration,
}

impl Postfix {
    /// Fails the test `test` unless Postfix is installed (scripts/test
    /// installs it on Debian): a missing peer is never a pass.
    pub fn require(test: &str) {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "{test}: Postfix is not installed on this machine: run \
             `scripts/postfix-instance install` (as root)"
        );
    }

    /// Starts an instance on a free port of `options.ip` (a few tries, in
    /// case another program takes the port between the probe and the bind).
    pub fn start(options: &PostfixOptions) -> Postfix {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port(options.ip);
            match Self::try_start(options, port) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("postfix-instance start failed three times; last:\n{last}");
    }

    fn try_start(options: &PostfixOptions, port: u16) -> Result<Postfix, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(script());
        cmd.arg("start")
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .args(["--domain", options.domain])
            .args(["--ip", options.ip]);
        for u in &options.users {
            cmd.args(["--user", u]);
        }
        if let Some((cert, key)) = &options.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        for r in &options.relays {
            cmd.args(["--relay", r]);
        }
        for s in &options.settings {
            cmd.args(["--set", s]);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run scripts/postfix-instance");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let master_pid = stdout
            .lines()
            .find_map(|l| l.strip_prefix("master_pid="))
            .and_then(|p| p.trim().parse().ok());
        match (out.status.success(), master_pid) {
            (true, Some(master_pid)) => Ok(Postfix {
                dir,
                addr: SocketAddr::new(options.ip.parse().unwrap(), port),
                master_pid,
                start_time: started.elapsed(),
            }),
            _ => {
                // Whatever did start must not outlive the attempt.
                let _ = Command::new(script()).arg("stop").arg(dir.path()).output();
                Err(format!(
                    "{}\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        }
    }

    /// The `new/` of the Maildir of `user` (`catchall` for the others).
    pub fn new_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user).join("new")
    }

    /// The delivered messages of `user`, sorted by file name.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.new_dir(user)) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    /// Waits (bounded) until `user` has `n` messages, and returns them.
    pub fn wait_for(&self, user: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages(user);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "Postfix's Maildir of {user} has {} message(s), expected {n}; maillog:\n{}",
                    got.len(),
                    self.maillog()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance's log.
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.maillog();
            if log.contains(needle) {
                return log;
            }
            if Instant::now() > deadline {
                panic!("Postfix never logged {needle:?}; maillog:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let stopped = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.master_pid)).ok();
        if !stopped || exe.is_some_and(|e| e.ends_with("master")) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.master_pid.to_string()])
                .status();
        }
    }
}

/// A port on `ip` that nothing listens on right now.
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// Splits the trace fields Postfix put on top of a delivered message
/// (`Return-Path`, `X-Original-To`, `Delivered-To`, and its one `Received`,
/// folded lines included) from the rest, which is what the client sent.
/// Returns (trace, rest). Postfix writes Maildir files with LF line ends.
pub fn split_postfix_trace(message: &[u8]) -> (String, &[u8]) {
    let mut rest = message;
    let mut trace = String::new();
    let mut received = false;
    loop {
        let name_end = rest.iter().position(|&b| b == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&rest[..name_end]).to_ascii_lowercase();
        let take = match name.as_str() {
            "return-path" | "x-original-to" | "delivered-to" => true,
            "received" if !received => {
                received = true;
                true
            }
            _ => false,
        };
        if !take {
            return (trace, rest);
        }
        // The field and its continuation lines.
        let mut end = 0;
        loop {
            end += rest[end..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("header line end")
                + 1;
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        trace.push_str(&String::from_utf8_lossy(&rest[..end]));
        rest = &rest[end..];
    }
}
