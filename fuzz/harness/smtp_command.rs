//! Target `smtp_command`: command lines ([`parse_command`]), the MAIL and RCPT
//! paths and parameters, and bare mailboxes ([`Address::parse`]).
//!
//! Input: one command line without its CRLF (also tried as a bare mailbox,
//! and after `MAIL FROM:` and `RCPT TO:`).
//!
//! Invariants: no panic; an error's reply is a 5yz with an enhanced code
//! and one line of text; an accepted address is well formed (local part of
//! at most 64 octets, a host name lowercase with LDH or Unicode letter and
//! digit labels, no `@`, `%`, `!` or `:` in it, so routing hacks never reach
//! relay control) and survives the trip through its text form (it is stored
//! in the spool as text: what does not parse back is lost at recovery).

use tern::smtp::address::parse_domain;
use tern::smtp::command::{parse_command, Command};
use tern::smtp::{Address, Domain, Reply};

/// Checks one address the parser accepted.
pub fn check_address(a: &Address) {
    assert!(a.local.len() <= 64, "local part of {} bytes", a.local.len());
    match &a.domain {
        Domain::Name(name) => {
            assert!(!name.is_empty() && !name.ends_with('.'), "domain {name:?}");
            assert!(
                !name.contains(['@', '%', '!', ':', '[', ']', ' ']),
                "domain {name:?}"
            );
            assert_eq!(&name.to_lowercase(), name, "domain not lowercase");
            assert_eq!(
                parse_domain(name).as_deref(),
                Ok(name.as_str()),
                "domain {name:?} does not parse back"
            );
        }
        Domain::Literal(lit) => assert!(!lit.contains([']', '[']), "literal {lit:?}"),
    }
    let text = a.to_string();
    assert_eq!(
        Address::parse(&text).as_ref(),
        Ok(a),
        "{text:?} does not parse back to the same address"
    );
}

fn check_reply(reply: &Reply) {
    assert!((500..=599).contains(&reply.code), "{reply:?}");
    assert!(reply.enhanced.is_some(), "{reply:?}");
    assert!(!reply.text.contains(['\r', '\n']), "{reply:?}");
}

fn check_line(line: &[u8]) {
    match parse_command(line) {
        Ok(Command::Mail { from, params }) => {
            if let Some(a) = &from {
                check_address(a);
            }
            let _ = params;
        }
        Ok(Command::Rcpt { to: Some(a) }) => check_address(&a),
        Ok(Command::Ehlo(name) | Command::Helo(name)) => {
            assert!(!name.is_empty() && !name.contains([' ', '\r', '\n']));
        }
        Ok(Command::Auth { mechanism, initial }) => {
            assert!(!mechanism.is_empty() && !mechanism.contains(' '));
            assert!(initial.is_none_or(|i| !i.is_empty() && !i.contains(' ')));
        }
        Ok(_) => {}
        Err(e) => check_reply(&Reply::from(&e)),
    }
}

/// Parses `data` in every role (see the module documentation).
pub fn run(data: &[u8]) {
    check_line(data);
    for prefix in [&b"MAIL FROM:"[..], b"RCPT TO:"] {
        let mut line = prefix.to_vec();
        line.extend_from_slice(data);
        check_line(&line);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = Address::parse(text) {
            check_address(&a);
        }
    }
}
