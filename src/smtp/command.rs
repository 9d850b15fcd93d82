//! SMTP command lines (RFC 5321 §4.1) → [`Command`]. Pure: a line in, a typed
//! command or a typed [`CommandError`] out. Verbs and parameter keywords are
//! case-insensitive; the line has already lost its CRLF (or bare LF).

use super::address::{parse_path, Address, AddressError};
use super::reply::{EnhancedCode, Reply};

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<path> [params]`; `from` is `None` for the null sender `<>`.
    Mail {
        from: Option<Address>,
        params: MailParams,
    },
    /// `RCPT TO:<path>`; `<Postmaster>` arrives as `to: None`.
    Rcpt {
        to: Option<Address>,
    },
    Data,
    /// RFC 3030 `BDAT size [LAST]`.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// The ESMTP parameters of MAIL we understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 `SIZE=`: the client's estimate.
    pub size: Option<u64>,
    /// RFC 6152 `BODY=8BITMIME` (true) or `BODY=7BIT` / absent (false).
    pub eight_bit: bool,
    /// RFC 6531 `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Why a line is not a command we can act on. `Reply::from` says what the client
/// hears for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command unrecognized")]
    Unrecognized,
    #[error("line is not valid UTF-8 or contains control characters")]
    BadCharacters,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    #[error("bad recipient address: {0}")]
    BadRecipient(AddressError),
    #[error("unsupported parameter {0}")]
    UnknownParameter(String),
}

impl From<&CommandError> for Reply {
    fn from(e: &CommandError) -> Reply {
        match e {
            // RFC 5321 §4.2.4: 500 for an unrecognized command.
            CommandError::Unrecognized => Reply::UNRECOGNIZED,
            CommandError::BadCharacters => {
                Reply::UNRECOGNIZED.with_text("Invalid characters in command")
            }
            CommandError::Syntax(what) => Reply::SYNTAX.with_text(format!("Syntax error: {what}")),
            // RFC 3463: X.1.7 bad sender's mailbox syntax, X.1.3 bad destination syntax.
            CommandError::BadSender(a) => Reply::new(
                501,
                EnhancedCode(5, 1, 7),
                format!("Bad sender address: {a}"),
            ),
            CommandError::BadRecipient(a) => Reply::new(
                501,
                EnhancedCode(5, 1, 3),
                format!("Bad recipient address: {a}"),
            ),
            CommandError::UnknownParameter(p) => {
                Reply::UNKNOWN_PARAMETER.with_text(format!("Unsupported parameter {p}"))
            }
        }
    }
}

/// Parses one command line (without its line ending).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadCharacters)?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CommandError::BadCharacters);
    }
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, a),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_arg = |cmd: Command| {
        if arg.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "EHLO" => Ok(Command::Ehlo(helo_argument(arg)?)),
        "HELO" => Ok(Command::Helo(helo_argument(arg)?)),
        "MAIL" => parse_mail(arg),
        "RCPT" => parse_rcpt(arg),
        "DATA" => no_arg(Command::Data),
        "BDAT" => parse_bdat(arg),
        "RSET" => no_arg(Command::Rset),
        // RFC 5321 §4.1.1.9: NOOP and HELP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "QUIT" => no_arg(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "STARTTLS" => no_arg(Command::StartTls),
        "AUTH" => parse_auth(arg),
        _ => Err(CommandError::Unrecognized),
    }
}

fn helo_argument(arg: &str) -> Result<String, CommandError> {
    let arg = arg.trim();
    if arg.is_empty() || arg.contains(' ') {
        return Err(CommandError::Syntax(
            "expected EHLO/HELO followed by your host name",
        ));
    }
    Ok(arg.to_string())
}

/// Strips a case-insensitive keyword like `FROM:` from the front of `arg`.
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &arg[keyword.len()..])
}

fn parse_mail(arg: &str) -> Result<Command, CommandError> {
    let rest =
        strip_keyword(arg, "FROM:").ok_or(CommandError::Syntax("expected MAIL FROM:<address>"))?;
    let path = parse_path(rest).map_err(CommandError::BadSender)?;
    if path.bare_postmaster {
        return Err(CommandError::BadSender(AddressError::Syntax));
    }
    let mut params = MailParams::default();
    let mut seen = Vec::new();
    for param in path.params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (param.to_ascii_uppercase(), None),
        };
        if seen.contains(&key) {
            return Err(CommandError::Syntax("parameter given twice"));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                // RFC 1870 §3: size-value ::= 1*20DIGIT. Twenty digits can pass
                // u64::MAX; such a size is valid, just too big (552, not 501).
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CommandError::Syntax("SIZE= takes a number"));
                }
                params.size = Some(v.parse::<u64>().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => params.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.eight_bit = false,
            ("BODY", _) => return Err(CommandError::Syntax("BODY= takes 7BIT or 8BITMIME")),
            ("SMTPUTF8", None) => params.smtputf8 = true,
            // RFC 4954 §5: the authenticated sender of a relayed message, as
            // xtext; we trust our own login instead and ignore it.
            ("AUTH", Some(v)) if !v.is_empty() => {}
            _ => return Err(CommandError::UnknownParameter(param.to_string())),
        }
        seen.push(key);
    }
    Ok(Command::Mail {
        from: path.address,
        params,
    })
}

fn parse_rcpt(arg: &str) -> Result<Command, CommandError> {
    let rest =
        strip_keyword(arg, "TO:").ok_or(CommandError::Syntax("expected RCPT TO:<address>"))?;
    let path = parse_path(rest).map_err(CommandError::BadRecipient)?;
    if path.address.is_none() && !path.bare_postmaster {
        // RFC 5321 §4.1.1.3: the null path is not a recipient.
        return Err(CommandError::BadRecipient(AddressError::Syntax));
    }
    if let Some(p) = path.params.split(' ').find(|p| !p.is_empty()) {
        return Err(CommandError::UnknownParameter(p.to_string()));
    }
    Ok(Command::Rcpt { to: path.address })
}

fn parse_bdat(arg: &str) -> Result<Command, CommandError> {
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or(CommandError::Syntax("expected BDAT <size> [LAST]"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax("expected BDAT <size> [LAST]")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("expected BDAT <size> [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(arg: &str) -> Result<Command, CommandError> {
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .ok_or(CommandError::Syntax(
            "expected AUTH <mechanism> [initial-response]",
        ))?
        .to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax(
            "expected AUTH <mechanism> [initial-response]",
        ));
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, CommandError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse("ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse("QuIt"), Ok(Command::Quit));
        assert_eq!(parse("noop anything goes"), Ok(Command::Noop));
    }

    #[test]
    fn mail_with_params() {
        let cmd = parse("MAIL FROM:<a@b.example> size=1000 BODY=8bitmime SMTPUTF8").unwrap();
        match cmd {
            Command::Mail { from, params } => {
                assert_eq!(from.unwrap().to_string(), "a@b.example");
                assert_eq!(
                    params,
                    MailParams {
                        size: Some(1000),
                        eight_bit: true,
                        smtputf8: true
                    }
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn mail_null_sender_and_space_after_colon() {
        assert!(matches!(
            parse("MAIL FROM: <>"),
            Ok(Command::Mail { from: None, .. })
        ));
    }

    #[test]
    fn mail_takes_and_ignores_the_auth_parameter() {
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> AUTH=<>"),
            Ok(Command::Mail { .. })
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> AUTH=a+2Bb@c.example"),
            Ok(Command::Mail { .. })
        ));
        assert!(parse("MAIL FROM:<a@b.example> AUTH=").is_err());
    }

    #[test]
    fn mail_rejects_unknown_and_repeated_params() {
        assert_eq!(
            parse("MAIL FROM:<a@b.example> RET=FULL"),
            Err(CommandError::UnknownParameter("RET=FULL".into()))
        );
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> SIZE=1 SIZE=2"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> SIZE=-1"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> SIZE=+1"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> SIZE="),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> SIZE=999999999999999999999"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL TO:<a@b.example>"),
            Err(CommandError::Syntax(_))
        ));
    }

    #[test]
    fn mail_size_of_twenty_digits_is_valid_but_huge() {
        // RFC 1870 allows 20 digits, more than u64 holds: the size saturates
        // so the session answers 552 (too big) rather than 501.
        match parse("MAIL FROM:<a@b.example> SIZE=99999999999999999999") {
            Ok(Command::Mail { params, .. }) => assert_eq!(params.size, Some(u64::MAX)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rcpt_forms() {
        assert!(matches!(
            parse("RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt { to: None })
        ));
        assert!(matches!(
            parse("rcpt to:<x@y.example>"),
            Ok(Command::Rcpt { to: Some(_) })
        ));
        assert!(matches!(
            parse("RCPT TO:<>"),
            Err(CommandError::BadRecipient(_))
        ));
        assert!(matches!(
            parse("RCPT TO:<x@y.example> NOTIFY=NEVER"),
            Err(CommandError::UnknownParameter(_))
        ));
        assert!(matches!(
            parse("RCPT TO:x@y.example"),
            Err(CommandError::BadRecipient(_))
        ));
    }

    #[test]
    fn bdat_forms() {
        assert_eq!(
            parse("BDAT 100 LAST"),
            Ok(Command::Bdat {
                size: 100,
                last: true
            })
        );
        assert_eq!(
            parse("BDAT 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert!(parse("BDAT").is_err());
        assert!(parse("BDAT x").is_err());
        assert!(parse("BDAT 1 FIRST").is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse("FOO"), Err(CommandError::Unrecognized));
        assert_eq!(parse(""), Err(CommandError::Unrecognized));
        assert_eq!(
            parse_command(b"NOOP \xff"),
            Err(CommandError::BadCharacters)
        );
        assert_eq!(parse("NOOP \u{0}"), Err(CommandError::BadCharacters));
        assert!(parse("DATA now").is_err());
        assert!(parse("EHLO").is_err());
    }

    #[test]
    fn every_error_maps_to_a_5xx_reply_with_enhanced_code() {
        for e in [
            CommandError::Unrecognized,
            CommandError::BadCharacters,
            CommandError::Syntax("x"),
            CommandError::BadSender(AddressError::Syntax),
            CommandError::BadRecipient(AddressError::TooLong),
            CommandError::UnknownParameter("X".into()),
        ] {
            let reply = Reply::from(&e);
            assert!(reply.code >= 500 && reply.code < 600);
            assert_eq!(reply.enhanced.map(|c| c.0), Some(5));
        }
    }
}
