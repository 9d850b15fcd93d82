//! The `[dovecot]` table: where tern writes the user database that Dovecot
//! (IMAP and POP3 on the appliance) reads, and the group that may read it.

use super::Checker;
use crate::config::raw::RawDovecot;
use crate::config::{ConfigError, DovecotUsers};
use toml::Spanned;

impl Checker<'_> {
    pub(super) fn dovecot(
        &self,
        raw: Option<&Spanned<RawDovecot>>,
    ) -> Result<Option<DovecotUsers>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        let Some(file) = &table.get_ref().users_file else {
            return Err(self.at(
                table,
                "[dovecot] has no users_file: expected the path Dovecot's passdb and \
                 userdb read, e.g. users_file = \"/run/tern/dovecot-users\"",
            ));
        };
        let users_file = self.path("dovecot.users_file", file)?;
        let group = match &table.get_ref().group {
            None => None,
            Some(name) => {
                let value = name.get_ref();
                let valid = value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && value.len() <= 32
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
                if !valid {
                    return Err(self.at(
                        name,
                        format!(
                            "dovecot.group \"{value}\" is not a group name: expected lowercase \
                             letters, digits, _ and -, starting with a letter or _, e.g. \"dovecot\""
                        ),
                    ));
                }
                Some(value.clone())
            }
        };
        Ok(Some(DovecotUsers { users_file, group }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{err, ok, with};

    #[test]
    fn absent_set_and_mistakes() {
        assert_eq!(ok(&with("")).dovecot, None);
        let d = ok(&with(
            "[dovecot]\nusers_file = \"/run/tern/dovecot-users\"\ngroup = \"dovecot\"\n",
        ))
        .dovecot
        .unwrap();
        assert_eq!(d.users_file, PathBuf::from("/run/tern/dovecot-users"));
        assert_eq!(d.group.as_deref(), Some("dovecot"));
        assert!(err(&with("[dovecot]\ngroup = \"dovecot\"\n"))
            .starts_with("tern.toml:14:1: [dovecot] has no users_file"));
        assert_eq!(
            err(&with(
                "[dovecot]\nusers_file = \"/x\"\ngroup = \"Mail Users\"\n"
            )),
            "tern.toml:16:9: dovecot.group \"Mail Users\" is not a group name: expected \
             lowercase letters, digits, _ and -, starting with a letter or _, e.g. \"dovecot\""
        );
    }
}
