//! Envelope addresses: the `Path` grammar of RFC 5321 §4.1.2 (with the UTF-8
//! extension of RFC 6531 §3.3), parsed strictly. What this parser decides is what
//! relay control sees, so it never guesses: `%`, `!` and quoted local parts stay
//! part of the local part, source routes are dropped (§C of RFC 5321), and an IP
//! literal is a [`Domain::Literal`], never one of our domain names.

use std::fmt;

/// A mailbox `local@domain`. The domain is lowercased (ASCII) at parse time; the
/// local part is kept exactly as sent, minus quoting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// The local part, unquoted (`"a b"@x` → `a b`).
    pub local: String,
    pub domain: Domain,
}

/// The part after `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// A host name, lowercase, without trailing dot.
    Name(String),
    /// An address literal, the text between the brackets (`127.0.0.1`, `IPv6:::1`).
    Literal(String),
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must be enclosed in <>")]
    MissingBrackets,
    #[error("bad address syntax")]
    Syntax,
    #[error("address too long")]
    TooLong,
}

/// RFC 5321 §4.5.3.1: size limits of the parts of a path.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;
const MAX_PATH: usize = 256;

impl Address {
    /// Parses a bare mailbox `local@domain` (no brackets).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let (local, rest) = parse_local_part(s)?;
        let domain_text = rest.strip_prefix('@').ok_or(AddressError::Syntax)?;
        let domain = parse_domain_or_literal(domain_text)?;
        if local.len() > MAX_LOCAL {
            return Err(AddressError::TooLong);
        }
        Ok(Address { local, domain })
    }

    /// True when every character is ASCII (else SMTPUTF8 is needed, RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_str().is_ascii()
    }

    /// Would the local part need quoting to be sent on the wire?
    fn local_needs_quotes(&self) -> bool {
        !is_dot_string(&self.local)
    }
}

impl Domain {
    /// The text form (for a literal, without brackets).
    pub fn as_str(&self) -> &str {
        match self {
            Domain::Name(n) | Domain::Literal(n) => n,
        }
    }

    /// The host name, or `None` for an address literal.
    pub fn name(&self) -> Option<&str> {
        match self {
            Domain::Name(n) => Some(n),
            Domain::Literal(_) => None,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(l) => write!(f, "[{l}]"),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.local_needs_quotes() {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        write!(f, "@{}", self.domain)
    }
}

/// A parsed `<path>` argument of MAIL or RCPT, and the text after it (the
/// ESMTP parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPath<'a> {
    /// `None` for the null path `<>`.
    pub address: Option<Address>,
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3).
    pub bare_postmaster: bool,
    pub params: &'a str,
}

/// Parses `<...>` at the start of `s` (leading spaces allowed, as many clients
/// send `MAIL FROM: <a@b>`), then returns the rest.
pub fn parse_path(s: &str) -> Result<ParsedPath<'_>, AddressError> {
    let s = s.trim_start_matches(' ');
    let inner_start = s.strip_prefix('<').ok_or(AddressError::MissingBrackets)?;
    let end = find_closing_bracket(inner_start).ok_or(AddressError::Syntax)?;
    let inner = &inner_start[..end];
    let rest = &inner_start[end + 1..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return Err(AddressError::Syntax);
    }
    if inner.len() + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    let params = rest.trim_start_matches(' ');
    if inner.is_empty() {
        return Ok(ParsedPath {
            address: None,
            bare_postmaster: false,
            params,
        });
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ParsedPath {
            address: None,
            bare_postmaster: true,
            params,
        });
    }
    let mailbox = strip_source_route(inner)?;
    let address = Address::parse(mailbox)?;
    Ok(ParsedPath {
        address: Some(address),
        bare_postmaster: false,
        params,
    })
}

/// The index of the `>` that closes the path, skipping quoted strings.
fn find_closing_bracket(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// RFC 5321 §4.1.2 `A-d-l ":"`: `@a.example,@b.example:user@c.example`. The route
/// must be well formed and is then ignored (RFC 5321 Appendix C).
fn strip_source_route(s: &str) -> Result<&str, AddressError> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    let colon = s.find(':').ok_or(AddressError::Syntax)?;
    for hop in s[..colon].split(',') {
        let hop = hop.strip_prefix('@').ok_or(AddressError::Syntax)?;
        parse_domain_or_literal(hop)?;
    }
    Ok(&s[colon + 1..])
}

/// `Local-part` and the rest of the string (starting at `@`).
fn parse_local_part(s: &str) -> Result<(String, &str), AddressError> {
    if let Some(q) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((local, &q[i + 1..])),
                '\\' => {
                    let (_, next) = chars.next().ok_or(AddressError::Syntax)?;
                    if !(' '..='~').contains(&next) {
                        return Err(AddressError::Syntax);
                    }
                    local.push(next);
                }
                c if is_qtext(c) => local.push(c),
                _ => return Err(AddressError::Syntax),
            }
        }
        return Err(AddressError::Syntax);
    }
    let at = s.rfind('@').ok_or(AddressError::Syntax)?;
    let local = &s[..at];
    if !is_dot_string(local) {
        return Err(AddressError::Syntax);
    }
    Ok((local.to_string(), &s[at..]))
}

/// RFC 5321 `qtextSMTP` (plus UTF-8, RFC 6531).
fn is_qtext(c: char) -> bool {
    matches!(c, ' '..='!' | '#'..='[' | ']'..='~') || !c.is_ascii()
}

/// RFC 5322 `atext` (plus UTF-8, RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// `Dot-string = Atom *("." Atom)`.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn parse_domain_or_literal(s: &str) -> Result<Domain, AddressError> {
    if let Some(lit) = s.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddressError::Syntax)?;
        return parse_address_literal(lit).map(Domain::Literal);
    }
    parse_domain(s).map(Domain::Name)
}

/// A host name (RFC 5321 `Domain`, with U-labels per RFC 6531), lowercased.
pub fn parse_domain(s: &str) -> Result<String, AddressError> {
    // The lowercase form is what is kept (and written to the spool, to be
    // parsed again at recovery), so it is the one checked: lowercasing can
    // lengthen a name or add a character no label may hold ('İ' → "i̇").
    let s = s.to_lowercase();
    if s.is_empty() {
        return Err(AddressError::Syntax);
    }
    if s.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
            });
        if !ok {
            return Err(AddressError::Syntax);
        }
    }
    Ok(s)
}

/// RFC 5321 §4.1.3 address literals: IPv4, `IPv6:` and the general form.
fn parse_address_literal(s: &str) -> Result<String, AddressError> {
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(s.to_string());
    }
    if let Some(v6) = s
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &s[5..])
    {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| format!("IPv6:{v6}"))
            .map_err(|_| AddressError::Syntax);
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    let (tag, content) = s.split_once(':').ok_or(AddressError::Syntax)?;
    let tag_ok = !tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let content_ok =
        !content.is_empty() && content.chars().all(|c| matches!(c, '!'..='Z' | '^'..='~'));
    if tag_ok && content_ok {
        Ok(s.to_string())
    } else {
        Err(AddressError::Syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        parse_path(s).unwrap().address.unwrap()
    }

    #[test]
    fn plain_mailbox() {
        let a = addr("<Alice@Example.ORG>");
        assert_eq!(a.local, "Alice");
        assert_eq!(a.domain, Domain::Name("example.org".into()));
        assert_eq!(a.to_string(), "Alice@example.org");
    }

    #[test]
    fn null_path_and_params() {
        let p = parse_path("<> SIZE=100 BODY=8BITMIME").unwrap();
        assert_eq!(p.address, None);
        assert!(!p.bare_postmaster);
        assert_eq!(p.params, "SIZE=100 BODY=8BITMIME");
    }

    #[test]
    fn bare_postmaster() {
        let p = parse_path("<postMaster>").unwrap();
        assert!(p.bare_postmaster);
    }

    #[test]
    fn space_after_colon_is_tolerated_but_brackets_are_required() {
        assert!(parse_path(" <a@b.example>").is_ok());
        assert_eq!(
            parse_path("a@b.example"),
            Err(AddressError::MissingBrackets)
        );
    }

    #[test]
    fn percent_and_bang_stay_in_the_local_part() {
        let a = addr("<victim%remote.example@local.example>");
        assert_eq!(a.local, "victim%remote.example");
        assert_eq!(a.domain.as_str(), "local.example");
        let a = addr("<remote.example!victim@local.example>");
        assert_eq!(a.local, "remote.example!victim");
        assert_eq!(a.domain.as_str(), "local.example");
    }

    #[test]
    fn source_route_is_dropped_and_the_real_domain_kept() {
        let a = addr("<@local.example,@other.example:victim@remote.example>");
        assert_eq!(a.local, "victim");
        assert_eq!(a.domain.as_str(), "remote.example");
        assert!(parse_path("<@local.example:>").is_err());
        assert!(parse_path("<@bad..domain:a@b.example>").is_err());
    }

    #[test]
    fn quoted_local_part_keeps_its_at_sign() {
        let a = addr("<\"victim@remote.example\"@local.example>");
        assert_eq!(a.local, "victim@remote.example");
        assert_eq!(a.domain.as_str(), "local.example");
        assert_eq!(a.to_string(), "\"victim@remote.example\"@local.example");
        let a = addr("<\"a\\\"b\"@x.example>");
        assert_eq!(a.local, "a\"b");
    }

    #[test]
    fn closing_bracket_inside_quotes_does_not_end_the_path() {
        let a = addr("<\"a>b\"@x.example> SIZE=1");
        assert_eq!(a.local, "a>b");
    }

    #[test]
    fn literals() {
        let a = addr("<root@[127.0.0.1]>");
        assert_eq!(a.domain, Domain::Literal("127.0.0.1".into()));
        assert_eq!(a.domain.name(), None);
        let a = addr("<root@[IPv6:::1]>");
        assert_eq!(a.domain, Domain::Literal("IPv6:::1".into()));
        assert!(parse_path("<root@[999.1.1.1]>").is_err());
        assert!(parse_path("<root@[IPv6:zz]>").is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "<a@>",
            "<@b.example>",
            "<a@b.example",
            "<a@b..example>",
            "<a@-b.example>",
            "<a@b.example.>",
            "<a b@c.example>",
            "<a@b@c.example>",
            "<.a@b.example>",
            "<a.@b.example>",
            "<a..b@c.example>",
            "<a@b.example>x",
            "<\"unterminated@b.example>",
            "<a@b_c.example>",
        ] {
            assert!(parse_path(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn length_limits() {
        let long_local = format!("<{}@b.example>", "a".repeat(65));
        assert_eq!(parse_path(&long_local), Err(AddressError::TooLong));
        let long_path = format!("<a@{}.example>", "b.".repeat(130));
        assert_eq!(parse_path(&long_path), Err(AddressError::TooLong));
    }

    #[test]
    fn utf8_addresses() {
        let a = addr("<jürgen@müller.example>");
        assert!(!a.is_ascii());
        assert_eq!(a.domain.as_str(), "müller.example");
    }

    /// Found by the fuzzer (fuzz/regressions/smtp_command/): "İ" lowercases
    /// to "i" and a combining dot, which no label may hold, so the address
    /// was accepted but its stored text did not parse back, and recovery
    /// took its spool record for a damaged one.
    #[test]
    fn a_domain_is_checked_as_it_is_kept() {
        assert_eq!(
            Address::parse("a@\u{130}.example"),
            Err(AddressError::Syntax)
        );
        let a = Address::parse("a@\u{c4}X.example").unwrap();
        assert_eq!(Address::parse(&a.to_string()), Ok(a));
    }
}
