//! SMTP transcript tests: each `tests/transcripts/<name>.txt` is a dialogue
//! with the real `tern serve` (started fresh for the file, on 127.0.0.1:0, in a
//! temporary directory), written the way a person would type it, plus checks
//! on what ended up in the Maildirs. One `#[test]` per file.
//!
//! # Format
//!
//! One step per line. A failure names `file:line`, the step, the last lines
//! exchanged and the tail of the server log.
//!
//! ```text
//! # comment                 (anywhere; blank lines are ignored)
//! config: TOML LINE         extra config, one line each, before the dialogue;
//!                           added to the base config of tests/common (domains
//!                           example.org and example.net, users me and bob)
//! > TEXT                    send TEXT followed by CRLF (TEXT is UTF-8, as is;
//!                           a lone `>` sends an empty line)
//! >> BYTES                  send exactly BYTES, nothing appended; escapes:
//!                           \r \n \t \\ \xHH
//! < PREFIX                  read the next reply line; it must start with PREFIX
//! <... PREFIX               skip the continuation lines ("250-...") of the reply
//!                           being read; its final line must start with PREFIX
//! closed                    the server closes the connection (EOF or reset)
//!                           without sending anything more
//! closed after tls alert    the same, after one TLS alert record (what a
//!                           server in the TLS handshake says to plaintext)
//! quiet SECONDS             the server sends nothing for this long (and does
//!                           not close), e.g. while it must still be in DATA
//! wait SECONDS              sleep, e.g. `wait 0.2s` (splits raw sends across
//!                           reads, lets timeouts expire)
//! timeout SECONDS           how long each following `<` waits (default 10s)
//! starttls [1.2|1.3]        TLS handshake (rustls, trusting data_dir/tls/
//!                           cert.pem, SNI mx.example.org) after a 220 to STARTTLS
//! connect NAME [to ROLE] [from IP]
//!                           open another connection (to the first listener
//!                           with ROLE: mx, the default, submission or
//!                           submissions; from source address IP, e.g.
//!                           127.0.0.2) and make it current; its greeting is
//!                           not read. To `submissions` (port 465, RFC 8314)
//!                           the TLS handshake comes first, as for `starttls`.
//!                           The first connection, c1, opens by itself to the
//!                           mx listener, unless the first step is `connect c1 …`
//! use NAME                  make connection NAME current
//! close                     the client closes the current connection
//! queued N                  the server has queued exactly N messages in all
//!                           (counted from its log, written before each 250)
//! maildir USER N            USER's Maildir new/ holds exactly N messages
//!                           (waits up to 10s for deliveries)
//! maildir USER I contains TEXT   message I (1-based, arrival order) contains
//! maildir USER I lacks TEXT      TEXT (escapes as for >>), or does not
//! maildir USER I body       followed by `| LINE` lines: what the client sent
//!                           (the message after tern's Return-Path, Delivered-To
//!                           and Received) is exactly these lines, each + CRLF
//! ```
//!
//! Every reply must be expected: a reply left unread when the client closes
//! (`close`) or at the end of the transcript is a failure, as is one arriving
//! where `closed` expects the end.
//!
//! Every reply line is also checked, whatever the transcript expects: it must
//! end in CRLF, and carry an enhanced status code whose class matches the reply
//! code (RFC 3463, RFC 2034) — except the greeting, the lines of EHLO/HELO
//! replies, 354 and the 334 challenges of AUTH (there is no 3.x.x class).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lang::{parse, show, Kind, Step};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::transcript_lang as lang;
use support::{strip_trace, TestServer};

/// One test per transcript file; `LISTED` names them all.
macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

transcripts! {
    aliases,
    auth_error_limit,
    auth_errors,
    auth_from_header,
    auth_login_lock,
    auth_mechanisms,
    auth_requires_tls,
    auth_sender,
    auth_throttle,
    bare_lf_commands,
    bdat,
    command_order,
    commands,
    connection_budgets,
    connection_limits,
    dot_unstuffing,
    dropped_connection,
    ehlo_helo,
    error_limit,
    limit_line_length,
    limit_message_size,
    limit_recipients,
    local_recipients,
    mail_transaction,
    pipelining,
    relay_denied,
    sender_domain,
    smtputf8,
    smuggling_cr_dot_cr,
    smuggling_crlf_dot_cr,
    smuggling_crlf_dot_lf,
    smuggling_lf_dot_crlf,
    smuggling_lf_dot_lf,
    smuggling_split_reads,
    starttls,
    starttls_injection_mail,
    starttls_injection_rset,
    timeout_command,
    timeout_data,
    timeout_data_rate,
    timeout_session,
    timeout_slow_drip,
}

/// A transcript file nobody listed would never run.
#[test]
fn every_transcript_file_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .expect("tests/transcripts")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/transcripts/*.txt and the list in tests/transcripts.rs differ"
    );
}

const HOSTNAME: &str = "mx.example.org";
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `close` and the end of a transcript listen for replies nobody
/// expected.
const LEFTOVER_CHECK: Duration = Duration::from_millis(200);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")
}

/// Runs one transcript; panics with every detail on the first failure.
fn run(name: &str) {
    let path = dir().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    let file = format!("tests/transcripts/{name}.txt");
    let script = match parse(&text) {
        Ok(s) => s,
        Err((line, e)) => panic!("{file}:{line}: {e}"),
    };
    let server = TestServer::start(&script.config);
    let mut runner = Runner {
        server: &server,
        conns: Vec::new(),
        current: 0,
        read_timeout: DEFAULT_READ_TIMEOUT,
        log: Vec::new(),
    };
    // The transcript may open c1 itself (to another listener).
    let opens_c1 = matches!(
        script.steps.first(),
        Some(Step { kind: Kind::Connect(name, ..), .. }) if name == "c1"
    );
    let first = if opens_c1 {
        Ok(())
    } else {
        runner.connect("c1", None, None)
    };
    let result = first.map_err(|e| (0, e)).and_then(|_| {
        for step in &script.steps {
            runner.step(step).map_err(|e| (step.line, e))?;
        }
        runner.no_leftovers().map_err(|e| (text.lines().count(), e))
    });
    if let Err((line, e)) = result {
        let step = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let exchanged = runner.log[runner.log.len().saturating_sub(40)..].join("\n");
        let server_log = server.log();
        let tail: Vec<&str> = server_log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{file}:{line}: {e}\n  step: {step}\n--- last lines exchanged ---\n{exchanged}\n\
             --- server log (tail) ---\n{}",
            tail.join("\n")
        );
    }
}

// --- running it ---------------------------------------------------------------

/// What one read brought.
enum Fill {
    Data,
    Eof,
    /// Nothing before the deadline.
    Nothing,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

enum Stream {
    Plain(TcpStream),
    Tls(Box<Tls>),
    Closed,
}

/// One client connection: its socket (plain or TLS) and what has been read but
/// not yet consumed.
struct Conn {
    name: String,
    stream: Stream,
    buf: Vec<u8>,
    lines_read: usize,
    /// Inside a multi-line reply to EHLO/HELO (no enhanced codes there).
    in_helo_reply: bool,
}

struct Runner<'a> {
    server: &'a TestServer,
    conns: Vec<Conn>,
    current: usize,
    read_timeout: Duration,
    /// Everything exchanged, for failure messages.
    log: Vec<String>,
}

impl Runner<'_> {
    fn step(&mut self, step: &Step) -> Result<(), String> {
        match &step.kind {
            Kind::Send(bytes) => self.send(bytes),
            Kind::Expect(prefix) => {
                let line = self.read_line()?;
                expect_prefix(&line, prefix)
            }
            Kind::ExpectFinal(prefix) => loop {
                let line = self.read_line()?;
                if line.as_bytes().get(3) != Some(&b'-') {
                    return expect_prefix(&line, prefix);
                }
            },
            Kind::Closed => self.expect_closed(),
            Kind::ClosedAfterAlert => self.expect_alert().and_then(|_| self.expect_closed()),
            Kind::Quiet(d) => self.expect_quiet(*d),
            Kind::Wait(d) => {
                std::thread::sleep(*d);
                Ok(())
            }
            Kind::Timeout(d) => {
                self.read_timeout = *d;
                Ok(())
            }
            Kind::StartTls(version) => self.starttls(version.as_deref()),
            Kind::Connect(name, role, from) => self.connect(name, role.as_deref(), *from),
            Kind::Use(name) => {
                self.current = self
                    .conns
                    .iter()
                    .position(|c| &c.name == name)
                    .ok_or_else(|| format!("no connection named {name}"))?;
                Ok(())
            }
            Kind::Close => {
                self.expect_quiet(LEFTOVER_CHECK)
                    .map_err(|e| format!("a reply nobody expected: {e}"))?;
                let conn = &mut self.conns[self.current];
                self.log.push(format!("{} (client closes)", conn.name));
                if let Stream::Plain(s) = &conn.stream {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                if let Stream::Tls(s) = &mut conn.stream {
                    s.conn.send_close_notify();
                    let _ = s.flush();
                    let _ = s.sock.shutdown(std::net::Shutdown::Both);
                }
                conn.stream = Stream::Closed;
                Ok(())
            }
            Kind::Queued(n) => {
                let got = self.server.log().matches("status=queued").count();
                if got == *n {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {n} message(s) queued, the server queued {got}"
                    ))
                }
            }
            Kind::MaildirCount(user, n) => self.maildir_count(user, *n).map(|_| ()),
            Kind::MaildirContains(user, index, text, wanted) => {
                let message = self.message(user, *index)?;
                let found = message.windows(text.len().max(1)).any(|w| w == &text[..]);
                match (found, wanted) {
                    (true, true) | (false, false) => Ok(()),
                    (false, true) => Err(format!(
                        "message {} of {user} lacks {:?}:\n{}",
                        index + 1,
                        show(text),
                        show(&message)
                    )),
                    (true, false) => Err(format!(
                        "message {} of {user} contains {:?}:\n{}",
                        index + 1,
                        show(text),
                        show(&message)
                    )),
                }
            }
            Kind::MaildirBody(user, index, body) => {
                let message = self.message(user, *index)?;
                let got = strip_trace(&message);
                if got == &body[..] {
                    Ok(())
                } else {
                    Err(format!(
                        "message {} of {user}: body differs\n  expected: {}\n       got: {}",
                        index + 1,
                        show(body),
                        show(got)
                    ))
                }
            }
        }
    }

    fn connect(
        &mut self,
        name: &str,
        role: Option<&str>,
        from: Option<IpAddr>,
    ) -> Result<(), String> {
        let role = role.unwrap_or("mx");
        let addr = self
            .server
            .addrs
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, a)| *a)
            .ok_or_else(|| format!("no {role} listener (add one with `config:` lines)"))?;
        let stream = match from {
            None => TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?,
            Some(ip) => connect_from(ip, addr)?,
        };
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        self.log.push(format!("{name} (connected)"));
        self.conns.push(Conn {
            name: name.to_string(),
            stream: Stream::Plain(stream),
            buf: Vec::new(),
            lines_read: 0,
            in_helo_reply: false,
        });
        self.current = self.conns.len() - 1;
        if role == "submissions" {
            // RFC 8314 §3: TLS from the first byte; the greeting comes after.
            self.starttls(None)?;
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let conn = &mut self.conns[self.current];
        self.log.push(format!("{} > {}", conn.name, show(bytes)));
        let result = match &mut conn.stream {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Stream::Closed => return Err("the connection is closed".into()),
        };
        result.map_err(|e| format!("send failed: {e}"))
    }

    /// Reads more bytes into the buffer, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> Result<Fill, String> {
        let conn = &mut self.conns[self.current];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Fill::Nothing);
        }
        let mut chunk = [0u8; 4096];
        let read = match &mut conn.stream {
            Stream::Plain(s) => {
                s.set_read_timeout(Some(left)).unwrap();
                s.read(&mut chunk)
            }
            Stream::Tls(s) => {
                s.sock.set_read_timeout(Some(left)).unwrap();
                s.read(&mut chunk)
            }
            Stream::Closed => return Err("the connection is closed".into()),
        };
        match read {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                conn.buf.extend_from_slice(&chunk[..n]);
                Ok(Fill::Data)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(Fill::Nothing)
            }
            // A reset, or TLS ending without close_notify: the server is gone.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(Fill::Eof)
            }
            Err(e) => Err(format!("read failed: {e}")),
        }
    }

    /// Reads one reply line (checked: CRLF, enhanced code), without its CRLF.
    fn read_line(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + self.read_timeout;
        loop {
            let conn = &mut self.conns[self.current];
            if let Some(nl) = conn.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = conn.buf.drain(..=nl).collect();
                self.log.push(format!("{} < {}", conn.name, show(&raw)));
                let Some(line) = raw.strip_suffix(b"\r\n") else {
                    return Err(format!("reply line not ended by CRLF: {}", show(&raw)));
                };
                let line = String::from_utf8(line.to_vec())
                    .map_err(|_| format!("reply line is not UTF-8: {}", show(&raw)))?;
                check_reply_line(conn, &line)?;
                conn.lines_read += 1;
                return Ok(line);
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Nothing => return Err(self.silence()),
                Fill::Eof => {
                    let conn = &self.conns[self.current];
                    return Err(if conn.buf.is_empty() {
                        "the server closed the connection".to_string()
                    } else {
                        format!("the server closed the connection after {}", show(&conn.buf))
                    });
                }
            }
        }
    }

    fn silence(&self) -> String {
        let conn = &self.conns[self.current];
        if conn.buf.is_empty() {
            format!("nothing from the server within {:?}", self.read_timeout)
        } else {
            format!(
                "no complete line from the server within {:?}, only {}",
                self.read_timeout,
                show(&conn.buf)
            )
        }
    }

    fn expect_closed(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.read_timeout;
        loop {
            let conn = &self.conns[self.current];
            if !conn.buf.is_empty() {
                return Err(format!(
                    "expected the connection to close, got {}",
                    show(&conn.buf)
                ));
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Nothing => return Err(self.silence()),
                Fill::Eof => {
                    let conn = &mut self.conns[self.current];
                    self.log
                        .push(format!("{} (closed by the server)", conn.name));
                    conn.stream = Stream::Closed;
                    return Ok(());
                }
            }
        }
    }

    /// Every connection still open has nothing unread: each reply was expected.
    fn no_leftovers(&mut self) -> Result<(), String> {
        for i in 0..self.conns.len() {
            if matches!(self.conns[i].stream, Stream::Closed) {
                continue;
            }
            self.current = i;
            self.expect_quiet(LEFTOVER_CHECK).map_err(|e| {
                format!(
                    "at the end, {} has a reply nobody expected: {e}",
                    self.conns[i].name
                )
            })?;
        }
        Ok(())
    }

    /// One TLS alert record (RFC 8446 §5.1: type 21, version 3.x, length 2).
    fn expect_alert(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.read_timeout;
        while self.conns[self.current].buf.len() < 7 {
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Nothing => return Err(self.silence()),
                Fill::Eof => break,
            }
        }
        let conn = &mut self.conns[self.current];
        match conn.buf.get(..5) {
            Some([0x15, 0x03, _, 0x00, 0x02]) if conn.buf.len() >= 7 => {
                let alert: Vec<u8> = conn.buf.drain(..7).collect();
                self.log
                    .push(format!("{} < (TLS alert {})", conn.name, show(&alert)));
                Ok(())
            }
            _ => Err(format!("expected a TLS alert, got {}", show(&conn.buf))),
        }
    }

    fn expect_quiet(&mut self, quiet: Duration) -> Result<(), String> {
        let conn = &self.conns[self.current];
        if !conn.buf.is_empty() {
            return Err(format!("expected silence, got {}", show(&conn.buf)));
        }
        match self.fill(Instant::now() + quiet)? {
            Fill::Nothing => Ok(()),
            Fill::Eof => Err("expected silence, the server closed the connection".into()),
            Fill::Data => Err(format!(
                "expected silence, got {}",
                show(&self.conns[self.current].buf)
            )),
        }
    }

    fn starttls(&mut self, version: Option<&str>) -> Result<(), String> {
        let config = tls_client_config(self.server, version)?;
        let conn = &mut self.conns[self.current];
        if !conn.buf.is_empty() {
            return Err(format!(
                "the server sent more plaintext before the handshake: {}",
                show(&conn.buf)
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Closed) else {
            return Err("starttls needs a plaintext connection".into());
        };
        let name = ServerName::try_from(HOSTNAME).unwrap();
        let client = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(client, tcp);
        tls.sock
            .set_read_timeout(Some(self.read_timeout))
            .map_err(|e| e.to_string())?;
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
        }
        let version = tls.conn.protocol_version();
        self.log
            .push(format!("{} (TLS established: {version:?})", conn.name));
        conn.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        self.server.messages(user)
    }

    /// Waits until `user` has exactly `n` messages; fails at once on more.
    fn maildir_count(&self, user: &str, n: usize) -> Result<Vec<Vec<u8>>, String> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let got = self.messages(user);
            if got.len() == n {
                return Ok(got);
            }
            if got.len() > n {
                return Err(format!("{user} has {} message(s), expected {n}", got.len()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{user} has {} message(s) after {DELIVERY_TIMEOUT:?}, expected {n}",
                    got.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn message(&self, user: &str, index: usize) -> Result<Vec<u8>, String> {
        self.messages(user).into_iter().nth(index).ok_or_else(|| {
            format!(
                "{user} has no message {} (use `maildir {user} N` first to wait for delivery)",
                index + 1
            )
        })
    }
}

fn expect_prefix(line: &str, prefix: &str) -> Result<(), String> {
    if line.starts_with(prefix) {
        Ok(())
    } else {
        Err(format!("expected a line starting {prefix:?}, got {line:?}"))
    }
}

/// RFC 5321 §4.2 line shape and RFC 3463 enhanced codes on every reply line.
fn check_reply_line(conn: &mut Conn, line: &str) -> Result<(), String> {
    let b = line.as_bytes();
    let shaped = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ') | Some(b'-'));
    if !shaped {
        return Err(format!("not a reply line: {line:?}"));
    }
    let code = &line[..3];
    let last = b.get(3) != Some(&b'-');
    let text = line.get(4..).unwrap_or("");
    let helo_reply = conn.in_helo_reply || (code == "250" && text.starts_with(HOSTNAME));
    conn.in_helo_reply = helo_reply && !last;
    // RFC 4954 §4: a 334 carries a base64 challenge, not a status code.
    if helo_reply || code == "354" || code == "334" || (code == "220" && conn.lines_read == 0) {
        return Ok(());
    }
    let enhanced = text.split(' ').next().unwrap_or("");
    let parts: Vec<&str> = enhanced.split('.').collect();
    let well_formed = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()));
    if !well_formed || parts[0] != &code[..1] {
        return Err(format!(
            "reply without a matching enhanced status code (RFC 3463): {line:?}"
        ));
    }
    Ok(())
}

/// A connection from a chosen local address (std cannot bind before connect).
fn connect_from(ip: IpAddr, to: SocketAddr) -> Result<TcpStream, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| e.to_string())?;
    let stream = rt
        .block_on(async {
            let socket = match ip {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(to).await?.into_std()
        })
        .map_err(|e| format!("connect {to} from {ip}: {e}"))?;
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// A rustls client trusting only the server's generated certificate.
fn tls_client_config(
    server: &TestServer,
    version: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = server.data().join("tls/cert.pem");
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        _ => rustls::DEFAULT_VERSIONS,
    };
    let config = rustls::ClientConfig::builder_with_provider(tern::tls::provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

// --- the runner's own checks must be able to fail ------------------------------

#[test]
fn runner_checks_every_reply_line() {
    let mut conn = Conn {
        name: "t".into(),
        stream: Stream::Closed,
        buf: Vec::new(),
        lines_read: 0,
        in_helo_reply: false,
    };
    let mut check = |line: &str| {
        let result = check_reply_line(&mut conn, line);
        conn.lines_read += 1;
        result.is_ok()
    };
    assert!(check("220 mx.example.org ESMTP tern"), "the greeting");
    assert!(!check("220 Ready to start TLS"), "220 after the greeting");
    assert!(check("250-mx.example.org greets client.example"));
    assert!(check("250-PIPELINING"), "EHLO continuation");
    assert!(check("250 STARTTLS"), "EHLO final line");
    assert!(!check("250 Ok"), "the EHLO reply is over");
    assert!(check("250 mx.example.org"), "HELO");
    assert!(check("250 2.1.0 Sender ok"));
    assert!(check("354 End data with <CR><LF>.<CR><LF>"));
    assert!(check("334 "), "an empty AUTH challenge");
    assert!(check("334 VXNlcm5hbWU6"), "a base64 AUTH challenge");
    assert!(check("214-2.0.0 Commands"));
    assert!(!check("550 2.0.0 class does not match"));
    assert!(!check("550 5.1 too short"));
    assert!(!check("550 5.1.1234 too long"));
    assert!(!check("5500 5.1.1 four digits"));
    assert!(!check("55"));
}
