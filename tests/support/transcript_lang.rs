//! The language of the SMTP transcript files (tests/transcripts/*.txt): its
//! parser, and the escapes used to write and show raw bytes. The format is
//! described in tests/transcripts.rs, which runs the scripts.

use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug)]
pub struct Script {
    pub config: String,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Send(Vec<u8>),
    Expect(String),
    ExpectFinal(String),
    Closed,
    ClosedAfterAlert,
    Quiet(Duration),
    Wait(Duration),
    Timeout(Duration),
    StartTls(Option<String>),
    Connect(String, Option<String>, Option<IpAddr>),
    Use(String),
    Close,
    Queued(usize),
    MaildirCount(String, usize),
    MaildirContains(String, usize, Vec<u8>, bool),
    MaildirBody(String, usize, Vec<u8>),
}

pub fn parse(text: &str) -> Result<Script, (usize, String)> {
    let mut config = String::new();
    let mut steps: Vec<Step> = Vec::new();
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let number = i + 1;
        i += 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |e: String| (number, e);
        let kind = if let Some(toml) = line.strip_prefix("config:") {
            if !steps.is_empty() {
                return Err(err("config: must come before the dialogue".into()));
            }
            config.push_str(toml.trim_start());
            config.push('\n');
            continue;
        } else if let Some(raw) = line.strip_prefix(">> ") {
            Kind::Send(unescape(raw).map_err(err)?)
        } else if let Some(text) = line.strip_prefix("> ") {
            Kind::Send(format!("{text}\r\n").into_bytes())
        } else if line == ">" {
            Kind::Send(b"\r\n".to_vec())
        } else if let Some(prefix) = line.strip_prefix("<... ") {
            Kind::ExpectFinal(prefix.to_string())
        } else if let Some(prefix) = line.strip_prefix("< ") {
            Kind::Expect(prefix.to_string())
        } else if line.starts_with('|') {
            return Err(err("`|` lines belong after `maildir USER I body`".into()));
        } else {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["closed"] => Kind::Closed,
                ["closed", "after", "tls", "alert"] => Kind::ClosedAfterAlert,
                ["close"] => Kind::Close,
                ["quiet", s] => Kind::Quiet(seconds(s).map_err(err)?),
                ["wait", s] => Kind::Wait(seconds(s).map_err(err)?),
                ["timeout", s] => Kind::Timeout(seconds(s).map_err(err)?),
                ["starttls"] => Kind::StartTls(None),
                ["starttls", v @ ("1.2" | "1.3")] => Kind::StartTls(Some(v.to_string())),
                ["connect", name, rest @ ..] => {
                    let (role, rest) = match rest {
                        ["to", role @ ("mx" | "submission" | "submissions"), rest @ ..] => {
                            (Some(role.to_string()), rest)
                        }
                        rest => (None, rest),
                    };
                    let from = match rest {
                        [] => None,
                        ["from", ip] => Some(ip.parse().map_err(|_| err(format!("bad IP {ip}")))?),
                        _ => {
                            return Err(err(format!(
                                "expected `connect NAME [to mx|submission|submissions] \
                                 [from IP]`, got {line:?}"
                            )))
                        }
                    };
                    Kind::Connect(name.to_string(), role, from)
                }
                ["use", name] => Kind::Use(name.to_string()),
                ["queued", n] => Kind::Queued(number_arg(n).map_err(err)?),
                ["maildir", user, n] => {
                    Kind::MaildirCount(user.to_string(), number_arg(n).map_err(err)?)
                }
                ["maildir", user, index, "body"] => {
                    let mut body = Vec::new();
                    while i < lines.len() && lines[i].starts_with('|') {
                        let l = lines[i].strip_prefix('|').unwrap();
                        let l = l.strip_prefix(' ').unwrap_or(l);
                        body.extend_from_slice(l.as_bytes());
                        body.extend_from_slice(b"\r\n");
                        i += 1;
                    }
                    Kind::MaildirBody(user.to_string(), index_arg(index).map_err(err)?, body)
                }
                ["maildir", user, index, verb @ ("contains" | "lacks"), ..] => {
                    // The text is everything after the verb, spaces included.
                    let at = line.find(verb).unwrap() + verb.len() + 1;
                    Kind::MaildirContains(
                        user.to_string(),
                        index_arg(index).map_err(err)?,
                        unescape(&line[at..]).map_err(err)?,
                        *verb == "contains",
                    )
                }
                _ => return Err(err(format!("not a transcript step: {line:?}"))),
            }
        };
        steps.push(Step { line: number, kind });
    }
    Ok(Script { config, steps })
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected seconds like 0.5s, got {s:?}"))
}

fn number_arg(s: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("expected a number, got {s:?}"))
}

fn index_arg(s: &str) -> Result<usize, String> {
    number_arg(s)?
        .checked_sub(1)
        .ok_or_else(|| "message numbers start at 1".to_string())
}

/// `\r \n \t \\ \xHH`; everything else as is.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("bad escape \\x{hex} in {s:?}"))?;
                out.push(byte);
            }
            other => return Err(format!("bad escape \\{} in {s:?}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// What a line looks like in the failure log: escapes for control bytes.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_parses_its_language() {
        let script = parse(
            "# comment\nconfig: [limits]\nconfig: errors = 3\n\n< 220 mx\n> EHLO x\n<... 250 CHUNKING\n\
             >> a\\r\\n\\x00\\\\\n>\nclosed\nclosed after tls alert\nquiet 0.5s\nwait 1\ntimeout 2s\n\
             starttls\nstarttls 1.2\nconnect c2 from 127.0.0.2\nuse c1\nclose\nqueued 0\n\
             maildir me 1\nmaildir me 1 contains a  b\\r\\n\nmaildir me 1 lacks x\nmaildir me 1 body\n| one\n|\n",
        )
        .unwrap();
        assert_eq!(script.config, "[limits]\nerrors = 3\n");
        assert_eq!(script.steps.len(), 20);
        assert_eq!(script.steps[0].line, 5);
        assert!(matches!(&script.steps[1].kind, Kind::Send(b) if b == b"EHLO x\r\n"));
        assert!(matches!(&script.steps[3].kind, Kind::Send(b) if b == b"a\r\n\x00\\"));
        assert!(matches!(&script.steps[4].kind, Kind::Send(b) if b == b"\r\n"));
        assert!(matches!(&script.steps[17].kind,
            Kind::MaildirContains(u, 0, t, true) if u == "me" && t == b"a  b\r\n"));
        assert!(
            matches!(&script.steps[19].kind, Kind::MaildirBody(_, 0, b) if b == b"one\r\n\r\n")
        );
        assert!(matches!(&script.steps[12].kind,
            Kind::Connect(n, None, Some(ip)) if n == "c2" && ip.to_string() == "127.0.0.2"));
        let script = parse(
            "connect c1 to submission\nconnect c2 to submissions from 127.0.0.3\nconnect c3 to mx\n",
        )
        .unwrap();
        assert!(matches!(&script.steps[0].kind,
            Kind::Connect(n, Some(r), None) if n == "c1" && r == "submission"));
        assert!(matches!(&script.steps[1].kind,
            Kind::Connect(n, Some(r), Some(ip)) if n == "c2" && r == "submissions"
                && ip.to_string() == "127.0.0.3"));
        assert!(matches!(&script.steps[2].kind, Kind::Connect(_, Some(r), None) if r == "mx"));
        for (bad, line) in [
            ("> x\nconfig: a = 1\n", 2),
            ("\n\nfrobnicate\n", 3),
            ("| stray\n", 1),
            ("maildir me 0 body\n", 1),
            (">> \\q\n", 1),
            ("wait soon\n", 1),
            ("connect c2 to pop3\n", 1),
            ("connect c2 from 127.0.0.2 to submission\n", 1),
            ("connect c2 from nowhere\n", 1),
        ] {
            assert_eq!(parse(bad).unwrap_err().0, line, "{bad:?}");
        }
    }
}
