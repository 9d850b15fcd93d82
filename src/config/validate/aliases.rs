//! The `[aliases]` table: sources (`name`, `name@domain`, `@domain`) at local
//! domains, targets that are local users or remote addresses. Targets are not
//! expanded further: a target naming another alias's source must itself be a
//! user (or remote), so there are no chains or loops to follow.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{user_list, Checker};
use crate::config::names::{dns_name_problem, local_part_problem, split_address};
use crate::config::raw::{RawAliases, RawTargets};
use crate::config::{Alias, AliasSource, AliasTarget, ConfigError, User};

impl Checker<'_> {
    /// The aliases in file order. Sources are compared after lowercasing; the
    /// same source twice is an error, but `info` and `info@example.org` are
    /// different sources (the more specific one is for delivery to prefer).
    pub(super) fn aliases(
        &self,
        aliases: &RawAliases,
        domains: &[String],
        users: &BTreeMap<String, User>,
    ) -> Result<Vec<Alias>, ConfigError> {
        let mut result: Vec<Alias> = Vec::new();
        for (key, value) in &aliases.0 {
            let source = self.alias_source(key, domains)?;
            if result.iter().any(|a| a.source == source) {
                return Err(self.at(
                    key,
                    format!(
                        "alias \"{}\" is defined twice (aliases are case-insensitive)",
                        key.get_ref()
                    ),
                ));
            }
            let listed: Vec<Spanned<String>> = match value.get_ref() {
                RawTargets::One(target) => vec![Spanned::new(value.span(), target.clone())],
                RawTargets::Many(targets) => targets.clone(),
            };
            if listed.is_empty() {
                return Err(self.at(
                    value,
                    format!(
                        "alias \"{}\" has no targets: expected a user name or address, \
                         or an array of them",
                        key.get_ref()
                    ),
                ));
            }
            let mut targets = Vec::new();
            for target in &listed {
                let resolved = self.alias_target(target, domains, users)?;
                if targets.contains(&resolved) {
                    return Err(self.at(
                        target,
                        format!(
                            "alias target \"{}\" is listed twice for \"{}\"",
                            target.get_ref(),
                            key.get_ref()
                        ),
                    ));
                }
                targets.push(resolved);
            }
            result.push(Alias { source, targets });
        }
        Ok(result)
    }

    /// `@domain`, `local@domain` or `local`, lowercased; domains must be local.
    fn alias_source(
        &self,
        key: &Spanned<String>,
        domains: &[String],
    ) -> Result<AliasSource, ConfigError> {
        let written = key.get_ref();
        let lower = written.to_ascii_lowercase();
        let invalid = |problem: String| {
            self.at(
                key,
                format!(
                    "alias \"{written}\" is not valid: {problem}; expected \"name\", \
                     \"name@domain\" or \"@domain\""
                ),
            )
        };
        let not_local = |domain: &str| {
            self.at(
                key,
                format!(
                    "alias \"{written}\" is for {domain}, which is not a local domain: \
                     expected one of: {}",
                    domains.join(", ")
                ),
            )
        };
        if let Some(domain) = lower.strip_prefix('@') {
            if let Some(problem) = dns_name_problem(domain) {
                return Err(invalid(format!("domain \"{domain}\": {problem}")));
            }
            if !domains.iter().any(|d| d == domain) {
                return Err(not_local(domain));
            }
            return Ok(AliasSource::CatchAll(domain.to_string()));
        }
        if lower.contains('@') {
            let (local, domain) = split_address(&lower).map_err(invalid)?;
            if !domains.iter().any(|d| d == domain) {
                return Err(not_local(domain));
            }
            return Ok(AliasSource::Address {
                local: local.to_string(),
                domain: domain.to_string(),
            });
        }
        match local_part_problem(&lower) {
            Some(problem) => Err(invalid(problem)),
            None => Ok(AliasSource::LocalPart(lower)),
        }
    }

    /// A bare name must be a user; `name@domain` at a local domain must name a
    /// user too; any other address is remote (its domain lowercased, its local
    /// part kept as written, RFC 5321 §2.4).
    fn alias_target(
        &self,
        target: &Spanned<String>,
        domains: &[String],
        users: &BTreeMap<String, User>,
    ) -> Result<AliasTarget, ConfigError> {
        let written = target.get_ref();
        if !written.contains('@') {
            let lower = written.to_ascii_lowercase();
            if users.contains_key(&lower) {
                return Ok(AliasTarget::User(lower));
            }
            return Err(self.at(
                target,
                format!(
                    "alias target \"{written}\" is not a local user: expected one of: {} \
                     (or a remote name@domain)",
                    user_list(users)
                ),
            ));
        }
        let (local, domain) = split_address(written).map_err(|problem| {
            self.at(
                target,
                format!(
                    "alias target \"{written}\" is not a valid address: {problem}; \
                     expected a user name or name@domain"
                ),
            )
        })?;
        let domain = domain.to_ascii_lowercase();
        if domains.contains(&domain) {
            let lower = local.to_ascii_lowercase();
            if users.contains_key(&lower) {
                return Ok(AliasTarget::User(lower));
            }
            return Err(self.at(
                target,
                format!(
                    "alias target \"{written}\" is not a local user: {domain} is a local \
                     domain and \"{local}\" is not one of: {}",
                    user_list(users)
                ),
            ));
        }
        Ok(AliasTarget::Remote(format!("{local}@{domain}")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok, with};
    use crate::config::{Alias, AliasSource, AliasTarget};

    #[test]
    fn aliases_of_every_kind() {
        let config = ok(&with(
            "[aliases]\n\"Info@Example.org\" = \"alice\"\nsales = [\"ALICE\", \"bob@example.net\"]\n\
             \"@example.net\" = \"alice\"\nlists = [\"bob\", \"Friend@Elsewhere.EXAMPLE\"]\n\
             bob = \"bob@example.org\"\npostmaster = \"bob\"\n",
        ));
        let user = |n: &str| AliasTarget::User(n.into());
        assert_eq!(
            config.aliases,
            [
                Alias {
                    source: AliasSource::Address {
                        local: "info".into(),
                        domain: "example.org".into()
                    },
                    targets: vec![user("alice")],
                },
                Alias {
                    source: AliasSource::LocalPart("sales".into()),
                    targets: vec![user("alice"), user("bob")],
                },
                Alias {
                    source: AliasSource::CatchAll("example.net".into()),
                    targets: vec![user("alice")],
                },
                Alias {
                    source: AliasSource::LocalPart("lists".into()),
                    targets: vec![
                        user("bob"),
                        AliasTarget::Remote("Friend@elsewhere.example".into())
                    ],
                },
                Alias {
                    source: AliasSource::LocalPart("bob".into()),
                    targets: vec![user("bob")],
                },
                Alias {
                    source: AliasSource::LocalPart("postmaster".into()),
                    targets: vec![user("bob")],
                },
            ]
        );
    }

    #[test]
    fn alias_mistakes() {
        let cases = [
            (
                "info = \"carol\"",
                "tern.toml:15:8: alias target \"carol\" is not a local user: \
              expected one of: alice, bob (or a remote name@domain)",
            ),
            (
                "info = [\"alice\", \"carol@example.org\"]",
                "tern.toml:15:18: alias target \
              \"carol@example.org\" is not a local user: example.org is a local domain and \
              \"carol\" is not one of: alice, bob",
            ),
            (
                "\"info@example.com\" = \"alice\"",
                "tern.toml:15:1: alias \"info@example.com\" \
              is for example.com, which is not a local domain: expected one of: example.org, \
              example.net",
            ),
            (
                "\"@example.com\" = \"alice\"",
                "tern.toml:15:1: alias \"@example.com\" is for \
              example.com, which is not a local domain: expected one of: example.org, \
              example.net",
            ),
            (
                "info = []",
                "tern.toml:15:8: alias \"info\" has no targets: expected a user \
              name or address, or an array of them",
            ),
            (
                "info = [\"alice\", \"Alice\"]",
                "tern.toml:15:18: alias target \"Alice\" is \
              listed twice for \"info\"",
            ),
            (
                "info = \"a b@x.example\"",
                "tern.toml:15:8: alias target \"a b@x.example\" is \
              not a valid address: the part before '@' may hold only ASCII letters, digits, \
              '.' and !#$%&'*+-/=?^_`{|}~; expected a user name or name@domain",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                err(&with(&format!("[aliases]\n{line}\n"))),
                expected,
                "{line}"
            );
        }
        let dup = with("[aliases]\ninfo = \"alice\"\nINFO = \"bob\"\n");
        assert_eq!(
            err(&dup),
            "tern.toml:16:1: alias \"INFO\" is defined twice (aliases are case-insensitive)"
        );
        for bad in [
            "\"a@b@example.org\"",
            "\"in fo\"",
            "\"\\\"q\\\"@example.org\"",
            "\"\"",
        ] {
            let text = with(&format!("[aliases]\n{bad} = \"alice\"\n"));
            let message = err(&text);
            assert!(
                message.starts_with("tern.toml:15:1: alias"),
                "{bad}: {message}"
            );
            assert!(message.ends_with("expected \"name\", \"name@domain\" or \"@domain\""));
        }
    }
}
