//! SMTP replies: a basic code (RFC 5321 §4.2) with an enhanced status code
//! (RFC 3463, RFC 2034) and text. Every reply the server sends is a named
//! constant or built here; no reply literals are scattered through the code.

use std::borrow::Cow;
use std::fmt;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Text that is not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code: {0:?}")]
pub struct NotEnhancedCode(pub String);

impl std::str::FromStr for EnhancedCode {
    type Err = NotEnhancedCode;

    /// `5.1.1`: class 2, 4 or 5, subject and detail of 1 to 3 digits (RFC
    /// 3463 §2), as a reply line starts with it (RFC 2034 §4).
    fn from_str(word: &str) -> Result<EnhancedCode, NotEnhancedCode> {
        let bad = || NotEnhancedCode(word.to_string());
        let number = |p: &str| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        let mut parts = word.split('.');
        let (class, subject, detail) = match (parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(s), Some(d)) if parts.next().is_none() => (c, s, d),
            _ => return Err(bad()),
        };
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return Err(bad()),
        };
        match (number(subject), number(detail)) {
            (Some(s), Some(d)) => Ok(EnhancedCode(class, s, d)),
            _ => Err(bad()),
        }
    }
}

/// One SMTP reply. `text` may hold several lines separated by `\n`; they are sent
/// as a multi-line reply (RFC 5321 §4.2.1), each line carrying the enhanced code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Absent only on the greeting and the EHLO/HELO replies (RFC 2034 §3).
    pub enhanced: Option<EnhancedCode>,
    pub text: Cow<'static, str>,
}

const fn r(code: u16, class: u8, subject: u16, detail: u16, text: &'static str) -> Reply {
    Reply {
        code,
        enhanced: Some(EnhancedCode(class, subject, detail)),
        text: Cow::Borrowed(text),
    }
}

impl Reply {
    /// A reply with an enhanced code and owned text.
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: text.into(),
        }
    }

    /// A reply without enhanced code (greeting, EHLO, HELO).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: text.into(),
        }
    }

    /// This reply with other text, same codes.
    pub fn with_text(&self, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code: self.code,
            enhanced: self.enhanced,
            text: text.into(),
        }
    }

    /// 2yz.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4yz or 5yz: counts towards the session's error limit.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Wire form: every line ends in CRLF; continuation lines use `code-`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let line = line.trim_end_matches('\r');
            match self.enhanced {
                Some(e) => out.extend_from_slice(
                    format!("{}{}{} {}\r\n", self.code, sep, e, line).as_bytes(),
                ),
                None => {
                    out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, line).as_bytes())
                }
            }
        }
    }

    /// The wire form as a `Vec`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    // --- 2yz ---------------------------------------------------------------
    pub const OK: Reply = r(250, 2, 0, 0, "Ok");
    pub const SENDER_OK: Reply = r(250, 2, 1, 0, "Sender ok");
    pub const RECIPIENT_OK: Reply = r(250, 2, 1, 5, "Recipient ok");
    pub const RESET: Reply = r(250, 2, 0, 0, "Reset");
    pub const BYE: Reply = r(221, 2, 0, 0, "Bye");
    pub const HELP: Reply = r(
        214,
        2,
        0,
        0,
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS\nSee RFC 5321",
    );
    /// RFC 5321 §3.5.3: we do not verify, but will try to deliver.
    pub const CANNOT_VRFY: Reply = r(
        252,
        2,
        0,
        0,
        "Cannot VRFY user, but will accept message and attempt delivery",
    );
    pub const READY_FOR_TLS: Reply = r(220, 2, 0, 0, "Ready to start TLS");
    pub const START_DATA: Reply = Reply {
        code: 354,
        enhanced: None,
        text: Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
    };

    // --- 4yz ---------------------------------------------------------------
    pub const SHUTTING_DOWN: Reply = r(421, 4, 3, 2, "Service shutting down, try again later");
    pub const TIMEOUT: Reply = r(421, 4, 4, 2, "Timeout, closing connection");
    /// Message data slower than `[limits] min_data_rate`.
    pub const DATA_TOO_SLOW: Reply =
        r(421, 4, 4, 2, "Data arriving too slowly, closing connection");
    pub const TOO_MANY_ERRORS: Reply = r(421, 4, 7, 0, "Too many errors, closing connection");
    pub const TOO_MANY_CONNECTIONS: Reply =
        r(421, 4, 7, 0, "Too many connections, try again later");
    pub const TOO_MANY_CONNECTIONS_FROM_IP: Reply = r(
        421,
        4,
        7,
        0,
        "Too many connections from your address, try again later",
    );
    pub const TLS_UNAVAILABLE: Reply = r(454, 4, 7, 0, "TLS not available");
    pub const TOO_MANY_RECIPIENTS: Reply = r(452, 4, 5, 3, "Too many recipients");
    /// RFC 5321 §4.2.2, RFC 3463 4.3.1: the disk is (nearly) full — below the
    /// `free_space` reserve at MAIL, or out of space while storing a message.
    pub const INSUFFICIENT_STORAGE: Reply = r(452, 4, 3, 1, "Insufficient system storage");
    pub const LOCAL_ERROR: Reply = r(451, 4, 3, 0, "Local error in processing, try again later");
    /// The spool could not make the message durable; the client keeps it.
    pub const QUEUE_FAILED: Reply = r(
        451,
        4,
        3,
        0,
        "Local error: message not queued, try again later",
    );

    // --- 5yz ---------------------------------------------------------------
    pub const UNRECOGNIZED: Reply = r(500, 5, 5, 2, "Command unrecognized");
    pub const LINE_TOO_LONG: Reply = r(500, 5, 5, 2, "Line too long");
    pub const SYNTAX: Reply = r(501, 5, 5, 4, "Syntax error in parameters or arguments");
    pub const NOT_IMPLEMENTED: Reply = r(502, 5, 5, 1, "Command not implemented");
    pub const BAD_SEQUENCE: Reply = r(503, 5, 5, 1, "Bad sequence of commands");
    pub const NEED_HELO: Reply = r(503, 5, 5, 1, "Send EHLO or HELO first");
    pub const NESTED_MAIL: Reply = r(503, 5, 5, 1, "Sender already given");
    pub const NEED_MAIL: Reply = r(503, 5, 5, 1, "Need MAIL before RCPT");
    /// DATA or BDAT with no mail transaction open.
    pub const NEED_TRANSACTION: Reply = r(503, 5, 5, 1, "Need MAIL and RCPT first");
    pub const NO_VALID_RECIPIENTS: Reply = r(554, 5, 5, 1, "No valid recipients");
    pub const ALREADY_TLS: Reply = r(503, 5, 5, 1, "TLS already active");
    pub const BDAT_DATA_MIX: Reply = r(503, 5, 5, 1, "DATA not allowed after BDAT");
    pub const UNKNOWN_PARAMETER: Reply = r(555, 5, 5, 4, "Unsupported MAIL or RCPT parameter");
    pub const NO_SUCH_USER: Reply = r(550, 5, 1, 1, "No such user here");
    /// A bounce to an SRS address we did not make, or made too long ago.
    pub const BAD_SRS_ADDRESS: Reply = r(550, 5, 1, 1, "Bad or expired SRS address");
    /// The sender's domain does not exist (NXDOMAIN, or no MX, A or AAAA).
    pub const SENDER_DOMAIN_NOT_FOUND: Reply =
        r(550, 5, 1, 8, "Sender address rejected: domain not found");
    /// The sender's domain publishes a null MX (RFC 7505).
    pub const SENDER_DOMAIN_NULL_MX: Reply = r(
        550,
        5,
        1,
        8,
        "Sender address rejected: domain does not accept mail",
    );
    /// The sender's domain could not be looked up now (SERVFAIL, timeout).
    pub const SENDER_DOMAIN_UNVERIFIED: Reply = r(
        450,
        4,
        1,
        8,
        "Sender address rejected: domain cannot be verified now, try again later",
    );
    /// RFC 7489 §6.6.4: the From: domain's DMARC policy is reject and the
    /// message fails it. The text names the domain ([`Reply::with_text`]).
    pub const DMARC_POLICY_REJECT: Reply = r(
        550,
        5,
        7,
        1,
        "Message refused: it fails the DMARC policy of its domain",
    );
    /// DMARC could not be evaluated (DNS) for a domain whose policy would
    /// refuse the message: the sender retries.
    pub const DMARC_TEMPORARY: Reply = r(
        451,
        4,
        7,
        1,
        "DMARC could not be checked now (DNS error); try again later",
    );
    /// The spam filter's `soft reject` or `greylist` (`inbound::spam`).
    pub const SPAM_DEFERRED: Reply = r(
        451,
        4,
        7,
        1,
        "Message deferred by the spam filter, try again later",
    );
    /// The spam filter did not answer and `[spam] on_failure = "tempfail"`.
    pub const SPAM_FILTER_UNAVAILABLE: Reply = r(
        451,
        4,
        7,
        1,
        "The spam filter is not available, try again later",
    );
    /// The spam filter's `reject`; the text becomes rspamd's message when
    /// it gives one.
    pub const SPAM_REJECT: Reply = r(550, 5, 7, 1, "Message refused as spam");
    /// RFC 7372 §3.2: MAIL FROM fails SPF (`[mx] spf_fail = "reject"`).
    pub const SPF_FAIL: Reply = r(
        550,
        5,
        7,
        23,
        "SPF validation failed for the sender's domain",
    );
    pub const RELAY_DENIED: Reply = r(554, 5, 7, 1, "Relay access denied");
    /// After DATA: a `From:` or `Sender:` address the login does not own
    /// (DESIGN invariant 7); the text names the address.
    pub const SENDER_NOT_ALLOWED: Reply = r(
        550,
        5,
        7,
        1,
        "Message refused: From: is not an address of yours",
    );
    /// After DATA: no `From:`, two of them, or one that cannot be read, so
    /// its owner cannot be checked; the text says which.
    pub const BAD_AUTHOR_HEADER: Reply = r(
        550,
        5,
        6,
        0,
        "Message refused: its From: header field cannot be checked",
    );
    pub const MESSAGE_TOO_BIG: Reply = r(
        552,
        5,
        3,
        4,
        "Message size exceeds fixed maximum message size",
    );
    /// RFC 6531 §3.4: non-ASCII address without the SMTPUTF8 parameter.
    pub const NEED_SMTPUTF8: Reply = r(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8");
    /// RFC 5321 §2.3.8: only CRLF ends a line; bare CR or LF is refused, not guessed at.
    pub const BARE_LINE_ENDING: Reply = r(
        550,
        5,
        6,
        0,
        "Message refused: bare CR or LF in message data (RFC 5321 section 2.3.8)",
    );
    /// RFC 6409 §4.3 / RFC 4954 §6: submission needs AUTH before MAIL.
    pub const AUTH_REQUIRED: Reply = r(530, 5, 7, 0, "Authentication required");
    /// RFC 4954 §6: 538 5.7.11, AUTH over plaintext.
    pub const ENCRYPTION_REQUIRED: Reply = r(
        538,
        5,
        7,
        11,
        "Encryption required for requested authentication mechanism",
    );
    /// RFC 4954 §6: wrong user name or password.
    pub const BAD_CREDENTIALS: Reply = r(535, 5, 7, 8, "Authentication credentials invalid");
    /// Too many failed logins from this client, or from it and for this
    /// login (see inbound::throttle).
    pub const AUTH_THROTTLED: Reply = r(
        454,
        4,
        7,
        0,
        "Too many failed authentication attempts, try again later",
    );
    /// Too many password checks running and waiting (RFC 4954 §6: 454 is
    /// a temporary authentication failure).
    pub const AUTH_BUSY: Reply = r(
        454,
        4,
        7,
        0,
        "Too many logins being checked, try again later",
    );
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.to_bytes()).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        assert_eq!(Reply::OK.to_bytes(), b"250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_uses_dash_and_repeats_enhanced_code() {
        let reply = Reply::new(250, EnhancedCode(2, 0, 0), "one\ntwo\nthree");
        assert_eq!(
            reply.to_bytes(),
            b"250-2.0.0 one\r\n250-2.0.0 two\r\n250 2.0.0 three\r\n".to_vec()
        );
    }

    #[test]
    fn plain_reply_has_no_enhanced_code() {
        let reply = Reply::plain(250, "host\nPIPELINING");
        assert_eq!(reply.to_bytes(), b"250-host\r\n250 PIPELINING\r\n".to_vec());
    }

    #[test]
    fn classes() {
        assert!(Reply::OK.is_positive());
        assert!(Reply::START_DATA.is_positive());
        assert!(Reply::NO_SUCH_USER.is_error());
        assert!(Reply::TOO_MANY_RECIPIENTS.is_error());
    }
}
