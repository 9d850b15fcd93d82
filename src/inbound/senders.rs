//! The sender rules (DESIGN invariant 7): a user sends only as themselves.
//! One rule for both doors: the submission ports (a login) and local
//! `sendmail` run by a Unix user without privileges. Who may use which
//! address is [`may_use`]; [`check_message`] applies it to every mailbox of
//! the `From:` and `Sender:` header fields once the message has arrived,
//! before it is queued (and so before it is DKIM-signed).
//!
//! - A login may use its own addresses ([`routing::owns`]: its name at
//!   every local domain, with `+tags`, the aliases that deliver to it, the
//!   null sender at MAIL FROM) and its `send_as` list.
//! - A local Unix user may use `<login>@<hostname>` and what
//!   `[local_senders]` maps to its login.
//!
//! A message without a `From:` field is refused rather than given one
//! (RFC 6409 §8.1 lets a submission server add it, but the client then
//! never sees what was sent; `sendmail` adds one before it hands the
//! message over). Two `From:` or two `Sender:` fields are refused (RFC 5322
//! §3.6 allows one), and so is a field we cannot read as mailboxes: what a
//! reader's program shows must be exactly what was checked.

use crate::config::Config;
use crate::message;
use crate::queue::Body;
use crate::routing;
use crate::smtp::{Address, Reply};

/// Who is sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// Logged in on the submission ports as this tern user.
    Login(&'a str),
    /// This Unix login (neither root nor group tern) running `sendmail`.
    Local(&'a str),
}

impl std::fmt::Display for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sender::Login(user) => write!(f, "user {user}"),
            Sender::Local(login) => write!(f, "Unix user {login}"),
        }
    }
}

/// May `sender` use `address` as envelope sender, in `From:` or in
/// `Sender:`? `None` is the null sender `<>`: a login may use it (for
/// notifications; its `From:` is still checked), a local user may not.
pub fn may_use(config: &Config, sender: Sender<'_>, address: Option<&Address>) -> bool {
    match sender {
        Sender::Login(user) => {
            routing::owns(config, user, address)
                || address.is_some_and(|a| send_as(config, user, a))
        }
        Sender::Local(login) => address.is_some_and(|a| {
            a.to_string()
                .eq_ignore_ascii_case(&local_default(config, login))
                || local_mapped(config, login, a)
        }),
    }
}

/// Is `address` in `user`'s `send_as`?
fn send_as(config: &Config, user: &str, address: &Address) -> bool {
    let (Some(user), Some(domain)) = (config.users.get(user), address.domain.name()) else {
        return false;
    };
    user.send_as
        .iter()
        .any(|p| p.matches(&address.local, domain, config.recipient_delimiter))
}

/// The login of Unix user `uid` (from /etc/passwd), whom the rules for
/// local senders apply to.
pub fn login_of(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The envelope sender a local Unix user gets: `<login>@<hostname>`.
pub fn local_default(config: &Config, login: &str) -> String {
    format!("{login}@{}", config.hostname)
}

/// Does `[local_senders]` give `address` to Unix user `login`? (Only such
/// mail from a local user is DKIM-signed.)
pub fn local_mapped(config: &Config, login: &str, address: &Address) -> bool {
    let (Some(patterns), Some(domain)) = (config.local_senders.get(login), address.domain.name())
    else {
        return false;
    };
    patterns
        .iter()
        .any(|p| p.matches(&address.local, domain, config.recipient_delimiter))
}

/// Why a message's authors are refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    #[error("the message has no From: header field; add one with your address")]
    NoFrom,
    #[error("the message has {count} {field}: header fields; RFC 5322 allows one")]
    Repeated { field: &'static str, count: usize },
    #[error("the {field}: header field is not a list of mailboxes that can be read")]
    Unreadable { field: &'static str },
    #[error("the From: header field names no mailbox")]
    NoMailbox,
    #[error("{field}: address <{address}> is not one that {sender} may send as")]
    NotAllowed {
        field: &'static str,
        address: String,
        sender: String,
    },
    #[error(
        "the header section is longer than {} bytes; its From: cannot be checked",
        crate::dkim::MAX_HEADER_SECTION
    )]
    HeaderTooLarge,
    #[error("cannot read the message: {0}")]
    Io(#[from] std::io::Error),
}

/// Which reply each refusal earns after DATA: a foreign address is policy
/// (5.7.1), a header we cannot check is the message's syntax (5.6.0), a
/// failure to read our own copy is ours (451).
impl From<&AuthorError> for Reply {
    fn from(e: &AuthorError) -> Reply {
        match e {
            AuthorError::NotAllowed { .. } => Reply::SENDER_NOT_ALLOWED.with_text(e.to_string()),
            AuthorError::Io(_) => Reply::QUEUE_FAILED,
            _ => Reply::BAD_AUTHOR_HEADER.with_text(e.to_string()),
        }
    }
}

/// Checks every mailbox of the `From:` and `Sender:` fields of `body` (a
/// whole message) against [`may_use`]. Returns the `From:` addresses.
pub async fn check_message(
    config: &Config,
    sender: Sender<'_>,
    body: &Body,
) -> Result<Vec<Address>, AuthorError> {
    let reader = body.reader()?;
    // A spilled body is read from its file: off the async threads.
    let section = tokio::task::spawn_blocking(move || read_header_section(reader))
        .await
        .map_err(|e| AuthorError::Io(std::io::Error::other(e)))??;
    check_authors(config, sender, &section)
}

/// [`check_message`] on a header section.
pub fn check_authors(
    config: &Config,
    sender: Sender<'_>,
    section: &[u8],
) -> Result<Vec<Address>, AuthorError> {
    let fields = message::fields(section);
    let from = field_addresses(&fields, "From")?;
    let Some(from) = from else {
        return Err(AuthorError::NoFrom);
    };
    if from.is_empty() {
        return Err(AuthorError::NoMailbox);
    }
    let sender_field = field_addresses(&fields, "Sender")?.unwrap_or_default();
    for (field, address) in from
        .iter()
        .map(|a| ("From", a))
        .chain(sender_field.iter().map(|a| ("Sender", a)))
    {
        if !may_use(config, sender, Some(address)) {
            return Err(AuthorError::NotAllowed {
                field,
                address: address.to_string(),
                sender: sender.to_string(),
            });
        }
    }
    Ok(from)
}

/// The addresses of the one field called `name`; `None` when there is none.
fn field_addresses(
    fields: &[message::Field<'_>],
    name: &'static str,
) -> Result<Option<Vec<Address>>, AuthorError> {
    let mut found = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()));
    let field = match (found.next(), found.count()) {
        (None, _) => return Ok(None),
        (Some(field), 0) => field,
        (Some(_), more) => {
            return Err(AuthorError::Repeated {
                field: name,
                count: more + 1,
            })
        }
    };
    let unreadable = AuthorError::Unreadable { field: name };
    let Some(texts) = message::mailboxes(field.value) else {
        return Err(unreadable);
    };
    texts
        .iter()
        .map(|t| Address::parse(t).map_err(|_| AuthorError::Unreadable { field: name }))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The header section of a message read from `reader`, at most
/// [`crate::dkim::MAX_HEADER_SECTION`] bytes.
fn read_header_section(mut reader: impl std::io::Read) -> Result<Vec<u8>, AuthorError> {
    let limit = crate::dkim::MAX_HEADER_SECTION;
    let mut bytes = Vec::with_capacity(8192);
    let mut buf = [0u8; 8192];
    loop {
        let section = message::header_section(&bytes).len();
        if section < bytes.len() || bytes.starts_with(b"\r\n") {
            bytes.truncate(section);
            return Ok(bytes);
        }
        if bytes.len() > limit {
            return Err(AuthorError::HeaderTooLarge);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        bytes.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        Config::parse(
            r#"
hostname = "mx.example.org"
data_dir = "/tmp/tern-test"
domains = ["example.org", "example.net"]
[[listener]]
address = "127.0.0.1:2525"
role = "mx"
[[user]]
name = "alice"
[[user]]
name = "bob"
send_as = ["shared@example.org", "@example.net"]
[aliases]
"info@example.org" = "bob"
[local_senders]
"www-data" = "noreply@example.org"
"#,
            Path::new("test.toml"),
        )
        .unwrap()
    }

    fn check(sender: Sender<'_>, section: &str) -> Result<Vec<Address>, AuthorError> {
        check_authors(&config(), sender, section.as_bytes())
    }

    fn refused(sender: Sender<'_>, section: &str) -> String {
        match check(sender, section) {
            Ok(from) => panic!("accepted {from:?}: {section}"),
            Err(e) => e.to_string(),
        }
    }

    const BOB: Sender<'static> = Sender::Login("bob");

    #[test]
    fn own_addresses_aliases_and_send_as_pass() {
        for from in [
            "From: Bob <bob@example.org>\r\n",
            "From: \"Bob B.\" <Bob+lists@Example.NET>\r\n",
            "From: info@example.org (the alias)\r\n",
            "From: =?utf-8?q?B=C3=B6b?= <bob@example.org>\r\n",
            "From: shared+x@example.org\r\n",
            "From: anyone@example.net\r\n",
            "From: team: bob@example.org, shared@example.org;\r\n",
            "from: bob@example.org, info@example.org\r\nSender: bob@example.org\r\n",
        ] {
            let got = check(BOB, &format!("To: x@y.example\r\n{from}Subject: s\r\n"));
            assert!(got.is_ok(), "{from}: {got:?}");
        }
        let got = check(BOB, "From: Bob <BOB@example.org>\r\n").unwrap();
        assert_eq!(got[0].to_string(), "BOB@example.org");
    }

    #[test]
    fn foreign_addresses_are_named() {
        assert_eq!(
            refused(BOB, "From: Alice <alice@example.org>\r\n"),
            "From: address <alice@example.org> is not one that user bob may send as"
        );
        assert_eq!(
            refused(Sender::Login("alice"), "From: anyone@example.net\r\n"),
            "From: address <anyone@example.net> is not one that user alice may send as"
        );
        assert_eq!(
            refused(
                BOB,
                "From: bob@example.org\r\nSender: alice@example.org\r\n"
            ),
            "Sender: address <alice@example.org> is not one that user bob may send as"
        );
        for from in [
            "From: bob@example.org, alice@example.org\r\n",
            "From: ok: bob@example.org;, alice@example.org\r\n",
            "From: bob@elsewhere.example\r\n",
            "From: \"bob@example.org\" <alice@example.org>\r\n",
        ] {
            assert!(
                refused(BOB, from).contains("not one that user bob"),
                "{from}"
            );
        }
    }

    #[test]
    fn missing_repeated_or_unreadable_headers_are_refused() {
        assert_eq!(
            refused(BOB, "Subject: no author\r\n"),
            "the message has no From: header field; add one with your address"
        );
        assert_eq!(
            refused(BOB, "From: bob@example.org\r\nFROM: alice@example.org\r\n"),
            "the message has 2 From: header fields; RFC 5322 allows one"
        );
        assert!(refused(
            BOB,
            "From: bob@example.org\r\nSender: bob@example.org\r\nSender: bob@example.org\r\n"
        )
        .contains("2 Sender: header fields"));
        assert_eq!(
            refused(BOB, "From: undisclosed:;\r\n"),
            "the From: header field names no mailbox"
        );
        for from in [
            "From: bob@example.org <alice@example.org>\r\n",
            "From: Bob bob@example.org\r\n",
            "From: <bob@example.org\r\n",
            "From: (bob@example.org\r\n",
            "From: bob@[127.0.0.1]\r\n",
        ] {
            assert_eq!(
                refused(BOB, from),
                "the From: header field is not a list of mailboxes that can be read",
                "{from}"
            );
        }
    }

    #[test]
    fn replies_after_data() {
        let e = check(BOB, "From: alice@example.org\r\n").unwrap_err();
        let reply = Reply::from(&e);
        assert_eq!(reply.to_string(), format!("550 5.7.1 {e}"));
        let reply = Reply::from(&AuthorError::NoFrom);
        assert_eq!(
            reply.to_string(),
            "550 5.6.0 the message has no From: header field; add one with your address"
        );
    }

    #[test]
    fn local_users_get_their_login_at_the_hostname_and_their_mapping() {
        let c = config();
        let addr = |s: &str| Address::parse(s).unwrap();
        let www = Sender::Local("www-data");
        assert!(may_use(&c, www, Some(&addr("www-data@mx.example.org"))));
        assert!(may_use(&c, www, Some(&addr("noreply@example.org"))));
        assert!(!may_use(&c, www, None), "no null sender");
        assert!(!may_use(&c, www, Some(&addr("bob@example.org"))));
        assert!(!may_use(
            &c,
            Sender::Local("nobody"),
            Some(&addr("noreply@example.org"))
        ));
        assert!(!may_use(
            &c,
            Sender::Local("nobody"),
            Some(&addr("www-data@mx.example.org"))
        ));
        assert!(local_mapped(&c, "www-data", &addr("NoReply@example.org")));
        assert!(!local_mapped(
            &c,
            "www-data",
            &addr("www-data@mx.example.org")
        ));
        assert!(refused(www, "From: Web <bob@example.org>\r\n").contains("Unix user www-data"));
        assert!(check(www, "From: Web <noreply@example.org>\r\n").is_ok());
        // A login's MAIL FROM: owned, send_as, or the null sender.
        assert!(may_use(&c, BOB, None));
        assert!(may_use(&c, BOB, Some(&addr("shared@example.org"))));
        assert!(!may_use(
            &c,
            Sender::Login("alice"),
            Some(&addr("shared@example.org"))
        ));
    }

    #[test]
    fn the_header_section_is_read_up_to_the_empty_line_or_the_limit() {
        let got = read_header_section(&b"From: a@b.example\r\n\r\nFrom: body@x\r\n"[..]).unwrap();
        assert_eq!(got, b"From: a@b.example\r\n");
        assert_eq!(read_header_section(&b"\r\nbody"[..]).unwrap(), b"");
        assert_eq!(read_header_section(&b"A: 1\r\n"[..]).unwrap(), b"A: 1\r\n");
        let huge = format!(
            "X: {}\r\n",
            "y".repeat(crate::dkim::MAX_HEADER_SECTION + 10)
        );
        assert!(matches!(
            read_header_section(huge.as_bytes()),
            Err(AuthorError::HeaderTooLarge)
        ));
    }
}
