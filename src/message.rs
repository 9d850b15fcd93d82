//! The header section of a message (RFC 5322): its fields ([`fields`]), the
//! domain of the one author in `From:` ([`author_domain`], for DKIM), the
//! mailboxes of `From:` and `Sender:` ([`mailboxes`], for the sender rules),
//! and the addresses of an address-list field ([`addresses`], for `sendmail -t`),
//! parsed by the §3.4 grammar with comments, quoted strings, display names,
//! groups and folding. Pure functions over bytes.

/// One header field: the name as written and the raw value after the colon,
/// continuation lines and the final CRLF included (what relaxed
/// canonicalization, RFC 6376 §3.4.2, works on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The fields of `section` (the header section, up to and including the
/// CRLF of its last line) in order.
///
/// A field starts on a line whose text before the first colon is a field
/// name (RFC 5322 §3.6.8: printable ASCII, no space); lines starting with
/// a space or tab continue it (§2.2.3). Any other line is not a field and is
/// skipped: it cannot be one of the fields we sign.
pub fn fields(section: &[u8]) -> Vec<Field<'_>> {
    let mut result: Vec<Field<'_>> = Vec::new();
    // The field being read: (name, start of value) and where its text ends.
    let mut current: Option<(&[u8], usize)> = None;
    let mut end = 0;
    let mut pos = 0;
    while pos < section.len() {
        let line_end = match section[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => section.len(),
        };
        let line = &section[pos..line_end];
        if matches!(line.first(), Some(b' ' | b'\t')) && current.is_some() {
            end = line_end;
        } else {
            if let Some((name, start)) = current.take() {
                result.push(Field {
                    name,
                    value: &section[start..end],
                });
            }
            if let Some(name) = field_name(line) {
                current = Some((name, pos + name.len() + 1));
                end = line_end;
            }
        }
        pos = line_end;
    }
    if let Some((name, start)) = current {
        result.push(Field {
            name,
            value: &section[start..end],
        });
    }
    result
}

/// Why a message has no author domain to sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAuthor {
    /// No `From:` field at all.
    Missing,
    /// More than one `From:` field (RFC 5322 §3.6 allows exactly one).
    Repeated(usize),
    /// `From:` names no mailbox, several, a group, or is not valid syntax.
    Unparseable,
}

impl std::fmt::Display for NoAuthor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAuthor::Missing => write!(f, "the message has no From: header"),
            NoAuthor::Repeated(n) => write!(f, "the message has {n} From: headers"),
            NoAuthor::Unparseable => write!(f, "its From: header is not one parseable mailbox"),
        }
    }
}

/// The domain (lowercase) of the single mailbox in the single `From:` field.
pub fn author_domain(fields: &[Field<'_>]) -> Result<String, NoAuthor> {
    let mut from = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"From"));
    let field = match (from.next(), from.count()) {
        (None, _) => return Err(NoAuthor::Missing),
        (Some(field), 0) => field,
        (Some(_), more) => return Err(NoAuthor::Repeated(more + 1)),
    };
    mailbox_domain(field.value).ok_or(NoAuthor::Unparseable)
}

/// The header section of `message`: up to and including the CRLF (or LF)
/// that ends its last line, before the empty line; all of it when there is no
/// body.
/// The name of the header field `line` starts, if it starts one: printable
/// ASCII up to a colon (RFC 5322 §2.2).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| (0x21..=0x7e).contains(&b))).then_some(name)
}

/// How many leading bytes of `message` are header fields: up to the empty
/// line, or up to the first line that is neither a field nor the
/// continuation of one (what a program wrote as its first body line without
/// the empty line before it).
pub fn header_fields_len(message: &[u8]) -> usize {
    let mut pos = 0;
    let mut in_field = false;
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        let continues = in_field && matches!(line.first(), Some(b' ' | b'\t'));
        if !continues && field_name(line).is_none() {
            return pos;
        }
        in_field = true;
        pos = line_end;
    }
    pos
}

pub fn header_section(message: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            return &message[..pos];
        }
        pos = line_end;
    }
    message
}

/// The addresses (`local@domain`, as written, quotes kept) of an address-list
/// field value such as `To:` or `Cc:` (RFC 5322 §3.4 `address-list`): plain
/// addresses, `Name <addr>`, groups (`friends: a@x, b@y;`, the empty
/// `undisclosed-recipients:;`). `None` when the value is not valid syntax.
pub fn addresses(value: &[u8]) -> Option<Vec<String>> {
    let tokens = tokens(value)?;
    let mut result = Vec::new();
    // Group names and their ':' and ';' only frame the addresses inside.
    let mut mailbox: Vec<Token<'_>> = Vec::new();
    let flush = |mailbox: &mut Vec<Token<'_>>, result: &mut Vec<String>| -> Option<()> {
        if mailbox.is_empty() {
            return Some(());
        }
        result.push(addr_spec_text(mailbox)?);
        mailbox.clear();
        Some(())
    };
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Special(b',') | Token::Special(b';') => flush(&mut mailbox, &mut result)?,
            Token::Special(b':') if !mailbox.contains(&Token::Special(b'<')) => {
                // A group's display name ends here.
                mailbox.clear();
            }
            ref t => mailbox.push(t.clone()),
        }
        i += 1;
    }
    flush(&mut mailbox, &mut result)?;
    Some(result)
}

/// The addr-spec of one mailbox's tokens (`[display] <addr>` or `addr`).
fn addr_spec_text(mailbox: &[Token<'_>]) -> Option<String> {
    let spec = match mailbox.iter().position(|t| *t == Token::Special(b'<')) {
        Some(open) => {
            let close = mailbox.iter().position(|t| *t == Token::Special(b'>'))?;
            if close < open {
                return None;
            }
            &mailbox[open + 1..close]
        }
        None => mailbox,
    };
    let mut text = Vec::new();
    for t in spec {
        match t {
            Token::Atom(a) => text.extend_from_slice(a),
            Token::Quoted(q) => {
                text.push(b'"');
                text.extend_from_slice(q);
                text.push(b'"');
            }
            Token::Literal(l) => {
                text.push(b'[');
                text.extend_from_slice(l);
                text.push(b']');
            }
            Token::Special(b'@') => text.push(b'@'),
            Token::Special(_) => return None,
        }
    }
    // `local@domain`: something on both sides of the last `@`.
    match text.iter().rposition(|&b| b == b'@') {
        Some(at) if at > 0 && at + 1 < text.len() => {}
        _ => return None,
    }
    String::from_utf8(text).ok()
}

/// The lexical tokens of an address header, comments and white space dropped
/// (RFC 5322 §3.2.2 CFWS).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A run of `atext` and dots: an atom, a dot-atom, or part of an
    /// obsolete one (`john . doe`). Bytes above 127 count as `atext`
    /// (RFC 6532 §3.2, UTF-8 headers).
    Atom(&'a [u8]),
    /// The contents of a quoted string, quoted-pairs still escaped.
    Quoted(&'a [u8]),
    /// `[...]`, a domain literal.
    Literal(&'a [u8]),
    /// One of `< > @ , : ;` (and `(`, `)`, `[`, `]`, `\`, `"` when they
    /// stand unmatched, which makes the header unparseable).
    Special(u8),
}

/// Splits a header value into tokens; `None` when a comment, quoted string or
/// domain literal is left open.
fn tokens(value: &[u8]) -> Option<Vec<Token<'_>>> {
    let mut result = Vec::new();
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => i = skip_comment(value, i)?,
            b'"' => {
                let start = i + 1;
                i = start;
                loop {
                    match value.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                result.push(Token::Quoted(&value[start..i]));
                i += 1;
            }
            b'[' => {
                let start = i + 1;
                i = start;
                loop {
                    match value.get(i)? {
                        b'\\' => i += 2,
                        b']' => break,
                        b'[' => return None,
                        _ => i += 1,
                    }
                }
                result.push(Token::Literal(&value[start..i]));
                i += 1;
            }
            b if is_atom_byte(b) => {
                let start = i;
                while i < value.len() && is_atom_byte(value[i]) {
                    i += 1;
                }
                result.push(Token::Atom(&value[start..i]));
            }
            other => {
                result.push(Token::Special(other));
                i += 1;
            }
        }
    }
    Some(result)
}

/// `atext` (RFC 5322 §3.2.3), `.`, and UTF-8 bytes.
fn is_atom_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

/// The index after the comment that opens at `start` (comments nest,
/// RFC 5322 §3.2.2); `None` if it never closes.
fn skip_comment(value: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match value.get(i)? {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The domain of the one mailbox (RFC 5322 §3.4 `mailbox`) that `value`
/// holds: `addr-spec`, or `[display-name] <addr-spec>`. `None` for anything
/// else: no mailbox, a list of several, a group, a source route.
fn mailbox_domain(value: &[u8]) -> Option<String> {
    let tokens = tokens(value)?;
    // obs-mbox-list (RFC 5322 §4.4) allows empty list elements: ", a@b,".
    let mut mailboxes = tokens
        .split(|t| *t == Token::Special(b','))
        .filter(|m| !m.is_empty());
    let (Some(mailbox), None) = (mailboxes.next(), mailboxes.next()) else {
        return None;
    };
    mailbox_parts(mailbox).map(|(_, domain)| domain)
}

/// The addresses (`local@domain`, the domain lowercase, quotes of the local
/// part kept) of every mailbox in `value`, the value of a `From:` or
/// `Sender:` field: a mailbox list (RFC 5322 §3.6.2), also with groups
/// (`team: a@x, b@y;`, which RFC 6854 allows in `From:`). Stricter than
/// [`addresses`]: every element must be a well-formed mailbox, display name
/// words before `<addr-spec>` and nothing after it, so that the addresses a
/// reader's program shows are exactly the ones returned. `None` when one is
/// not, or a group is left open. An empty group gives no address.
pub fn mailboxes(value: &[u8]) -> Option<Vec<String>> {
    let tokens = tokens(value)?;
    let mut result = Vec::new();
    let mut current: Vec<Token<'_>> = Vec::new();
    let mut in_group = false;
    let flush = |current: &mut Vec<Token<'_>>, result: &mut Vec<String>| -> Option<()> {
        // obs-mbox-list (RFC 5322 §4.4) allows empty list elements.
        if !current.is_empty() {
            let (local, domain) = mailbox_parts(current)?;
            result.push(format!("{}@{domain}", local_text(local)));
            current.clear();
        }
        Some(())
    };
    for token in tokens {
        match token {
            Token::Special(b',') => flush(&mut current, &mut result)?,
            Token::Special(b':') if !in_group && !current.contains(&Token::Special(b'<')) => {
                // The display name of a group: words only.
                let words = |t: &Token<'_>| matches!(t, Token::Atom(_) | Token::Quoted(_));
                if current.is_empty() || !current.iter().all(words) {
                    return None;
                }
                current.clear();
                in_group = true;
            }
            Token::Special(b';') if in_group => {
                flush(&mut current, &mut result)?;
                in_group = false;
            }
            t => current.push(t),
        }
    }
    flush(&mut current, &mut result)?;
    (!in_group).then_some(result)
}

/// The local part's tokens and the domain (lowercase) of one mailbox's
/// tokens: `addr-spec`, or `[display-name] <addr-spec>` with nothing after
/// the `>`.
fn mailbox_parts<'t>(mailbox: &'t [Token<'t>]) -> Option<(&'t [Token<'t>], String)> {
    let addr_spec = match mailbox.iter().position(|t| *t == Token::Special(b'<')) {
        Some(open) => {
            let close = mailbox.iter().position(|t| *t == Token::Special(b'>'))?;
            let display = &mailbox[..open];
            let words = |t: &Token<'_>| matches!(t, Token::Atom(_) | Token::Quoted(_));
            if close != mailbox.len() - 1 || close < open || !display.iter().all(words) {
                return None;
            }
            &mailbox[open + 1..close]
        }
        None => mailbox,
    };
    let at = addr_spec.iter().position(|t| *t == Token::Special(b'@'))?;
    let (local, domain) = (&addr_spec[..at], &addr_spec[at + 1..]);
    if !local_part_ok(local) {
        return None;
    }
    Some((local, domain_text(domain)?))
}

/// A local part's text: its words joined, quoted strings in their quotes.
fn local_text(local: &[Token<'_>]) -> String {
    let mut text = Vec::new();
    for token in local {
        match token {
            Token::Atom(a) => text.extend_from_slice(a),
            Token::Quoted(q) => {
                text.push(b'"');
                text.extend_from_slice(q);
                text.push(b'"');
            }
            // local_part_ok admits words only.
            Token::Literal(_) | Token::Special(_) => {}
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// A local part: words (atoms or quoted strings) joined by dots, white space
/// or comments around the dots allowed (RFC 5322 §4.4 `obs-local-part`).
fn local_part_ok(local: &[Token<'_>]) -> bool {
    let words = |t: &Token<'_>| matches!(t, Token::Atom(_) | Token::Quoted(_));
    let dotted = |pair: &[Token<'_>]| match pair {
        [Token::Atom(a), _] if a.ends_with(b".") => true,
        [_, Token::Atom(b)] if b.starts_with(b".") => true,
        _ => false,
    };
    !local.is_empty() && local.iter().all(words) && local.windows(2).all(dotted)
}

/// The domain of an `addr-spec`, lowercase: a dot-atom (atoms separated by
/// folding white space or comments, RFC 5322 §4.4 `obs-domain`, are joined).
/// A domain literal is never one of our domains: `None`.
fn domain_text(tokens: &[Token<'_>]) -> Option<String> {
    let mut domain = Vec::new();
    for token in tokens {
        match token {
            Token::Atom(atom) => domain.extend_from_slice(atom),
            _ => return None,
        }
    }
    if domain.is_empty() || domain.starts_with(b".") || domain.ends_with(b".") {
        return None;
    }
    if domain.windows(2).any(|w| w == b"..") {
        return None;
    }
    String::from_utf8(domain)
        .ok()
        .map(|d| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        let got = addresses(
            b" Alice <alice@example.org>, bob@example.net (Bob),\r\n\t\"C, D\" <c.d@x.example>\r\n",
        );
        assert_eq!(
            got.unwrap(),
            ["alice@example.org", "bob@example.net", "c.d@x.example"]
        );
        let got = addresses(b" friends: a@x.example, b@y.example;, z@z.example").unwrap();
        assert_eq!(got, ["a@x.example", "b@y.example", "z@z.example"]);
        assert_eq!(
            addresses(b" undisclosed-recipients:;").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            addresses(b" \"odd one\"@x.example").unwrap(),
            ["\"odd one\"@x.example"]
        );
        assert_eq!(addresses(b" not an address"), None);
        assert_eq!(addresses(b" <unclosed@x.example"), None);
        // Found by the fuzzer (fuzz/regressions/message_header/): an
        // addr-spec needs a local part and a domain.
        assert_eq!(addresses(b"Me <me@>"), None);
        assert_eq!(addresses(b"me@, a@x.example"), None);
        assert_eq!(addresses(b"@x.example"), None);
    }

    #[test]
    fn header_sections() {
        assert_eq!(
            header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody\n"), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    }

    fn domain_of(from: &str) -> Option<String> {
        mailbox_domain(format!("{from}\r\n").as_bytes())
    }

    #[test]
    fn fields_keep_folding_and_final_crlf() {
        let section = b"From: a@example.org\r\nSubject: one\r\n two\r\n\tthree\r\nX:\r\n";
        let got = fields(section);
        assert_eq!(
            got,
            [
                Field {
                    name: b"From",
                    value: b" a@example.org\r\n"
                },
                Field {
                    name: b"Subject",
                    value: b" one\r\n two\r\n\tthree\r\n"
                },
                Field {
                    name: b"X",
                    value: b"\r\n"
                },
            ]
        );
    }

    #[test]
    fn lines_that_are_not_fields_are_skipped() {
        let section = b" orphan continuation\r\nnot a field\r\nFrom : x@y\r\nTo: b@c\r\n";
        let got = fields(section);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, b"To");
    }

    #[test]
    fn plain_and_named_mailboxes() {
        for from in [
            "alice@example.org",
            "Alice@EXAMPLE.Org",
            "<alice@example.org>",
            "Alice <alice@example.org>",
            "\"Alice, the \\\"first\\\"\" <alice@example.org>",
            "Alice (work) <alice@example.org> (sent from my phone)",
            "(comment (nested) here) alice@example.org",
            "alice@example.org (Alice Liddell)",
            "Alice\r\n\t<alice@example.org>",
            "=?utf-8?q?Al=C3=ADce?= <alice@example.org>",
            "Alíce Ünïcode <alice@example.org>",
            "\"alice smith\"@example.org",
            "\"alice\".smith@example.org",
            "alice . smith@example.org",
            "alice@ example . org",
            "John Q. Public <alice@example.org>",
            ", alice@example.org ,",
        ] {
            assert_eq!(domain_of(from).as_deref(), Some("example.org"), "{from}");
        }
    }

    #[test]
    fn anything_but_one_mailbox_has_no_domain() {
        for from in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.org",
            "alice@example.org, bob@example.org",
            "Alice <alice@example.org>, Bob <bob@example.org>",
            "friends: alice@example.org;",
            "undisclosed-recipients:;",
            "Alice <alice@example.org",
            "Alice alice@example.org>",
            "<alice@example.org> Alice",
            "alice@[192.0.2.1]",
            "<@relay.example:alice@example.org>",
            "(unclosed comment alice@example.org",
            "\"unclosed alice@example.org",
            "alice@example..org",
            "Alice alice@example.org",
            "\"Alice\" alice@example.org",
            "alice@.example.org",
            "a@b@example.org",
        ] {
            assert_eq!(domain_of(from), None, "{from}");
        }
    }

    #[test]
    fn mailbox_lists_with_groups_comments_and_encoded_words() {
        let got = |v: &str| mailboxes(format!("{v}\r\n").as_bytes());
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            got(" Alice (work) <alice@Example.ORG>, bob@example.org (Bob)"),
            list(&["alice@example.org", "bob@example.org"])
        );
        assert_eq!(
            got(" =?utf-8?q?Al=C3=ADce?= <alice@example.org>"),
            list(&["alice@example.org"])
        );
        assert_eq!(
            got(" team: a@example.org, B <b@example.net>;, c@example.org"),
            list(&["a@example.org", "b@example.net", "c@example.org"])
        );
        assert_eq!(got(" undisclosed-recipients:;"), list(&[]));
        assert_eq!(
            got(" \"odd one\"@example.org, alice . smith@example.org"),
            list(&["\"odd one\"@example.org", "alice.smith@example.org"])
        );
        assert_eq!(got(" ,alice@example.org,"), list(&["alice@example.org"]));
        for bad in [
            " not an address",
            " team: a@example.org",
            " bob@example.org <alice@example.org>",
            " <alice@example.org> bob@example.org",
            " Alice alice@example.org",
            " a@example.org; b@example.org",
            " x: y: a@example.org;;",
            " <@relay.example:alice@example.org>",
            " alice@[192.0.2.1]",
            " (open comment alice@example.org",
        ] {
            assert_eq!(got(bad), None, "{bad}");
        }
    }

    #[test]
    fn exactly_one_from_field() {
        let one = fields(b"To: b@c\r\nfrom: Alice <alice@Example.org>\r\n");
        assert_eq!(author_domain(&one), Ok("example.org".into()));
        let none = fields(b"To: b@c\r\n");
        assert_eq!(author_domain(&none), Err(NoAuthor::Missing));
        let two = fields(b"From: a@example.org\r\nFrom: b@example.org\r\n");
        assert_eq!(author_domain(&two), Err(NoAuthor::Repeated(2)));
        let bad = fields(b"From: a@example.org, b@example.org\r\n");
        assert_eq!(author_domain(&bad), Err(NoAuthor::Unparseable));
    }
}
