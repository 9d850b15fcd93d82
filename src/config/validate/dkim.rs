//! The `[dkim]` table: the base selector, the key directory and the signing
//! domains. Every key is optional: `selector` defaults to `tern`, `keys` to
//! `<data_dir>/dkim`, `domains` to every local domain. Whether the key files
//! exist is checked later, when the keys are loaded (`crate::dkim::Signer`),
//! so a config can be checked on another machine than the one it runs on.

use std::path::Path;

use toml::Spanned;

use super::Checker;
use crate::config::names::selector_problem;
use crate::config::raw::RawDkim;
use crate::config::{ConfigError, Dkim, Place, Position, DEFAULT_DKIM_SELECTOR};

impl Checker<'_> {
    /// `[dkim]`, whose domains must be among the local `domains`.
    pub(super) fn dkim(
        &self,
        table: Option<&Spanned<RawDkim>>,
        domains: &[String],
        data_dir: &Path,
    ) -> Result<Option<Dkim>, ConfigError> {
        let Some(table) = table else {
            return Ok(None);
        };
        let raw = table.get_ref();
        let selector = match &raw.selector {
            Some(spanned) => {
                let value = spanned.get_ref();
                if let Some(problem) = selector_problem(value) {
                    return Err(self.at(
                        spanned,
                        format!(
                            "dkim selector \"{value}\" is not valid: {problem}; expected \
                             letters, digits and hyphens, e.g. selector = \"{DEFAULT_DKIM_SELECTOR}\""
                        ),
                    ));
                }
                value.to_ascii_lowercase()
            }
            None => DEFAULT_DKIM_SELECTOR.to_string(),
        };
        let keys_dir = match &raw.keys {
            Some(dir) => self.path("dkim keys", dir)?,
            None => data_dir.join("dkim"),
        };
        let domains = match &raw.domains {
            Some(list) => self.dkim_domains(list, domains)?,
            None => domains.to_vec(),
        };
        Ok(Some(Dkim {
            selector,
            keys_dir,
            domains,
            place: Place {
                file: self.origin.to_path_buf(),
                position: Some(Position::of_offset(self.text, table.span().start)),
            },
        }))
    }

    /// At least one domain, each local and listed once.
    fn dkim_domains(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        local: &[String],
    ) -> Result<Vec<String>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.at(
                list,
                "dkim domains is empty: expected at least one local domain to sign for, \
                 or no [dkim] table to sign nothing",
            ));
        }
        let mut result: Vec<String> = Vec::new();
        for spanned in list.get_ref() {
            let written = spanned.get_ref();
            let domain = self.dns_name("dkim domain", spanned)?;
            if !local.contains(&domain) {
                return Err(self.at(
                    spanned,
                    format!(
                        "dkim domain \"{written}\" is not a local domain: expected one of: {}",
                        local.join(", ")
                    ),
                ));
            }
            if result.contains(&domain) {
                return Err(self.at(
                    spanned,
                    format!("dkim domain \"{written}\" is listed twice"),
                ));
            }
            result.push(domain);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::tests::{err, ok, with, BASE};
    use crate::config::{Config, Position};

    #[test]
    fn no_dkim_table_signs_nothing() {
        assert_eq!(ok(BASE).dkim, None);
    }

    #[test]
    fn an_empty_dkim_table_gets_the_defaults() {
        let config = ok(&with("[dkim]\n"));
        let dkim = config.dkim.expect("[dkim] is there");
        assert_eq!(dkim.selector, "tern");
        assert_eq!(dkim.keys_dir, PathBuf::from("/var/lib/tern/dkim"));
        assert_eq!(dkim.domains, ["example.org", "example.net"]);
        assert_eq!(dkim.place.file, PathBuf::from("tern.toml"));
        assert_eq!(
            dkim.place.position,
            Some(Position {
                line: 14,
                column: 1
            })
        );
    }

    #[test]
    fn every_dkim_key() {
        let text = with(
            "[dkim]\nselector = \"Mail-2026\"\nkeys = \"keys/dkim\"\n\
             domains = [\"Example.NET\"]\n",
        );
        let config = Config::parse(&text, Path::new("/etc/tern/tern.toml")).expect("valid");
        let dkim = config.dkim.expect("[dkim] is there");
        assert_eq!(dkim.selector, "mail-2026");
        assert_eq!(dkim.keys_dir, PathBuf::from("/etc/tern/keys/dkim"));
        assert_eq!(dkim.domains, ["example.net"]);
    }

    #[test]
    fn the_summary_names_the_signing_domains() {
        let config = ok(&with("[dkim]\ndomains = [\"example.org\"]\n"));
        assert!(config
            .summary(Path::new("tern.toml"))
            .ends_with(", 2 users, 0 aliases, dkim for 1 domain (selector tern)"));
    }

    #[test]
    fn dkim_mistakes() {
        let cases = [
            (
                "selector = \"tern_1\"",
                "tern.toml:15:12: dkim selector \"tern_1\" is not valid: label \"tern_1\" may \
                 hold only letters, digits and hyphens; expected letters, digits and hyphens, \
                 e.g. selector = \"tern\"",
            ),
            (
                "domains = [\"example.org\", \"example.com\"]",
                "tern.toml:15:27: dkim domain \"example.com\" is not a local domain: expected \
                 one of: example.org, example.net",
            ),
            (
                "domains = [\"example.org\", \"EXAMPLE.org\"]",
                "tern.toml:15:27: dkim domain \"EXAMPLE.org\" is listed twice",
            ),
            (
                "domains = []",
                "tern.toml:15:11: dkim domains is empty: expected at least one local domain \
                 to sign for, or no [dkim] table to sign nothing",
            ),
            (
                "keys = \"\"",
                "tern.toml:15:8: dkim keys is empty: expected a path",
            ),
            (
                "key = \"/k\"",
                "tern.toml:15:1: unknown key \"key\", expected one of: selector, keys, domains",
            ),
        ];
        for (keys, expected) in cases {
            assert_eq!(err(&with(&format!("[dkim]\n{keys}\n"))), expected, "{keys}");
        }
    }
}
