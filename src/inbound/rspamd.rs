//! A minimal HTTP/1.1 client of rspamd's `/checkv2` (rspamd's protocol,
//! "Rspamd HTTP protocol" in its documentation): one connection per request
//! (`Connection: close`), so sessions never wait for each other; the
//! message streamed from the spooled body; the whole exchange bounded by the
//! caller's timeout and the answer by [`MAX_RESPONSE`]. Anything that is not
//! a well-formed verdict is an [`Error`]: the caller treats it as rspamd
//! being down.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::queue::log::BodyData;
use crate::queue::Body;

/// The most of an answer (status line, header fields and body) that is
/// read: rspamd's verdicts are a few KiB.
pub const MAX_RESPONSE: usize = 64 << 10;
/// Bytes of a spilled body read per step.
const CHUNK: usize = 64 << 10;

/// Why there is no verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to rspamd at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("rspamd at {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("talking to rspamd failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("rspamd's answer is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("rspamd's answer is not a verdict: {0}")]
    Malformed(String),
}

/// What rspamd is told about the transaction besides the message.
#[derive(Debug, Clone)]
pub struct Request {
    /// The client's address.
    pub ip: IpAddr,
    /// Its HELO/EHLO argument.
    pub helo: String,
    /// MAIL FROM (empty for the null sender).
    pub from: String,
    pub rcpts: Vec<String>,
    /// Our hostname.
    pub hostname: String,
    /// The client's login, when it authenticated.
    pub user: Option<String>,
    pub queue_id: String,
}

/// rspamd's action: what its thresholds say the message deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reject,
    /// `soft reject` and `greylist`: try again later.
    SoftReject,
    /// `add header` and `rewrite subject` (and `quarantine`/`discard`,
    /// which tern never carries out silently): spam, delivered to Junk.
    Junk,
    NoAction,
}

impl Action {
    /// The journal's word.
    pub fn name(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::SoftReject => "soft-reject",
            Action::Junk => "junk",
            Action::NoAction => "no-action",
        }
    }
}

/// rspamd's answer to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// The action exactly as rspamd named it.
    pub action_name: String,
    pub score: f64,
    pub required_score: f64,
    /// The symbols that fired, with their scores, by name.
    pub symbols: Vec<(String, f64)>,
    /// The text rspamd wants in the SMTP reply, if any (unsanitized).
    pub smtp_message: Option<String>,
}

#[derive(Deserialize)]
struct RawVerdict {
    action: String,
    score: f64,
    #[serde(default)]
    required_score: f64,
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, RawSymbol>,
    #[serde(default)]
    messages: RawMessages,
}

#[derive(Deserialize)]
struct RawSymbol {
    #[serde(default)]
    score: f64,
}

#[derive(Default, Deserialize)]
struct RawMessages {
    smtp_message: Option<String>,
}

/// Asks rspamd at `addr` about `body`, giving up after `timeout`.
pub async fn check(
    addr: SocketAddr,
    timeout: Duration,
    request: &Request,
    body: &Body,
) -> Result<Verdict, Error> {
    match tokio::time::timeout(timeout, exchange(addr, request, body)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(addr, timeout)),
    }
}

async fn exchange(addr: SocketAddr, request: &Request, body: &Body) -> Result<Verdict, Error> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::Connect(addr, e))?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&request_head(request, body.len)).await?;
    send_body(&mut stream, body).await?;
    stream.flush().await?;
    let mut answer = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if answer.len() + n > MAX_RESPONSE {
            return Err(Error::TooLarge);
        }
        answer.extend_from_slice(&buf[..n]);
        if response_complete(&answer) {
            break;
        }
    }
    parse_response(&answer)
}

/// The request line and header fields. Values come from the session, which
/// has already refused CR and LF in them; they are cleaned again here so
/// that nothing can add a header field of its own.
fn request_head(request: &Request, len: u64) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    head.push_str("POST /checkv2 HTTP/1.1\r\nHost: rspamd\r\nConnection: close\r\n");
    let mut field = |name: &str, value: &str| {
        head.push_str(name);
        head.push_str(": ");
        head.extend(value.chars().filter(|c| !c.is_control()));
        head.push_str("\r\n");
    };
    field("IP", &request.ip.to_string());
    if !request.helo.is_empty() {
        field("Helo", &request.helo);
    }
    // rspamd reads an empty From as the null sender.
    field("From", &request.from);
    for rcpt in &request.rcpts {
        field("Rcpt", rcpt);
    }
    field("Hostname", &request.hostname);
    if let Some(user) = &request.user {
        field("User", user);
    }
    field("Queue-Id", &request.queue_id);
    field("Content-Length", &len.to_string());
    head.push_str("\r\n");
    head.into_bytes()
}

/// Streams the message: straight from memory, or a chunk at a time from the
/// spill file (positioned reads on a blocking thread).
async fn send_body(stream: &mut TcpStream, body: &Body) -> Result<(), Error> {
    match &body.data {
        BodyData::Memory(bytes) => stream.write_all(bytes).await?,
        BodyData::File(_) => {
            use std::io::Read;
            let mut reader = body.reader()?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let (r, b, n) = tokio::task::spawn_blocking(move || {
                    let n = reader.read(&mut buf);
                    (reader, buf, n)
                })
                .await
                .map_err(std::io::Error::other)?;
                let n = n?;
                if n == 0 {
                    break;
                }
                stream.write_all(&b[..n]).await?;
                (reader, buf) = (r, b);
            }
        }
    }
    Ok(())
}

/// Whether `answer` holds the whole response: its header section and as
/// many body bytes as its Content-Length says (without one, the response
/// ends when rspamd closes).
fn response_complete(answer: &[u8]) -> bool {
    let Some(end) = find(answer, b"\r\n\r\n") else {
        return false;
    };
    match content_length(&answer[..end]) {
        Some(Ok(len)) => answer.len() - (end + 4) >= len,
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The Content-Length of a header section: `None` without one.
fn content_length(head: &[u8]) -> Option<Result<usize, ()>> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().map_err(|_| ()))
    })
}

/// A whole HTTP response → the verdict in its JSON body.
fn parse_response(answer: &[u8]) -> Result<Verdict, Error> {
    let malformed = |why: &str| Error::Malformed(why.to_string());
    let end = find(answer, b"\r\n\r\n").ok_or_else(|| malformed("no complete header section"))?;
    let head =
        std::str::from_utf8(&answer[..end]).map_err(|_| malformed("header section not UTF-8"))?;
    let status = head.split("\r\n").next().unwrap_or_default();
    let mut parts = status.split(' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Malformed(format!(
            "status line {:?}",
            status.chars().take(80).collect::<String>()
        )));
    }
    if code != Some("200") {
        return Err(Error::Malformed(format!(
            "status {:?}",
            status.chars().take(80).collect::<String>()
        )));
    }
    let lower = head.to_ascii_lowercase();
    if lower.contains("\r\ntransfer-encoding:") || lower.contains("\r\ncontent-encoding:") {
        return Err(malformed("an encoded body"));
    }
    let mut body = &answer[end + 4..];
    match content_length(&answer[..end]) {
        Some(Ok(len)) if body.len() >= len => body = &body[..len],
        Some(Ok(_)) => return Err(malformed("the body is shorter than its Content-Length")),
        Some(Err(())) => return Err(malformed("a Content-Length that is not a number")),
        None => {}
    }
    let raw: RawVerdict =
        serde_json::from_slice(body).map_err(|e| Error::Malformed(format!("JSON: {e}")))?;
    let action = match raw.action.as_str() {
        "reject" => Action::Reject,
        "soft reject" | "greylist" => Action::SoftReject,
        "add header" | "rewrite subject" | "quarantine" | "discard" => Action::Junk,
        "no action" => Action::NoAction,
        other => {
            return Err(Error::Malformed(format!(
                "unknown action {:?}",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    if !raw.score.is_finite() {
        return Err(malformed("a score that is not a number"));
    }
    let mut symbols: Vec<(String, f64)> = raw
        .symbols
        .into_iter()
        .map(|(name, symbol)| (name, symbol.score))
        .collect();
    // The heaviest first, as a reader of X-Spam-Status wants them.
    symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Verdict {
        action,
        action_name: raw.action,
        score: raw.score,
        required_score: raw.required_score,
        symbols,
        smtp_message: raw.messages.smtp_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\n\
             Content-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn verdicts() {
        let gtube = response(
            r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject",
            "symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},
            "messages":{"smtp_message":"Gtube pattern"}}"#,
        );
        assert!(response_complete(&gtube));
        let v = parse_response(&gtube).unwrap();
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.score, 15.0);
        assert_eq!(v.smtp_message.as_deref(), Some("Gtube pattern"));
        let junk = response(
            r#"{"score":3.4,"required_score":15.0,"action":"add header","symbols":{
            "MISSING_DATE":{"score":1.0},"MISSING_MID":{"score":2.5},"MIME_GOOD":{"score":-0.1}},
            "messages":{}}"#,
        );
        let v = parse_response(&junk).unwrap();
        assert_eq!(v.action, Action::Junk);
        assert_eq!(
            v.symbols,
            [
                ("MISSING_MID".to_string(), 2.5),
                ("MISSING_DATE".to_string(), 1.0),
                ("MIME_GOOD".to_string(), -0.1)
            ]
        );
        for (word, action) in [
            ("soft reject", Action::SoftReject),
            ("greylist", Action::SoftReject),
            ("rewrite subject", Action::Junk),
            ("no action", Action::NoAction),
        ] {
            let r = response(&format!(r#"{{"score":1,"action":"{word}"}}"#));
            assert_eq!(parse_response(&r).unwrap().action, action, "{word}");
        }
    }

    #[test]
    fn what_is_not_a_verdict() {
        for bad in [
            b"garbage\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(),
            response("not json"),
            response(r#"{"score":1,"action":"teleport"}"#),
            response(r#"{"action":"reject"}"#),
            b"HTTP/1.1 200 OK\r\n".to_vec(),
        ] {
            assert!(
                parse_response(&bad).is_err(),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn the_request_carries_the_envelope_and_nothing_smuggled() {
        let request = Request {
            ip: "192.0.2.7".parse().unwrap(),
            helo: "mail.example.com\r\nX-Evil: 1".into(),
            from: "a@example.com".into(),
            rcpts: vec!["me@example.org".into(), "bob@example.org".into()],
            hostname: "mx.example.org".into(),
            user: None,
            queue_id: "ABC123".into(),
        };
        let head = String::from_utf8(request_head(&request, 42)).unwrap();
        assert_eq!(
            head,
            "POST /checkv2 HTTP/1.1\r\nHost: rspamd\r\nConnection: close\r\n\
             IP: 192.0.2.7\r\nHelo: mail.example.comX-Evil: 1\r\nFrom: a@example.com\r\n\
             Rcpt: me@example.org\r\nRcpt: bob@example.org\r\nHostname: mx.example.org\r\n\
             Queue-Id: ABC123\r\nContent-Length: 42\r\n\r\n"
        );
    }
}
