//! The sender exceptions (DESIGN invariant 7): `send_as` of a `[[user]]`
//! and the `[local_senders]` table. Each entry is `name@domain` or
//! `@domain`, always at a local domain: nobody is allowed to send as
//! someone else's domain, only as more of ours.

use std::collections::BTreeMap;

use toml::Spanned;

use super::Checker;
use crate::config::names::{dns_name_problem, split_address};
use crate::config::raw::{RawLocalSenders, RawTargets};
use crate::config::{ConfigError, SenderPattern};

/// The longest Unix login we take as a `[local_senders]` key (Linux
/// useradd's limit).
const MAX_LOGIN: usize = 32;

impl Checker<'_> {
    /// One `name@domain` or `@domain` at a local domain, lowercased.
    /// `what` names the place, e.g. `send_as of user "alice"`.
    fn sender_pattern(
        &self,
        what: &str,
        value: &Spanned<String>,
        domains: &[String],
    ) -> Result<SenderPattern, ConfigError> {
        let written = value.get_ref();
        let lower = written.to_ascii_lowercase();
        let invalid = |problem: String| {
            self.at(
                value,
                format!(
                    "{what}: \"{written}\" is not valid: {problem}; expected \"name@domain\" \
                     or \"@domain\" at a local domain"
                ),
            )
        };
        let (pattern, domain) = match lower.strip_prefix('@') {
            Some(domain) => {
                if let Some(problem) = dns_name_problem(domain) {
                    return Err(invalid(format!("domain \"{domain}\": {problem}")));
                }
                (SenderPattern::Domain(domain.to_string()), domain)
            }
            None => {
                let (local, domain) = split_address(&lower).map_err(invalid)?;
                let pattern = SenderPattern::Address {
                    local: local.to_string(),
                    domain: domain.to_string(),
                };
                (pattern, domain)
            }
        };
        if !domains.iter().any(|d| d == domain) {
            return Err(self.at(
                value,
                format!(
                    "{what}: \"{written}\" is at {domain}, which is not a local domain: \
                     expected an address at one of: {}",
                    domains.join(", ")
                ),
            ));
        }
        Ok(pattern)
    }

    /// The patterns of a list (`send_as`, or one `[local_senders]` value);
    /// the same entry twice is a mistake.
    fn sender_patterns(
        &self,
        what: &str,
        list: &[Spanned<String>],
        domains: &[String],
    ) -> Result<Vec<SenderPattern>, ConfigError> {
        let mut result = Vec::with_capacity(list.len());
        for value in list {
            let pattern = self.sender_pattern(what, value, domains)?;
            if result.contains(&pattern) {
                return Err(self.at(
                    value,
                    format!("{what}: \"{}\" is listed twice", value.get_ref()),
                ));
            }
            result.push(pattern);
        }
        Ok(result)
    }

    /// `send_as` of user `user`.
    pub(super) fn send_as(
        &self,
        send_as: Option<&Spanned<Vec<Spanned<String>>>>,
        user: &str,
        domains: &[String],
    ) -> Result<Vec<SenderPattern>, ConfigError> {
        match send_as {
            Some(list) => self.sender_patterns(
                &format!("send_as of user \"{user}\""),
                list.get_ref(),
                domains,
            ),
            None => Ok(Vec::new()),
        }
    }

    /// `[local_senders]`: Unix login = address or array of addresses.
    pub(super) fn local_senders(
        &self,
        raw: &RawLocalSenders,
        domains: &[String],
    ) -> Result<BTreeMap<String, Vec<SenderPattern>>, ConfigError> {
        let mut result = BTreeMap::new();
        for (key, value) in &raw.0 {
            let login = key.get_ref();
            if let Some(problem) = login_problem(login) {
                return Err(self.at(
                    key,
                    format!(
                        "local_senders: \"{login}\" is not a Unix login name: {problem}; \
                         expected a user name as in /etc/passwd, e.g. \"www-data\""
                    ),
                ));
            }
            if login == "root" {
                return Err(self.at(
                    key,
                    "local_senders: \"root\" may already send as anyone: expected an \
                     unprivileged Unix user",
                ));
            }
            let listed: Vec<Spanned<String>> = match value.get_ref() {
                RawTargets::One(one) => vec![Spanned::new(value.span(), one.clone())],
                RawTargets::Many(many) => many.clone(),
            };
            if listed.is_empty() {
                return Err(self.at(
                    value,
                    format!(
                        "local_senders: \"{login}\" has no addresses: expected \
                         \"name@domain\" or \"@domain\", or an array of them"
                    ),
                ));
            }
            let what = format!("local_senders of \"{login}\"");
            let patterns = self.sender_patterns(&what, &listed, domains)?;
            result.insert(login.clone(), patterns);
        }
        Ok(result)
    }
}

/// Why `login` is not a Unix login name we take, or `None`: the portable
/// set (letters, digits, `.`, `_`, `-`, not starting with `-`), at most
/// [`MAX_LOGIN`] characters. Unlike tern's own user names, case counts.
fn login_problem(login: &str) -> Option<String> {
    if login.is_empty() {
        return Some("it is empty".into());
    }
    if login.len() > MAX_LOGIN {
        return Some(format!("it is longer than {MAX_LOGIN} characters"));
    }
    if !login
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("it may hold only ASCII letters, digits, '.', '_' and '-'".into());
    }
    if login.starts_with('-') {
        return Some("it starts with '-'".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok, with, BASE};
    use crate::config::SenderPattern;

    fn address(local: &str, domain: &str) -> SenderPattern {
        SenderPattern::Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    #[test]
    fn send_as_and_local_senders_are_read() {
        let text = BASE.replace(
            "name = \"bob\"\n",
            "name = \"bob\"\nsend_as = [\"Shared@Example.org\", \"@example.net\"]\n",
        );
        let text = format!(
            "{text}[local_senders]\n\"www-data\" = \"noreply@example.org\"\n\
             backup = [\"backup@example.org\", \"@example.net\"]\n"
        );
        let config = ok(&text);
        assert_eq!(
            config.users["bob"].send_as,
            [
                address("shared", "example.org"),
                SenderPattern::Domain("example.net".into())
            ]
        );
        assert!(config.users["alice"].send_as.is_empty());
        assert_eq!(
            config.local_senders["www-data"],
            [address("noreply", "example.org")]
        );
        assert_eq!(config.local_senders["backup"].len(), 2);
        assert!(ok(BASE).local_senders.is_empty());
    }

    #[test]
    fn patterns_match_with_tags_and_any_case() {
        let shared = address("shared", "example.org");
        assert!(shared.matches("Shared", "EXAMPLE.org", Some('+')));
        assert!(shared.matches("shared+x", "example.org", Some('+')));
        assert!(!shared.matches("shared+x", "example.org", None));
        assert!(!shared.matches("shared", "example.net", Some('+')));
        assert!(!shared.matches("sharedx", "example.org", Some('+')));
        let domain = SenderPattern::Domain("example.net".into());
        assert!(domain.matches("anyone", "Example.NET", None));
        assert!(!domain.matches("anyone", "sub.example.net", None));
    }

    #[test]
    fn sender_mistakes() {
        let user = |send_as: &str| {
            err(&BASE.replace(
                "name = \"bob\"\n",
                &format!("name = \"bob\"\nsend_as = {send_as}\n"),
            ))
        };
        assert_eq!(
            user("[\"alice@gmail.example\"]"),
            "tern.toml:14:12: send_as of user \"bob\": \"alice@gmail.example\" is at \
             gmail.example, which is not a local domain: expected an address at one of: \
             example.org, example.net"
        );
        assert_eq!(
            user("[\"shared\"]"),
            "tern.toml:14:12: send_as of user \"bob\": \"shared\" is not valid: it has no \
             '@'; expected \"name@domain\" or \"@domain\" at a local domain"
        );
        assert_eq!(
            user("[\"a@example.org\", \"A@example.org\"]"),
            "tern.toml:14:29: send_as of user \"bob\": \"A@example.org\" is listed twice"
        );
        assert!(user("\"a@example.org\"").contains("expected an array"));
        let local = |table: &str| err(&with(&format!("[local_senders]\n{table}\n")));
        assert_eq!(
            local("\"www data\" = \"a@example.org\""),
            "tern.toml:15:1: local_senders: \"www data\" is not a Unix login name: it may \
             hold only ASCII letters, digits, '.', '_' and '-'; expected a user name as in \
             /etc/passwd, e.g. \"www-data\""
        );
        assert!(local("root = \"a@example.org\"").contains("\"root\" may already send"));
        assert!(local("app = []").contains("\"app\" has no addresses"));
        assert!(local("app = [\"@elsewhere.example\"]").contains("not a local domain"));
    }
}
