//! A tolerant SMTP client for crash tests. Unlike `harness::Client` it never
//! panics: a server killed mid-transaction is the point of the test, so every
//! send ends in an [`Outcome`] saying exactly what the client heard.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What the client heard at the end of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `250` after the final dot: the server promised the message is durable.
    Acked(String),
    /// A 4xx/5xx reply somewhere in the transaction (the reply).
    Refused(String),
    /// The connection broke before the final reply (the error).
    NoReply(String),
}

/// One SMTP connection, greeting and EHLO done.
pub struct Mailer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Mailer {
    /// Connects, reads the 220 greeting and says EHLO.
    pub fn connect(addr: SocketAddr, helo: &str) -> io::Result<Mailer> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        let mut m = Mailer {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        };
        let greeting = m.reply()?;
        if !greeting.starts_with("220") {
            return Err(io::Error::other(format!("greeting: {greeting}")));
        }
        m.stream.write_all(format!("EHLO {helo}\r\n").as_bytes())?;
        let ehlo = m.reply()?;
        if !ehlo.starts_with("250") {
            return Err(io::Error::other(format!("EHLO: {ehlo}")));
        }
        Ok(m)
    }

    /// Sends one message with PIPELINING (MAIL, RCPTs and DATA in one write,
    /// RFC 2920); `data` is the message, CRLF line ends, not yet dot-stuffed.
    pub fn send(&mut self, from: &str, to: &[&str], data: &[u8]) -> Outcome {
        let mut envelope = format!("MAIL FROM:<{from}>\r\n");
        for rcpt in to {
            envelope.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        }
        envelope.push_str("DATA\r\n");
        if let Err(e) = self.stream.write_all(envelope.as_bytes()) {
            return Outcome::NoReply(format!("sending the envelope: {e}"));
        }
        let mut refused = None;
        for (what, code) in std::iter::once(("MAIL", "250"))
            .chain(to.iter().map(|_| ("RCPT", "250")))
            .chain(std::iter::once(("DATA", "354")))
        {
            match self.reply() {
                Ok(r) if r.starts_with(code) => {}
                Ok(r) => {
                    refused.get_or_insert(format!("{what}: {r}"));
                }
                Err(e) => return Outcome::NoReply(format!("{what}: {e}")),
            }
        }
        if let Some(r) = refused {
            return Outcome::Refused(r);
        }
        let mut wire = dot_stuff(data);
        wire.extend_from_slice(b".\r\n");
        if let Err(e) = self.stream.write_all(&wire) {
            return Outcome::NoReply(format!("sending the data: {e}"));
        }
        match self.reply() {
            Ok(r) if r.starts_with("250") => Outcome::Acked(
                r.rsplit_once("queued as ")
                    .map(|(_, id)| id.trim().to_string())
                    .unwrap_or_default(),
            ),
            Ok(r) => Outcome::Refused(r),
            Err(e) => Outcome::NoReply(format!("end of data: {e}")),
        }
    }

    /// QUIT, ignoring the answer.
    pub fn quit(mut self) {
        let _ = self.stream.write_all(b"QUIT\r\n");
        let _ = self.reply();
    }

    /// One reply, lines joined by `\n`; an error on EOF.
    fn reply(&mut self) -> io::Result<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok(lines.join("\n"));
            }
        }
    }
}

/// RFC 5321 §4.5.2: a line starting with "." gets one more in front.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64);
    let mut line_start = true;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

#[test]
fn dot_stuffing_doubles_leading_dots_only() {
    assert_eq!(dot_stuff(b".a\r\nb.\r\n..\r\n."), b"..a\r\nb.\r\n...\r\n..");
}
