//! The SMTP client (RFC 5321 §3, §4) that carries a message to another
//! server: greeting, EHLO (HELO as fallback), STARTTLS (RFC 3207), AUTH
//! PLAIN/LOGIN (RFC 4954), and one mail transaction with PIPELINING (RFC 2920)
//! when the server offers it. It reports every reply; deciding what a reply
//! means for the queue is `deliver.rs`'s job.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::smtp::EnhancedCode;

/// A reply from the remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    /// The text of each line, without the code.
    pub lines: Vec<String>,
}

impl RemoteReply {
    /// 2yz or 3yz.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4yz: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as one line, for logs, the queue and bounces: `550 5.1.1 No such user`.
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }

    /// The enhanced status code the reply's lines start with (RFC 2034 §4),
    /// when its class is the reply's.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        let first = self.lines.first()?.split(' ').next()?;
        let code: EnhancedCode = first.parse().ok()?;
        (u16::from(code.0) == self.code / 100).then_some(code)
    }

    /// The text without codes: the lines, each without the enhanced code it
    /// starts with, joined by spaces.
    pub fn text(&self) -> String {
        let Some(code) = self.enhanced() else {
            return self.lines.join(" ");
        };
        let prefix = code.to_string();
        let lines: Vec<&str> = self
            .lines
            .iter()
            .map(|l| match l.strip_prefix(&prefix) {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
                _ => l.as_str(),
            })
            .collect();
        lines.join(" ")
    }
}

/// Why the conversation could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Connect(io::Error),
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// What the server offered in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    /// RFC 1870: the largest message it takes (0 = no limit given).
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub chunking: bool,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Extensions {
    fn parse(reply: &RemoteReply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eight_bit = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "STARTTLS" => ext.starttls = true,
                "CHUNKING" => ext.chunking = true,
                "AUTH" => ext.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        ext
    }
}

/// The replies of one transaction.
#[derive(Debug, Clone)]
pub struct TransactionReplies {
    pub mail: RemoteReply,
    /// One per recipient, in order; `None` when never sent (MAIL failed).
    pub rcpts: Vec<Option<RemoteReply>>,
    /// The reply to the end of data (or to DATA itself when it was refused);
    /// `None` when DATA was never sent.
    pub data: Option<RemoteReply>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// One SMTP client connection.
pub struct Connection {
    stream: Stream,
    buffer: Vec<u8>,
    timeout: Duration,
    pub peer: SocketAddr,
    pub extensions: Extensions,
    /// `TLSv1.3 ...` once TLS is up.
    pub tls: Option<String>,
}

/// Longest reply line we read; RFC 5321 §4.5.3.1.5 says 512.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply.
const MAX_REPLY_LINES: usize = 100;
/// The most we write under one timeout (RFC 5321 §4.5.3.2.5).
const SEND_CHUNK: usize = 64 * 1024;

impl Connection {
    /// Connects and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<(Connection, RemoteReply), ClientError> {
        let mut conn = Connection::open(addr, connect_timeout, timeout).await?;
        let greeting = conn.read_reply("greeting").await?;
        Ok((conn, greeting))
    }

    /// Connects with TLS from the first byte (RFC 8314) and reads the greeting.
    pub async fn connect_implicit_tls(
        addr: SocketAddr,
        connector: TlsConnector,
        server_name: ServerName<'static>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<(Connection, RemoteReply), ClientError> {
        let mut conn = Connection::open(addr, connect_timeout, timeout).await?;
        conn.handshake(connector, server_name).await?;
        let greeting = conn.read_reply("greeting").await?;
        Ok((conn, greeting))
    }

    /// The TCP connection, nothing read yet.
    async fn open(
        addr: SocketAddr,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connection"))?
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(Connection {
            stream: Stream::Plain(tcp),
            buffer: Vec::new(),
            timeout,
            peer: addr,
            extensions: Extensions::default(),
            tls: None,
        })
    }

    /// EHLO; HELO if the server does not know EHLO. Records the extensions.
    pub async fn hello(&mut self, hostname: &str) -> Result<RemoteReply, ClientError> {
        let reply = self
            .command(&format!("EHLO {hostname}"), "EHLO reply")
            .await?;
        if reply.is_positive() {
            self.extensions = Extensions::parse(&reply);
            return Ok(reply);
        }
        if reply.code >= 500 {
            self.extensions = Extensions::default();
            return self
                .command(&format!("HELO {hostname}"), "HELO reply")
                .await;
        }
        Ok(reply)
    }

    /// STARTTLS and the handshake. The caller must say EHLO again afterwards.
    pub async fn starttls(
        &mut self,
        connector: TlsConnector,
        server_name: ServerName<'static>,
    ) -> Result<RemoteReply, ClientError> {
        let reply = self.command("STARTTLS", "STARTTLS reply").await?;
        if reply.code != 220 {
            return Ok(reply);
        }
        if !self.buffer.is_empty() {
            // RFC 3207 §4.2 (and CVE-2011-1575): nothing may follow the 220 in
            // plaintext.
            return Err(ClientError::Protocol(
                "server sent data after its STARTTLS reply".into(),
            ));
        }
        self.handshake(connector, server_name).await?;
        self.extensions = Extensions::default();
        Ok(reply)
    }

    async fn handshake(
        &mut self,
        connector: TlsConnector,
        server_name: ServerName<'static>,
    ) -> Result<(), ClientError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ClientError::Protocol("TLS is already active".into()));
        };
        let tls = tokio::time::timeout(self.timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.tls = Some(crate::tls::describe(tls.get_ref().1));
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// AUTH PLAIN (or LOGIN if only that is offered), RFC 4954. Returns the
    /// final reply (235 on success).
    pub async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<RemoteReply, ClientError> {
        use base64::prelude::{Engine as _, BASE64_STANDARD};
        let encode = |bytes: &[u8]| BASE64_STANDARD.encode(bytes);
        if self.extensions.auth.iter().any(|m| m == "PLAIN")
            || !self.extensions.auth.iter().any(|m| m == "LOGIN")
        {
            let token = encode(format!("\0{user}\0{password}").as_bytes());
            return self
                .command(&format!("AUTH PLAIN {token}"), "AUTH reply")
                .await;
        }
        let reply = self.command("AUTH LOGIN", "AUTH reply").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let reply = self.command(&encode(user.as_bytes()), "AUTH reply").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        self.command(&encode(password.as_bytes()), "AUTH reply")
            .await
    }

    /// One mail transaction: `mail_command` (`MAIL FROM:<...> SIZE=...`), RCPT
    /// for each recipient, DATA with the
    /// dot-stuffed `content`. Pipelined when the server offers PIPELINING.
    pub async fn transaction(
        &mut self,
        mail_command: &str,
        recipients: &[String],
        content: &[u8],
    ) -> Result<TransactionReplies, ClientError> {
        let rcpt_lines: Vec<String> = recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>\r\n"))
            .collect();
        let mail_line = format!("{mail_command}\r\n");
        let (mail, rcpts, data_reply) = if self.extensions.pipelining {
            // RFC 2920 §3.1: MAIL, RCPTs and DATA in one group.
            let mut group = mail_line.into_bytes();
            for l in &rcpt_lines {
                group.extend_from_slice(l.as_bytes());
            }
            group.extend_from_slice(b"DATA\r\n");
            self.send(&group).await?;
            let mail = self.read_reply("MAIL reply").await?;
            let mut rcpts = Vec::with_capacity(recipients.len());
            for _ in recipients {
                rcpts.push(Some(self.read_reply("RCPT reply").await?));
            }
            let data = self.read_reply("DATA reply").await?;
            (mail, rcpts, data)
        } else {
            self.send(mail_line.as_bytes()).await?;
            let mail = self.read_reply("MAIL reply").await?;
            if !mail.is_positive() {
                return Ok(TransactionReplies {
                    mail,
                    rcpts: vec![None; recipients.len()],
                    data: None,
                });
            }
            let mut rcpts = Vec::with_capacity(recipients.len());
            for l in &rcpt_lines {
                self.send(l.as_bytes()).await?;
                rcpts.push(Some(self.read_reply("RCPT reply").await?));
            }
            if !rcpts.iter().flatten().any(RemoteReply::is_positive) {
                self.reset().await;
                return Ok(TransactionReplies {
                    mail,
                    rcpts,
                    data: None,
                });
            }
            self.send(b"DATA\r\n").await?;
            let data = self.read_reply("DATA reply").await?;
            (mail, rcpts, data)
        };
        let any_rcpt = mail.is_positive() && rcpts.iter().flatten().any(RemoteReply::is_positive);
        if data_reply.code != 354 {
            if data_reply.is_positive() {
                return Err(ClientError::Protocol(format!(
                    "unexpected reply to DATA: {}",
                    data_reply.one_line()
                )));
            }
            return Ok(TransactionReplies {
                mail,
                rcpts,
                data: any_rcpt.then_some(data_reply),
            });
        }
        if !any_rcpt {
            // RFC 2920 §3.1: a server that said 354 anyway gets an empty message
            // it must not deliver, since no recipient was accepted.
            self.send(b".\r\n").await?;
            let _ = self.read_reply("end of data").await;
            return Ok(TransactionReplies {
                mail,
                rcpts,
                data: None,
            });
        }
        self.send(&dot_stuff(content)).await?;
        // RFC 5321 §4.5.3.2.6: the reply to the final dot may take 10 minutes.
        let final_reply = self
            .read_reply_within("end of data", self.timeout * 2)
            .await?;
        Ok(TransactionReplies {
            mail,
            rcpts,
            data: Some(final_reply),
        })
    }

    /// RSET, ignoring the outcome.
    pub async fn reset(&mut self) {
        let _ = self.command("RSET", "RSET reply").await;
    }

    /// QUIT and close, ignoring failures.
    pub async fn quit(mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.command("QUIT", "QUIT reply")).await;
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }

    /// Sends a command line and reads its reply.
    pub async fn command(
        &mut self,
        line: &str,
        what: &'static str,
    ) -> Result<RemoteReply, ClientError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(what).await
    }

    /// Writes `bytes`, allowing the timeout for each [`SEND_CHUNK`] the
    /// server takes rather than for the whole: RFC 5321 §4.5.3.2.5 times
    /// "each TCP SEND call", so a big message over a slow link still goes.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        for chunk in bytes.chunks(SEND_CHUNK) {
            let write = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.write_all(chunk).await,
                    Stream::Tls(s) => {
                        s.write_all(chunk).await?;
                        s.flush().await
                    }
                    Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
                }
            };
            tokio::time::timeout(self.timeout, write)
                .await
                .map_err(|_| ClientError::Timeout("the server to take data"))?
                .map_err(ClientError::Io)?;
        }
        Ok(())
    }

    async fn read_reply(&mut self, what: &'static str) -> Result<RemoteReply, ClientError> {
        self.read_reply_within(what, self.timeout).await
    }

    async fn read_reply_within(
        &mut self,
        what: &'static str,
        timeout: Duration,
    ) -> Result<RemoteReply, ClientError> {
        let mut lines = Vec::new();
        let mut code = 0;
        loop {
            let line = self.read_line(what, timeout).await?;
            let (head, text) = (line.get(..3), line.get(4..).unwrap_or(""));
            let parsed = head
                .and_then(|h| h.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let Some(this_code) = parsed else {
                return Err(ClientError::Protocol(format!(
                    "malformed reply line {line:?}"
                )));
            };
            if code != 0 && this_code != code {
                return Err(ClientError::Protocol(format!(
                    "reply code changed within a reply: {line:?}"
                )));
            }
            code = this_code;
            lines.push(text.to_string());
            let more = line.as_bytes().get(3) == Some(&b'-');
            if !more {
                return Ok(RemoteReply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol("reply has too many lines".into()));
            }
        }
    }

    async fn read_line(
        &mut self,
        what: &'static str,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(nl) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=nl).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buffer.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol("reply line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                    Stream::Gone => Ok(0),
                }
            };
            let n = tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| ClientError::Timeout(what))??;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("server closed the connection before the {what}"),
                )));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `content` with every line starting with `.` given an extra `.` (RFC 5321
/// §4.5.2), ending in CRLF, followed by the end-of-data line.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The TLS connector for a policy.
pub fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    /// RFC 5321 §4.5.3.2.5: the data timeout bounds each chunk the server
    /// takes ("each TCP SEND call"), not the whole message: a server that
    /// reads steadily but slowly (a big message over a slow uplink) must get
    /// it all, even when that takes longer than the command timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_but_steady_reader_gets_the_whole_message() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        // The server reads at most RATE octets a second; the message takes
        // about 1 s to go at that rate (less what the kernel buffers: up to 4
        // MB), twice the timeout. The kernel wakes a blocked writer when half
        // its send buffer has drained (2 MB, 1/8 s here), well within it.
        const RATE: f64 = 16.0 * 1024.0 * 1024.0;
        let timeout = Duration::from_millis(500);
        let line = format!("{}\r\n", "x".repeat(998));
        let content = line.repeat(16 * 1024 * 1024 / line.len());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            stream.get_mut().write_all(b"220 slow\r\n").await.unwrap();
            for reply in [&b"250 ok\r\n"[..], b"250 ok\r\n", b"354 go\r\n"] {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                stream.get_mut().write_all(reply).await.unwrap();
            }
            let started = tokio::time::Instant::now();
            let (mut received, mut tail) = (0usize, Vec::new());
            let mut buf = vec![0u8; 64 * 1024];
            while !tail.ends_with(b"\r\n.\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client gave up after {received} octets");
                received += n;
                tail.extend_from_slice(&buf[..n]);
                tail.drain(..tail.len().saturating_sub(5));
                tokio::time::sleep_until(started + Duration::from_secs_f64(received as f64 / RATE))
                    .await;
            }
            stream.get_mut().write_all(b"250 done\r\n").await.unwrap();
            received
        });
        let (mut conn, _) = Connection::connect(addr, timeout, timeout).await.unwrap();
        let started = std::time::Instant::now();
        let replies = conn
            .transaction(
                "MAIL FROM:<a@example.org>",
                &["b@example.net".into()],
                content.as_bytes(),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(
            replies.unwrap().data.map(|r| r.code),
            Some(250),
            "after {took:?}"
        );
        assert!(
            took > timeout,
            "the transfer must outlast the timeout: {took:?}"
        );
        assert_eq!(server.await.unwrap(), content.len() + 3);
    }

    #[test]
    fn extensions_from_ehlo() {
        let reply = RemoteReply {
            code: 250,
            lines: vec![
                "mx.example greets you".into(),
                "PIPELINING".into(),
                "SIZE 1000".into(),
                "8BITMIME".into(),
                "auth plain login".into(),
                "STARTTLS".into(),
            ],
        };
        let e = Extensions::parse(&reply);
        assert!(e.pipelining && e.eight_bit && e.starttls && !e.smtputf8 && !e.chunking);
        assert_eq!(e.size, Some(1000));
        assert_eq!(e.auth, vec!["PLAIN", "LOGIN"]);
    }
}
