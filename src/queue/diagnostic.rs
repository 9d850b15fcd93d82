//! What a delivery attempt learnt about one recipient, typed: the reply code,
//! the enhanced status code (RFC 3463), the text, and the server that gave
//! it. Agents make a [`Diagnostic`]; the spool keeps it as it is; the DSN
//! takes its `Status:` and `Remote-MTA:` from the fields and `tern queue`
//! shows them. Nothing parses text back into codes, except
//! [`Diagnostic::from_v1_text`], which reads the plain texts that spools of
//! record format 1 hold.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::smtp::{EnhancedCode, Reply};

/// One recipient's result, or one reason for a deferral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The SMTP reply code (RFC 5321 §4.2): the remote server's, or the one
    /// tern gives itself (550 for a user who no longer exists). `None` when
    /// there was no reply: the connection failed, DNS failed, a Maildir
    /// could not be written, or the delivery was local.
    pub code: Option<u16>,
    /// The enhanced status code, as the reply gave it (RFC 2034) or as tern
    /// assigns it; `None` when a remote reply had none.
    #[serde(with = "enhanced_text")]
    pub enhanced: Option<EnhancedCode>,
    /// The reply's text without its codes; without a reply code, the whole
    /// account of what happened.
    pub text: String,
    /// The server whose reply this is, or which was tried.
    pub remote: Option<Remote>,
}

/// A server tern talked to (or tried to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// The name it was reached by (an MX host, the smarthost, an address).
    pub host: String,
    pub ip: IpAddr,
}

impl Diagnostic {
    /// A reply tern gives itself (no server said it).
    pub fn reply(code: u16, enhanced: EnhancedCode, text: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: Some(code),
            enhanced: Some(enhanced),
            text: text.into(),
            remote: None,
        }
    }

    /// What happened without a reply: `text` says it all (it is shown alone).
    pub fn note(enhanced: EnhancedCode, text: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: None,
            enhanced: Some(enhanced),
            text: text.into(),
            remote: None,
        }
    }

    /// A reply that `host` at `ip` gave.
    pub fn from_remote(
        host: &str,
        ip: IpAddr,
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code: Some(code),
            enhanced,
            text: text.into(),
            remote: Some(Remote {
                host: host.to_string(),
                ip,
            }),
        }
    }

    /// The same, about server `host` at `ip`.
    pub fn at(mut self, host: &str, ip: IpAddr) -> Diagnostic {
        self.remote = Some(Remote {
            host: host.to_string(),
            ip,
        });
        self
    }

    /// The recipient failed for good because its time in the queue ran out
    /// (RFC 3463 X.4.7); `last` was the last attempt's reason.
    pub fn expired(last: &Diagnostic) -> Diagnostic {
        Diagnostic {
            code: None,
            enhanced: Some(EnhancedCode(5, 4, 7)),
            text: format!("delivery time expired; last error: {last}"),
            remote: last.remote.clone(),
        }
    }

    /// The status for a report of class `class` (5: failed, 4: delayed, 2:
    /// delivered): the enhanced code when it is of that class, else
    /// `class.0.0` (RFC 3463 §3.1).
    pub fn status(&self, class: u8) -> EnhancedCode {
        match self.enhanced {
            Some(e) if e.0 == class => e,
            _ => EnhancedCode(class, 0, 0),
        }
    }

    /// A text from a spool of record format 1 (`mx[192.0.2.1] said: 550
    /// 5.1.1 No such user`, `550 5.1.1 ...`, or any account of what happened)
    /// as a diagnostic that prints the same.
    pub fn from_v1_text(text: &str) -> Diagnostic {
        let (remote, rest) = match text.split_once(" said: ") {
            Some((who, rest)) => match remote_of(who) {
                Some(remote) => (Some(remote), rest),
                None => (None, text),
            },
            None => (None, text),
        };
        if let Some((code, enhanced, words)) = reply_of(rest) {
            return Diagnostic {
                code: Some(code),
                enhanced,
                text: words.to_string(),
                remote,
            };
        }
        // No reply: the text stands alone; it may still name the server
        // (`mx.example[192.0.2.1]: connection refused`).
        let remote = text
            .split_once(": ")
            .and_then(|(who, _)| remote_of(who))
            .or(remote);
        Diagnostic {
            code: None,
            enhanced: None,
            text: text.to_string(),
            remote,
        }
    }
}

/// `host[ip]`.
fn remote_of(who: &str) -> Option<Remote> {
    let (host, ip) = who.strip_suffix(']')?.split_once('[')?;
    if host.is_empty() || host.contains(' ') {
        return None;
    }
    Some(Remote {
        host: host.to_string(),
        ip: ip.parse().ok()?,
    })
}

/// `550 5.1.1 text` or `550 text`: the code, the enhanced code, the rest.
fn reply_of(s: &str) -> Option<(u16, Option<EnhancedCode>, &str)> {
    let (code, rest) = s.split_once(' ').unwrap_or((s, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    match parse_enhanced(first) {
        Some(e) => Some((code, Some(e), after)),
        None => Some((code, None, rest)),
    }
}

/// `5.1.1`, or `None`.
fn parse_enhanced(word: &str) -> Option<EnhancedCode> {
    word.parse().ok()
}

impl From<&Reply> for Diagnostic {
    fn from(r: &Reply) -> Diagnostic {
        Diagnostic {
            code: Some(r.code),
            enhanced: r.enhanced,
            text: r.text.replace('\n', " "),
            remote: None,
        }
    }
}

/// How people read it, in logs, `tern queue show` and a DSN's
/// `Diagnostic-Code:`: `mx.example[192.0.2.1] said: 550 5.1.1 No such user`,
/// `550 5.1.1 no local user "x"`, or the text alone when there was no reply.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(code) = self.code else {
            return f.write_str(&self.text);
        };
        if let Some(r) = &self.remote {
            write!(f, "{}[{}] said: ", r.host, r.ip)?;
        }
        write!(f, "{code}")?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// An enhanced code in JSON: `"5.1.1"`.
mod enhanced_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::smtp::EnhancedCode;

    pub(super) fn serialize<S: Serializer>(
        code: &Option<EnhancedCode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match code {
            Some(c) => s.serialize_some(&c.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<EnhancedCode>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_enhanced(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not an enhanced code: {text}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_texts_read_back_typed_and_print_the_same() {
        for (text, code, enhanced, host) in [
            (
                "mx.example[192.0.2.1] said: 550 5.1.1 No such user",
                Some(550),
                Some(EnhancedCode(5, 1, 1)),
                Some("mx.example"),
            ),
            (
                "127.0.0.1[127.0.0.1] said: 250 2.0.0 Ok: queued as X",
                Some(250),
                Some(EnhancedCode(2, 0, 0)),
                Some("127.0.0.1"),
            ),
            (
                "old.example[192.0.2.9] said: 451 try later",
                Some(451),
                None,
                Some("old.example"),
            ),
            (
                "556 5.1.10 Domain x accepts no mail (null MX)",
                Some(556),
                Some(EnhancedCode(5, 1, 10)),
                None,
            ),
            (
                "mx.example[192.0.2.1]: connection failed: refused",
                None,
                None,
                Some("mx.example"),
            ),
            ("MX lookup for x: DNS lookup failed", None, None, None),
            (
                "delivery time expired; last error: 451 4.3.0 later",
                None,
                None,
                None,
            ),
            ("delivered to maildir /m/new/1.Q1R0.h", None, None, None),
        ] {
            let d = Diagnostic::from_v1_text(text);
            assert_eq!(d.to_string(), text);
            assert_eq!(d.code, code, "{text}");
            assert_eq!(d.enhanced, enhanced, "{text}");
            assert_eq!(d.remote.as_ref().map(|r| r.host.as_str()), host, "{text}");
        }
    }

    #[test]
    fn the_status_keeps_the_class_of_the_report() {
        let d = Diagnostic::reply(550, EnhancedCode(5, 1, 1), "no");
        assert_eq!(d.status(5), EnhancedCode(5, 1, 1));
        assert_eq!(d.status(4), EnhancedCode(4, 0, 0));
        let later = Diagnostic::from_remote("mx", [192, 0, 2, 1].into(), 451, None, "later");
        assert_eq!(later.status(4), EnhancedCode(4, 0, 0));
        let expired = Diagnostic::expired(&later);
        assert_eq!(expired.status(5), EnhancedCode(5, 4, 7));
        assert_eq!(
            expired.to_string(),
            "delivery time expired; last error: mx[192.0.2.1] said: 451 later"
        );
        assert_eq!(expired.remote, later.remote);
    }

    #[test]
    fn json_carries_the_enhanced_code_as_text() {
        let d = Diagnostic::reply(550, EnhancedCode(5, 1, 1), "no").at("mx", [192, 0, 2, 1].into());
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"enhanced\":\"5.1.1\""), "{json}");
        assert_eq!(serde_json::from_str::<Diagnostic>(&json).unwrap(), d);
        assert!(parse_enhanced("5.1").is_none());
        assert!(parse_enhanced("3.1.1").is_none());
        assert!(parse_enhanced("5.1.1.1").is_none());
    }
}
