//! A deliberately small HTTP/1.1 (RFC 9112) request reader and response
//! writer for the https and http listeners: one GET or HEAD per connection,
//! the request line and header section bounded in bytes, in header count and
//! in time; no bodies, no keep-alive, no files. Parsing is sans-IO
//! ([`parse`]); [`read_request`] only gathers the bytes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request line plus header section we read.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 32;
/// How long a client has to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub head_only: bool,
    /// The path, without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The Host field, lower-case, without a port; empty if absent.
    pub host: String,
}

/// Why a request is not answered normally; each has its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request")]
    BadRequest,
    #[error("method not allowed")]
    Method,
    #[error("request header section too large")]
    TooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request not complete in time")]
    Timeout,
    #[error("connection closed before the request was complete")]
    Closed,
}

impl HttpError {
    /// The response this earns (`None`: just close).
    pub fn response(self) -> Option<Response> {
        let (status, text) = match self {
            HttpError::BadRequest => (400, "bad request\n"),
            HttpError::Method => (405, "only GET and HEAD\n"),
            HttpError::TooLarge | HttpError::TooManyHeaders => {
                (431, "request header fields too large\n")
            }
            HttpError::Timeout => (408, "request timeout\n"),
            HttpError::Closed => return None,
        };
        Some(Response::text(status, text))
    }
}

/// A whole response (status, a few header fields, a small body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A `Location` for redirects.
    pub location: Option<String>,
}

impl Response {
    /// A text/plain response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::with(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    /// A response of `content_type`.
    pub fn with(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            location: None,
        }
    }

    /// 404.
    pub fn not_found() -> Response {
        Response::text(404, "not found\n")
    }

    /// A permanent redirect to `location`.
    pub fn redirect(location: String) -> Response {
        let mut r = Response::text(301, "moved\n");
        r.location = Some(location);
        r
    }

    /// The bytes on the wire; `head_only` leaves the body out (RFC 9110 §9.3.2).
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            301 => "Moved Permanently",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        if let Some(location) = &self.location {
            out.push_str(&format!("Location: {location}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// Reads one request head (up to the empty line) within the bounds.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = find_end(&buf) {
                return parse(&buf[..end]);
            }
            if buf.len() >= MAX_HEAD {
                return Err(HttpError::TooLarge);
            }
            let room = (MAX_HEAD - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Err(HttpError::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .unwrap_or(Err(HttpError::Timeout))
}

/// Writes `response` (bounded in time) and closes the stream.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
    head_only: bool,
) {
    let bytes = response.to_bytes(head_only);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}

/// The length of the head including its empty line, once it is all there.
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a request head (request line, header fields, empty line).
pub fn parse(head: &[u8]) -> Result<Request, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::BadRequest)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HttpError::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest);
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::BadRequest);
    }
    if !target.starts_with('/') || target.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest);
    }
    let mut host = None;
    let mut count = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HttpError::TooManyHeaders);
        }
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        let (name, value) = line.split_once(':').ok_or(HttpError::BadRequest)?;
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(HttpError::BadRequest);
        }
        if name.eq_ignore_ascii_case("host") {
            // RFC 9112 §3.2: exactly one Host.
            if host.is_some() {
                return Err(HttpError::BadRequest);
            }
            host = Some(value.trim().to_ascii_lowercase());
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(HttpError::Method),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let host = host.unwrap_or_default();
    let host = strip_port(&host).to_string();
    Ok(Request {
        head_only,
        path,
        query,
        host,
    })
}

/// `mx.example.org:443` → `mx.example.org`; a name with a trailing dot
/// loses it.
fn strip_port(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.trim_end_matches('.')
}

/// The value of `key` in a query string (`a=1&email=x%40y`), percent-decoded.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return percent_decode(v);
        }
    }
    None
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_and_head_with_host() {
        let r = parse(b"GET /mail/config-v1.1.xml?emailaddress=me%40example.org HTTP/1.1\r\nHost: Autoconfig.Example.org:443\r\nUser-Agent: x\r\n\r\n").unwrap();
        assert_eq!(r.path, "/mail/config-v1.1.xml");
        assert_eq!(r.host, "autoconfig.example.org");
        assert!(!r.head_only);
        assert_eq!(
            query_value(r.query.as_deref(), "emailaddress").as_deref(),
            Some("me@example.org")
        );
        let r = parse(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert!(r.head_only);
        assert_eq!(r.host, "");
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Err(HttpError::Method));
        assert_eq!(parse(b"GET / HTTP/2\r\n\r\n"), Err(HttpError::BadRequest));
        assert_eq!(
            parse(b"GET  / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        assert_eq!(
            parse(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[tokio::test]
    async fn reading_is_bounded_in_size() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD * 2, b'a');
        let mut reader = &big[..];
        assert_eq!(read_request(&mut reader).await, Err(HttpError::TooLarge));
        let mut cut = &b"GET / HTTP/1.1\r\n"[..];
        assert_eq!(read_request(&mut cut).await, Err(HttpError::Closed));
    }

    #[test]
    fn responses_have_length_and_close() {
        let bytes = Response::redirect("https://mx.example.org/".into()).to_bytes(false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 301 Moved Permanently\r\n"));
        assert!(text.contains("\r\nLocation: https://mx.example.org/\r\n"));
        assert!(text.contains("\r\nContent-Length: 6\r\nCache-Control"));
        assert!(text.ends_with("\r\n\r\nmoved\n"));
        let head = String::from_utf8(Response::not_found().to_bytes(true)).unwrap();
        assert!(head.ends_with("Connection: close\r\n\r\n"));
    }
}
