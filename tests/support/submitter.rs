//! A tolerant SMTP client for the kill -9 campaign (tests/kill9_campaign.rs):
//! like [`super::mailer`] it never panics on a dead server, and it also
//! speaks STARTTLS with AUTH PLAIN (submission on 587) and BDAT (RFC 3030).
//! Every send ends in an [`Outcome`] that says whether the client saw the
//! connection die before or after its final dot (or BDAT LAST chunk): a
//! message may be delivered without its 250 only in the second case.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::mailer::dot_stuff;

/// What the client heard at the end of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `250` after the final dot or BDAT LAST: the message is durable.
    Acked(String),
    /// A 4xx/5xx reply (the reply): the message must not be delivered.
    Refused(String),
    /// The connection broke before the end of the content was sent.
    DiedBefore(String),
    /// The connection broke after the end was sent, before the reply: the
    /// message may or may not have been queued.
    DiedAfter(String),
}

/// How the content is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Data,
    /// BDAT chunks of this many bytes (the last one with LAST).
    Bdat(usize),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// How to log in on a submission listener.
#[derive(Clone)]
pub struct Login {
    pub tls: Arc<rustls::ClientConfig>,
    /// The name in the server's certificate.
    pub server_name: String,
    pub user: String,
    pub password: String,
}

/// One SMTP connection, greeting and EHLO done (and STARTTLS and AUTH for
/// a submission).
pub struct Submitter {
    io: BufReader<Stream>,
}

impl Submitter {
    /// Connects to `addr`; with `login`, upgrades with STARTTLS and
    /// authenticates (AUTH PLAIN).
    pub fn connect(addr: SocketAddr, login: Option<&Login>) -> io::Result<Submitter> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_nodelay(true)?;
        let mut s = Submitter {
            io: BufReader::new(Stream::Plain(tcp)),
        };
        s.expect(None, "220")?;
        s.expect(Some("EHLO campaign.client.example"), "250")?;
        let Some(login) = login else {
            return Ok(s);
        };
        s.expect(Some("STARTTLS"), "220")?;
        let Stream::Plain(tcp) = s.io.into_inner() else {
            unreachable!("STARTTLS on a plain connection")
        };
        let name = ServerName::try_from(login.server_name.clone()).map_err(io::Error::other)?;
        let conn =
            rustls::ClientConnection::new(login.tls.clone(), name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        s = Submitter {
            io: BufReader::new(Stream::Tls(Box::new(tls))),
        };
        s.expect(Some("EHLO campaign.client.example"), "250")?;
        let token = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(format!("\0{}\0{}", login.user, login.password))
        };
        s.expect(Some(&format!("AUTH PLAIN {token}")), "235")?;
        Ok(s)
    }

    /// Sends `line` (if any) and requires a reply starting with `code`.
    fn expect(&mut self, line: Option<&str>, code: &str) -> io::Result<String> {
        if let Some(line) = line {
            self.write(format!("{line}\r\n").as_bytes())?;
        }
        let reply = self.reply()?;
        if reply.starts_with(code) {
            Ok(reply)
        } else {
            Err(io::Error::other(format!("{line:?}: {reply}")))
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Sends one message: MAIL and RCPTs pipelined (RFC 2920), then the
    /// content with DATA or BDAT.
    pub fn send(&mut self, from: &str, to: &[String], data: &[u8], how: Transfer) -> Outcome {
        let mut envelope = format!("MAIL FROM:<{from}>\r\n");
        for rcpt in to {
            envelope.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        }
        if let Err(e) = self.write(envelope.as_bytes()) {
            return Outcome::DiedBefore(format!("envelope: {e}"));
        }
        let mut refused = None;
        for _ in 0..=to.len() {
            match self.reply() {
                Ok(r) if r.starts_with("250") => {}
                Ok(r) => {
                    refused.get_or_insert(r);
                }
                Err(e) => return Outcome::DiedBefore(format!("envelope replies: {e}")),
            }
        }
        if let Some(r) = refused {
            let _ = self.write(b"RSET\r\n").and_then(|_| self.reply());
            return Outcome::Refused(r);
        }
        match how {
            Transfer::Data => self.data(data),
            Transfer::Bdat(chunk) => self.bdat(data, chunk.max(1)),
        }
    }

    fn data(&mut self, data: &[u8]) -> Outcome {
        match self.write(b"DATA\r\n").and_then(|_| self.reply()) {
            Ok(r) if r.starts_with("354") => {}
            Ok(r) => return Outcome::Refused(r),
            Err(e) => return Outcome::DiedBefore(format!("DATA: {e}")),
        }
        let mut wire = dot_stuff(data);
        wire.extend_from_slice(b".\r\n");
        if let Err(e) = self.write(&wire) {
            return Outcome::DiedBefore(format!("content: {e}"));
        }
        self.final_reply()
    }

    fn bdat(&mut self, data: &[u8], chunk: usize) -> Outcome {
        let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
        for (i, piece) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut wire = format!(
                "BDAT {}{}\r\n",
                piece.len(),
                if last { " LAST" } else { "" }
            )
            .into_bytes();
            wire.extend_from_slice(piece);
            if let Err(e) = self.write(&wire) {
                return Outcome::DiedBefore(format!("BDAT chunk {i}: {e}"));
            }
            if last {
                return self.final_reply();
            }
            match self.reply() {
                Ok(r) if r.starts_with("250") => {}
                Ok(r) => return Outcome::Refused(r),
                Err(e) => return Outcome::DiedBefore(format!("BDAT chunk {i} reply: {e}")),
            }
        }
        Outcome::Refused("no content".into())
    }

    fn final_reply(&mut self) -> Outcome {
        match self.reply() {
            Ok(r) if r.starts_with("250") => Outcome::Acked(
                r.rsplit_once("queued as ")
                    .map(|(_, id)| id.trim().to_string())
                    .unwrap_or_default(),
            ),
            Ok(r) => Outcome::Refused(r),
            Err(e) => Outcome::DiedAfter(format!("final reply: {e}")),
        }
    }

    /// QUIT, ignoring the answer.
    pub fn quit(mut self) {
        let _ = self.write(b"QUIT\r\n");
        let _ = self.reply();
    }

    /// One reply, lines joined by `\n`; an error on EOF.
    fn reply(&mut self) -> io::Result<String> {
        let mut lines = Vec::new();
        // A reply has a bounded number of lines (EHLO's are the most).
        for _ in 0..100 {
            let mut line = String::new();
            if self.io.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok(lines.join("\n"));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a reply of over 100 lines",
        ))
    }
}
