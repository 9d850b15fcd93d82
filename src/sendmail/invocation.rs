//! sendmail's command line ([`parse_args`]) and turning what programs write
//! on standard input into a message ready to queue ([`prepare`]). Pure: the
//! command ([`super::run`]) reads stdin and hands the result to the daemon
//! over the control socket. The flags understood are listed in [`super`].

use std::ffi::OsString;
use std::path::PathBuf;

use crate::message;

/// sysexits.h, the exit codes callers of sendmail understand.
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const NOUSER: u8 = 67;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    pub const TEMPFAIL: u8 = 75;
    /// Not allowed: a sender the caller may not use (sender rules).
    pub const NOPERM: u8 = 77;
    pub const CONFIG: u8 = 78;
}

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `-t`: read recipients from the headers.
    pub from_headers: bool,
    /// `-i`/`-oi`: a lone `.` line is just text.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender (`<>` or empty for the null sender).
    pub sender: Option<String>,
    /// `-F`: the full name for a From: header we add.
    pub full_name: Option<String>,
    /// `-C`: the configuration file.
    pub config: Option<PathBuf>,
    /// `-bp`: list the queue instead.
    pub list_queue: bool,
    pub recipients: Vec<String>,
}

/// A command line sendmail does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sendmail: {0}")]
pub struct UsageError(pub String);

/// Parses sendmail's arguments (without the program name).
pub fn parse_args(args: &[OsString]) -> Result<Invocation, UsageError> {
    let mut inv = Invocation::default();
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    let value = |flag: &str, rest: &str, args: &mut dyn Iterator<Item = String>| {
        if rest.is_empty() {
            args.next()
                .ok_or_else(|| UsageError(format!("option -{flag} needs a value")))
        } else {
            Ok(rest.to_string())
        }
    };
    while let Some(arg) = args.next() {
        if arg == "--" {
            inv.recipients.extend(args.by_ref());
            break;
        }
        let Some(opt) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            inv.recipients.push(arg);
            continue;
        };
        let (flag, rest) = opt.split_at(1);
        match flag {
            "t" if rest.is_empty() => inv.from_headers = true,
            "i" if rest.is_empty() => inv.ignore_dots = true,
            "f" | "r" => inv.sender = Some(value(flag, rest, &mut args)?),
            "F" => inv.full_name = Some(value(flag, rest, &mut args)?),
            "C" => inv.config = Some(PathBuf::from(value(flag, rest, &mut args)?)),
            // -oi is -i; other -o options (-oem, -odi, -oQ…) are the old
            // sendmail's tuning and mean nothing here.
            "o" if rest == "i" => inv.ignore_dots = true,
            "o" => {}
            "b" if rest == "p" => inv.list_queue = true,
            "b" if rest == "m" || rest.is_empty() => {}
            "b" => return Err(UsageError(format!("mode -b{rest} is not supported"))),
            // Debug, verbose, "me too", no aliasing, initial submission: no effect.
            "d" | "v" | "m" | "n" | "U" | "L" | "N" | "R" | "V" | "X" | "h" | "A" | "B" | "O" => {
                if matches!(flag, "N" | "R" | "V" | "X" | "h" | "L" | "A" | "B" | "O")
                    && rest.is_empty()
                {
                    // These take a value as the next argument.
                    let _ = args.next();
                }
            }
            _ => return Err(UsageError(format!("unknown option {arg}"))),
        }
    }
    Ok(inv)
}

/// A message ready to hand to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Every recipient, command line and (with `-t`) headers, deduplicated.
    pub recipients: Vec<String>,
    /// The message with CRLF line ends, Bcc removed, missing From/Date/
    /// Message-ID added.
    pub content: Vec<u8>,
}

/// What makes a message unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error("no recipients (give them as arguments, or use -t with To:/Cc:/Bcc: headers)")]
    NoRecipients,
    #[error("cannot read the recipients of the {0}: header")]
    BadHeader(String),
}

impl PrepareError {
    /// The sysexits code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PrepareError::NoRecipients => exit::USAGE,
            PrepareError::BadHeader(_) => exit::DATAERR,
        }
    }
}

/// Defaults for headers a program left out.
#[derive(Debug, Clone)]
pub struct Defaults<'a> {
    /// The envelope sender (used for a missing From:).
    pub sender: &'a str,
    pub hostname: &'a str,
    /// RFC 5322 date for a missing Date:.
    pub date: &'a str,
    /// Unique text for a missing Message-ID.
    pub unique: &'a str,
}

/// Turns standard input into a message: line ends to CRLF, the input ends
/// at EOF (or, without `-i`, at a line with a single `.`), recipients
/// collected, Bcc: removed, missing headers added.
pub fn prepare(
    input: &[u8],
    inv: &Invocation,
    defaults: &Defaults<'_>,
) -> Result<Prepared, PrepareError> {
    let lines = crlf_lines(input, !inv.ignore_dots);
    // A first line that is not a header field starts the body ("echo text |
    // sendmail root" sends the text).
    let (head, body) = lines.split_at(message::header_fields_len(&lines));
    let fields = message::fields(head);
    let mut recipients: Vec<String> = Vec::new();
    let add = |r: String, list: &mut Vec<String>| {
        if !list.iter().any(|have| have.eq_ignore_ascii_case(&r)) {
            list.push(r);
        }
    };
    for r in &inv.recipients {
        for one in r.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            add(one.to_string(), &mut recipients);
        }
    }
    if inv.from_headers {
        for field in fields.iter().filter(|f| {
            [&b"To"[..], b"Cc", b"Bcc"]
                .iter()
                .any(|n| f.name.eq_ignore_ascii_case(n))
        }) {
            let name = String::from_utf8_lossy(field.name).into_owned();
            for r in message::addresses(field.value).ok_or(PrepareError::BadHeader(name))? {
                add(r, &mut recipients);
            }
        }
    }
    if recipients.is_empty() {
        return Err(PrepareError::NoRecipients);
    }
    let has = |name: &[u8]| fields.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    let mut content = Vec::with_capacity(lines.len() + 256);
    if !has(b"From") {
        let from = match &inv.full_name {
            Some(name) => format!("From: {} <{}>\r\n", quote_phrase(name), defaults.sender),
            None => format!("From: {}\r\n", defaults.sender),
        };
        content.extend_from_slice(from.as_bytes());
    }
    if !has(b"Date") {
        content.extend_from_slice(format!("Date: {}\r\n", defaults.date).as_bytes());
    }
    if !has(b"Message-ID") {
        content.extend_from_slice(
            format!(
                "Message-ID: <{}@{}>\r\n",
                defaults.unique, defaults.hostname
            )
            .as_bytes(),
        );
    }
    // Bcc: recipients are hidden from each other (RFC 5322 §3.6.3).
    for field in fields
        .iter()
        .filter(|f| !f.name.eq_ignore_ascii_case(b"Bcc"))
    {
        content.extend_from_slice(field.name);
        content.push(b':');
        content.extend_from_slice(field.value);
    }
    if !body.starts_with(b"\r\n") {
        // The empty line that ends the header section.
        content.extend_from_slice(b"\r\n");
    }
    content.extend_from_slice(body);
    Ok(Prepared {
        recipients,
        content,
    })
}

/// A display name, quoted when it is not all atoms.
fn quote_phrase(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c));
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `input` with every line ending (LF, CRLF, lone CR) made CRLF; with
/// `dot_ends`, a line consisting of a single `.` ends it.
fn crlf_lines(input: &[u8], dot_ends: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 40 + 2);
    let mut i = 0;
    while i < input.len() {
        let mut j = i;
        while j < input.len() && input[j] != b'\n' && input[j] != b'\r' {
            j += 1;
        }
        let line = &input[i..j];
        if dot_ends && line == b"." {
            return out;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        i = j;
        if i < input.len() {
            // Skip one line ending: CRLF, LF or a lone CR.
            if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn defaults() -> Defaults<'static> {
        Defaults {
            sender: "root@mx.example.org",
            hostname: "mx.example.org",
            date: "Sat, 28 Nov 2026 15:52:42 +0000",
            unique: "U1",
        }
    }

    #[test]
    fn common_command_lines() {
        let inv = parse_args(&args(&["-oi", "-t"])).unwrap();
        assert!(inv.ignore_dots && inv.from_headers);
        let inv = parse_args(&args(&[
            "-i",
            "-f",
            "cron@example.org",
            "-FCron Daemon",
            "a@x.example",
            "b@y.example",
        ]))
        .unwrap();
        assert_eq!(inv.sender.as_deref(), Some("cron@example.org"));
        assert_eq!(inv.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(inv.recipients, ["a@x.example", "b@y.example"]);
        let inv = parse_args(&args(&[
            "-fme@example.org",
            "-odi",
            "-oem",
            "--",
            "-odd@x.example",
        ]))
        .unwrap();
        assert_eq!(inv.sender.as_deref(), Some("me@example.org"));
        assert_eq!(inv.recipients, ["-odd@x.example"]);
        assert!(parse_args(&args(&["-bp"])).unwrap().list_queue);
        assert!(parse_args(&args(&["-f"])).is_err());
        assert!(parse_args(&args(&["-q"])).is_err());
        assert!(parse_args(&args(&["-bs"])).is_err());
    }

    #[test]
    fn lf_input_becomes_crlf_and_missing_headers_are_added() {
        let inv = parse_args(&args(&["me@example.org"])).unwrap();
        let p = prepare(b"Subject: hi\n\nline one\nline two", &inv, &defaults()).unwrap();
        assert_eq!(p.recipients, ["me@example.org"]);
        assert_eq!(
            String::from_utf8(p.content).unwrap(),
            "From: root@mx.example.org\r\nDate: Sat, 28 Nov 2026 15:52:42 +0000\r\nMessage-ID: <U1@mx.example.org>\r\n\
             Subject: hi\r\n\r\nline one\r\nline two\r\n"
        );
    }

    #[test]
    fn a_single_dot_ends_input_unless_i() {
        let input = b"Subject: x\n\nbefore\n.\nafter\n";
        let inv = parse_args(&args(&["me@example.org"])).unwrap();
        let p = prepare(input, &inv, &defaults()).unwrap();
        assert!(p.content.ends_with(b"before\r\n"));
        let inv = parse_args(&args(&["-i", "me@example.org"])).unwrap();
        let p = prepare(input, &inv, &defaults()).unwrap();
        assert!(p.content.ends_with(b"before\r\n.\r\nafter\r\n"));
    }

    #[test]
    fn t_reads_to_cc_bcc_and_removes_bcc() {
        let inv = parse_args(&args(&["-t", "extra@example.org"])).unwrap();
        let input = b"From: App <app@example.org>\nTo: Me <me@example.org>, bob@example.org\nCc: carol@x.example\nBcc: secret@y.example,\n  me@example.org\nSubject: t\n\nbody\n";
        let p = prepare(input, &inv, &defaults()).unwrap();
        assert_eq!(
            p.recipients,
            [
                "extra@example.org",
                "me@example.org",
                "bob@example.org",
                "carol@x.example",
                "secret@y.example"
            ]
        );
        let text = String::from_utf8(p.content).unwrap();
        assert!(!text.contains("Bcc") && !text.contains("secret"), "{text}");
        assert!(
            text.starts_with("Date: "),
            "From: was given, Date: added: {text}"
        );
        assert!(text.contains(
            "From: App <app@example.org>\r\nTo: Me <me@example.org>, bob@example.org\r\n"
        ));
    }

    #[test]
    fn full_name_and_errors() {
        let inv = parse_args(&args(&["-F", "Ann \"The\" Admin", "me@example.org"])).unwrap();
        let p = prepare(b"\nbody only\n", &inv, &defaults()).unwrap();
        let text = String::from_utf8(p.content).unwrap();
        assert!(
            text.starts_with("From: \"Ann \\\"The\\\" Admin\" <root@mx.example.org>\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nbody only\r\n"), "{text:?}");
        let inv = parse_args(&args(&["-t"])).unwrap();
        assert_eq!(
            prepare(b"Subject: x\n\nno one\n", &inv, &defaults()),
            Err(PrepareError::NoRecipients)
        );
        assert!(matches!(
            prepare(b"To: <broken\n\nx\n", &inv, &defaults()),
            Err(PrepareError::BadHeader(_))
        ));
    }

    #[test]
    fn text_without_headers_is_the_body() {
        let inv = parse_args(&args(&["me@example.org"])).unwrap();
        for (input, ends) in [
            (
                &b"disk full\n"[..],
                &b"@mx.example.org>\r\n\r\ndisk full\r\n"[..],
            ),
            (
                b"Subject: x\nX-Second: a header too\nplain text\nmore\n",
                b"Subject: x\r\nX-Second: a header too\r\n\r\nplain text\r\nmore\r\n",
            ),
            (
                b"Subject: folded\n  on two lines\n\tand three\nbody\n",
                b"Subject: folded\r\n  on two lines\r\n\tand three\r\n\r\nbody\r\n",
            ),
            (
                b" indented first line\n",
                b">\r\n\r\n indented first line\r\n",
            ),
        ] {
            let p = prepare(input, &inv, &defaults()).unwrap();
            assert!(
                p.content.ends_with(ends),
                "{:?}",
                String::from_utf8_lossy(&p.content)
            );
        }
    }

    #[test]
    fn headers_only_input_gets_an_empty_body() {
        let inv = parse_args(&args(&["me@example.org"])).unwrap();
        let p = prepare(b"Subject: only\n", &inv, &defaults()).unwrap();
        assert!(
            p.content.ends_with(b"Subject: only\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&p.content)
        );
    }
}
