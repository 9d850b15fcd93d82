//! Syntax of the names `tern.toml` holds: DNS names (hostname, domains), user
//! names, the local parts of addresses, `host[:port]` (smarthost, routes) and
//! DKIM selectors.
//! Each check returns `None` for a good name or the reason it is bad, phrased to
//! follow `… is not a valid …: `.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 5322 §3.2.3 `atext` besides letters and digits: what may appear in an
/// unquoted local part (RFC 5321 §4.1.2 `Dot-string`).
pub(crate) const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;

/// Why `name` is not a DNS name we accept, or `None` if it is fine.
///
/// Letters, digits and hyphens in dot-separated labels of 1–63 characters, no
/// label starting or ending with a hyphen, at most 253 characters in all
/// (RFC 1035 §2.3.1, RFC 1123 §2.1). No trailing dot, no non-ASCII (use the
/// `xn--` form), and the last label may not be all digits (that is an IP address,
/// RFC 3696 §2).
pub(crate) fn dns_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if !name.is_ascii() {
        return Some("it has non-ASCII characters; write the xn-- form".into());
    }
    if name.ends_with('.') {
        return Some("it ends with a dot; write it without the trailing dot".into());
    }
    if name.len() > 253 {
        return Some("it is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if let Some(problem) = label_problem(label) {
            return Some(problem);
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Some("it looks like an IP address; expected a name".into());
    }
    None
}

/// Why the non-empty DNS label `label` is not one we accept: 1–63 letters,
/// digits and hyphens, not starting or ending with a hyphen (RFC 1035 §2.3.1).
fn label_problem(label: &str) -> Option<String> {
    if label.len() > 63 {
        return Some(format!("label \"{label}\" is longer than 63 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Some(format!(
            "label \"{label}\" may hold only letters, digits and hyphens"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("label \"{label}\" starts or ends with a hyphen"));
    }
    None
}

/// The longest suffix tern appends to a DKIM selector: `-ed25519` (see
/// `crate::dkim`: each key has its own selector, `<selector>-rsa` and
/// `<selector>-ed25519`).
pub(crate) const SELECTOR_SUFFIX_MAX: usize = "-ed25519".len();

/// Why `selector` is not a DKIM selector we accept, or `None`.
///
/// A selector is one or more dot-separated DNS labels (RFC 6376 §3.1) of
/// letters, digits and hyphens, not starting or ending with a hyphen; unlike a
/// host name it may be all digits (`2026`). Its last label must leave room for
/// the `-ed25519` tern appends, within the 63 characters of a label.
pub(crate) fn selector_problem(selector: &str) -> Option<String> {
    if selector.is_empty() {
        return Some("it is empty".into());
    }
    if selector.starts_with('.') || selector.ends_with('.') || selector.contains("..") {
        return Some("it has an empty label (a leading, trailing or double dot)".into());
    }
    if let Some(problem) = selector.split('.').find_map(label_problem) {
        return Some(problem);
    }
    let last = selector.rsplit('.').next().unwrap_or(selector);
    let room = 63 - SELECTOR_SUFFIX_MAX;
    if last.len() > room {
        return Some(format!(
            "its last label is longer than {room} characters, which leaves no room for \
             the \"-ed25519\" suffix"
        ));
    }
    None
}

/// Why `name` (already lowercased) is not a user name, or `None`.
///
/// ASCII letters, digits, `.`, `_` and `-`; not starting or ending with `.`, no
/// two dots in a row (RFC 5321 §4.1.2 `Dot-string`), at most 64 characters.
pub(crate) fn user_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("it may hold only ASCII letters, digits, '.', '_' and '-'".into());
    }
    dots_and_length_problem(name)
}

/// Why `local` is not an unquoted local part (RFC 5321 §4.1.2 `Dot-string`), or
/// `None`. Quoted local parts are refused on purpose.
pub(crate) fn local_part_problem(local: &str) -> Option<String> {
    if local.is_empty() {
        return Some("the part before '@' is empty".into());
    }
    if !local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || ATEXT_SPECIALS.contains(c))
    {
        return Some(format!(
            "the part before '@' may hold only ASCII letters, digits, '.' and {ATEXT_SPECIALS}"
        ));
    }
    dots_and_length_problem(local)
}

/// The rules user names and local parts share.
fn dots_and_length_problem(s: &str) -> Option<String> {
    if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
        return Some("it starts or ends with '.', or has two in a row".into());
    }
    if s.len() > MAX_LOCAL_PART {
        return Some(format!(
            "it is longer than {MAX_LOCAL_PART} characters (RFC 5321 §4.5.3.1.1)"
        ));
    }
    None
}

/// Splits `address` into local part and domain at its one `@`, checking both.
/// Returns the reason when it is not `local@domain`.
pub(crate) fn split_address(address: &str) -> Result<(&str, &str), String> {
    let Some((local, domain)) = address.split_once('@') else {
        return Err("it has no '@'".into());
    };
    if domain.contains('@') {
        return Err("it has more than one '@'".into());
    }
    if let Some(problem) = local_part_problem(local) {
        return Err(problem);
    }
    if let Some(problem) = dns_name_problem(domain) {
        return Err(format!("domain \"{domain}\": {problem}"));
    }
    Ok((local, domain))
}

/// Splits `text` into a host and an optional port, or says why it is neither
/// `host` nor `host:port`.
///
/// The host is a DNS name (returned lowercase) or an IP address (returned in its
/// canonical form; IPv6 without brackets). An IPv6 address with a port is
/// written in brackets, `[2001:db8::25]:25` (RFC 3986 §3.2.2); alone it may be
/// bare or bracketed. A port is 1 to 65535.
pub(crate) fn host_and_port(text: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("it opens '[' but does not close it".into());
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("\"{inside}\" in brackets is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port_number(port)?),
                None => return Err(format!("\"{after}\" after ']' is not \":port\"")),
            },
        };
        return Ok((ip.to_string(), port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            return Err("an IPv6 address with a port must be in brackets, \
                        e.g. \"[2001:db8::25]:25\""
                .into())
        }
        Some((host, port)) => (host, Some(port_number(port)?)),
        None => (text, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((ip.to_string(), port));
    }
    match dns_name_problem(host) {
        Some(problem) => Err(problem),
        None => Ok((host.to_ascii_lowercase(), port)),
    }
}

/// A port written after `:`: digits only, 1 to 65535.
fn port_number(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("port \"{text}\" is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_dns_names() {
        for name in [
            "localhost",
            "mail.example.org",
            "a-b.c0.example",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(dns_name_problem(name), None, "{name}");
        }
        assert_eq!(
            dns_name_problem(&["a".repeat(63), "org".into()].join(".")),
            None
        );
    }

    #[test]
    fn bad_dns_names() {
        let long_label = format!("{}.org", "a".repeat(64));
        let long_name = vec!["a".repeat(63); 4].join(".") + ".org";
        for (name, reason) in [
            ("", "empty"),
            ("example.org.", "trailing dot"),
            ("bücher.example", "xn--"),
            ("mail..example.org", "empty label"),
            (".example.org", "empty label"),
            ("mail_x.example.org", "letters, digits and hyphens"),
            ("mail example.org", "letters, digits and hyphens"),
            ("-mail.example.org", "hyphen"),
            ("mail-.example.org", "hyphen"),
            ("192.0.2.1", "IP address"),
            (long_label.as_str(), "longer than 63"),
            (long_name.as_str(), "longer than 253"),
        ] {
            let problem = dns_name_problem(name).unwrap_or_default();
            assert!(problem.contains(reason), "{name}: {problem}");
        }
    }

    #[test]
    fn selectors() {
        for good in ["tern", "2026", "mail-2026", "a.b", &"s".repeat(55)] {
            assert_eq!(selector_problem(good), None, "{good}");
        }
        for (bad, reason) in [
            ("", "empty"),
            (".tern", "empty label"),
            ("tern.", "empty label"),
            ("a..b", "empty label"),
            ("tern_1", "letters, digits and hyphens"),
            ("tern/x", "letters, digits and hyphens"),
            ("-tern", "hyphen"),
            ("tern-", "hyphen"),
            (&"s".repeat(56), "no room"),
            (&format!("{}.x", "s".repeat(64)), "longer than 63"),
        ] {
            let problem = selector_problem(bad).unwrap_or_default();
            assert!(problem.contains(reason), "{bad}: {problem}");
        }
    }

    #[test]
    fn user_names() {
        for name in ["alice", "john.doe", "a_b-c", "postmaster", "x1"] {
            assert_eq!(user_name_problem(name), None, "{name}");
        }
        for name in [
            "", "al ice", "al+ice", ".alice", "alice.", "a..b", "\"a\"", "ä",
        ] {
            assert!(user_name_problem(name).is_some(), "{name}");
        }
        assert!(user_name_problem(&"a".repeat(65)).is_some());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("info@example.org"),
            Ok(("info", "example.org"))
        );
        assert_eq!(split_address("a+b=c@x.example"), Ok(("a+b=c", "x.example")));
        for bad in [
            "info",
            "a@b@c",
            "@example.org",
            "a b@example.org",
            "\"a\"@example.org",
            "a@",
            "a@exa mple.org",
            "a.@example.org",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_with_and_without_ports() {
        let ok = |text: &str| host_and_port(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            ok("MX.Partner.example"),
            ("mx.partner.example".into(), None)
        );
        assert_eq!(
            ok("mx.partner.example:2525"),
            ("mx.partner.example".into(), Some(2525))
        );
        assert_eq!(ok("192.0.2.25"), ("192.0.2.25".into(), None));
        assert_eq!(ok("192.0.2.25:25"), ("192.0.2.25".into(), Some(25)));
        assert_eq!(ok("2001:DB8::25"), ("2001:db8::25".into(), None));
        assert_eq!(ok("[2001:db8::25]"), ("2001:db8::25".into(), None));
        assert_eq!(ok("[::1]:2525"), ("::1".into(), Some(2525)));
        assert_eq!(ok("localhost:65535"), ("localhost".into(), Some(65535)));
    }

    #[test]
    fn bad_hosts_say_why() {
        for (text, reason) in [
            ("", "empty"),
            (
                "mx.partner.example:0",
                "port \"0\" is not a number from 1 to 65535",
            ),
            ("mx.partner.example:65536", "port \"65536\""),
            ("mx.partner.example:", "port \"\""),
            ("mx.partner.example:+25", "port \"+25\""),
            ("mx.partner.example:smtp", "port \"smtp\""),
            ("2001:db8::25:x", "must be in brackets"),
            ("[2001:db8::25", "does not close"),
            ("[mx.partner.example]:25", "is not an IPv6 address"),
            ("[::1]25", "is not \":port\""),
            ("mx_1.partner.example", "letters, digits and hyphens"),
            ("192.0.2.300", "looks like an IP address"),
            ("mx.partner.example.", "trailing dot"),
        ] {
            let problem = host_and_port(text).expect_err(text);
            assert!(problem.contains(reason), "{text}: {problem}");
        }
    }
}
