//! The harness of the integration tests: starts the real `tern` binary on
//! 127.0.0.1 with ports chosen by the kernel, in a fresh temporary directory,
//! and offers a line-oriented SMTP client and Maildir inspection.
//!
//! Every test server uses the domains example.org and example.net with users
//! `me` and `bob` (plus whatever extra TOML a test adds).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The base configuration; `{data}` is replaced by the data directory.
pub const BASE_CONFIG: &str = r#"
hostname = "mx.example.org"
data_dir = "{data}"
domains = ["example.org", "example.net"]

[[listener]]
address = "127.0.0.1:0"
role = "mx"

[[user]]
name = "me"

[[user]]
name = "bob"
"#;

/// A DNS server on loopback that answers SERVFAIL to every question. Every
/// test config that does not set `[relay]` itself points at one, so a remote
/// recipient is deferred at once ("DNS lookup failed") and no test ever asks
/// the machine's own resolver.
pub struct ServfailDns {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ServfailDns {
    pub fn start() -> ServfailDns {
        use std::sync::atomic::{AtomicBool, Ordering};
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if n >= 12 {
                        // The question echoed back as a response (QR) with
                        // RCODE 2 (SERVFAIL); RFC 1035 §4.1.1.
                        buf[2] |= 0x80;
                        buf[3] = (buf[3] & 0xF0) | 0x82;
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }
        });
        ServfailDns { addr, stop }
    }
}

impl Drop for ServfailDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A running `tern serve`.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    /// Bound addresses by role name ("mx", "submission", "submissions").
    pub addrs: Vec<(String, SocketAddr)>,
    pub log_path: PathBuf,
    /// The SERVFAIL DNS server, when the test did not configure `[relay]`.
    pub dns: Option<ServfailDns>,
    /// Environment for the process (as systemd would set it).
    pub env: Vec<(String, PathBuf)>,
    /// Run the daemon as this uid and gid (as systemd's `User=` would)
    /// instead of the test's own root.
    pub run_as: Option<(u32, u32)>,
}

/// The path of the binary under test.
pub fn tern_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tern")
}

impl TestServer {
    /// Starts a server with the base config plus `extra` TOML (which may add
    /// listeners, limits, aliases...).
    pub fn start(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut config = format!(
            "{}\n{}",
            BASE_CONFIG.replace("{data}", data.to_str().unwrap()),
            extra
        );
        let mut dns = None;
        if !extra.contains("[relay]") {
            let servfail = ServfailDns::start();
            config.push_str(&format!(
                "\n[relay]\nnameservers = [\"{}\"]\n",
                servfail.addr
            ));
            dns = Some(servfail);
        }
        if !extra.contains("[mx]") {
            // The SERVFAIL server cannot say that a sender's domain exists:
            // tests that check senders set `[mx]` and a DNS of their own.
            // Nor can SPF, DKIM or DMARC be checked against it: tests of
            // those set `[mx]` and publish records on a DNS of their own.
            config.push_str("\n[mx]\nverify_sender_domain = false\nauthenticate = false\n");
        }
        let mut server = Self::start_with_config(dir, &config);
        server.dns = dns;
        server
    }

    /// Starts a server with exactly `config` in `dir`.
    pub fn start_with_config(dir: tempfile::TempDir, config: &str) -> TestServer {
        Self::start_with_config_as(dir, config, None)
    }

    /// Starts a server with exactly `config` in `dir`, as `run_as` (uid,
    /// gid) when given; `dir` must then be theirs.
    pub fn start_with_config_as(
        dir: tempfile::TempDir,
        config: &str,
        run_as: Option<(u32, u32)>,
    ) -> TestServer {
        let config_path = dir.path().join("tern.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut server = TestServer {
            log_path: dir.path().join("tern.log"),
            dir,
            config_path,
            child: None,
            addrs: Vec::new(),
            dns: None,
            env: Vec::new(),
            run_as,
        };
        server.spawn();
        server
    }

    /// Starts (or restarts) the process and waits until every listener is up.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let listeners = std::fs::read_to_string(&self.config_path)
            .unwrap()
            .matches("[[listener]]")
            .count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = Command::new(tern_bin());
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("TERN_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tern");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("tern did not start; log:\n{}", self.log());
                }
            };
            if let Some(rest) = line.strip_prefix("tern: listening on ") {
                let (addr, role) = rest.split_once(' ').unwrap();
                addrs.push((
                    role.trim_matches(|c| c == '(' || c == ')').to_string(),
                    addr.parse().unwrap(),
                ));
            }
        }
        self.addrs = addrs;
        self.child = Some(child);
    }

    /// The address of the first listener with `role`.
    pub fn addr(&self, role: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {role} listener"))
    }

    /// The MX listener.
    pub fn mx(&self) -> SocketAddr {
        self.addr("mx")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tern did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The Maildir `new/` of `user`.
    pub fn new_dir(&self, user: &str) -> PathBuf {
        self.data().join("mail").join(user).join("new")
    }

    /// The messages in `user`'s Maildir `new/`, sorted by file name.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        read_maildir(&self.new_dir(user))
    }

    /// Waits until `user` has at least `n` messages (panics after `timeout`).
    pub fn wait_for_messages(&self, user: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages(user);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{user} has {} message(s), expected {n}; log:\n{}",
                    got.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client connected to the listener with `role`, greeting read.
    pub fn connect(&self, role: &str) -> Client {
        Client::connect(self.addr(role))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends a signal by name with the `kill` command (no libc in tests).
pub fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The files of a Maildir subdirectory, sorted by name.
pub fn read_maildir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// The body of a delivered message: everything after our added headers
/// (Return-Path, Delivered-To, Received), i.e. what the client sent.
pub fn strip_trace(message: &[u8]) -> &[u8] {
    let mut rest = message;
    for prefix in [&b"Return-Path:"[..], b"Delivered-To:", b"Received:"] {
        if rest.starts_with(prefix) {
            // Skip the header and its folded continuation lines.
            let mut end = 0;
            loop {
                let nl = rest[end..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("header end")
                    + end
                    + 2;
                end = nl;
                if !(rest[end..].starts_with(b"\t") || rest[end..].starts_with(b" ")) {
                    break;
                }
            }
            rest = &rest[end..];
        }
    }
    rest
}

/// A minimal blocking SMTP client for tests.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut c = Client::connect_raw(addr);
        let greeting = c.read_reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        c
    }

    /// Connects without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one (possibly multi-line) reply; returns all its lines joined by
    /// `\n`, without CRLF. Empty string on EOF.
    pub fn read_reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
        }
        lines.join("\n")
    }

    /// Sends a command line and returns the reply.
    pub fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Sends a whole message (envelope and DATA); returns the final reply.
    pub fn send_mail(&mut self, from: &str, to: &[&str], data: &[u8]) -> String {
        let r = self.command(&format!("MAIL FROM:<{from}>"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in to {
            let r = self.command(&format!("RCPT TO:<{rcpt}>"));
            assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
        }
        let r = self.command("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        self.send(data);
        self.send(b".\r\n");
        self.read_reply()
    }

    /// True when the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// What a run of the `tern` command printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(output: std::process::Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics unless the command exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }
}

/// Runs `program` (the tern binary or a link to it) with `args`.
pub fn run_program(program: &Path, args: &[&str]) -> Run {
    Run::of(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the tern binary"),
    )
}

/// The queue id in a `250 2.0.0 Ok: queued as <id>` reply.
pub fn queued_id(reply: &str) -> String {
    reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {reply}"))
        .trim()
        .to_string()
}

impl TestServer {
    /// Runs `tern queue <args> --config <this server's config>`.
    pub fn tern_queue(&self, args: &[&str]) -> Run {
        let config = self.config_path.to_str().expect("utf-8 path");
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config]);
        run_program(Path::new(tern_bin()), &all)
    }
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after
/// `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
