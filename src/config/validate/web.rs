//! The `[acme]`, `[mta_sts]` and `[autoconfig]` tables, and the listeners
//! they need: TLS-ALPN-01, MTA-STS and autoconfig are answered on an https
//! listener, HTTP-01 on an http one.

use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::raw::{RawAcme, RawAutoconfig, RawMtaSts};
use crate::config::{
    Acme, Autoconfig, Challenge, ConfigError, Listener, MtaSts, MtaStsMode, Role, LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING,
};

/// Default `[mta_sts] max_age`: one week (RFC 8461 §3.2 suggests weeks).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// RFC 8461 §3.2: max_age is at most 31557600 seconds (a year).
const MAX_MAX_AGE: u64 = 31_557_600;

impl Checker<'_> {
    pub(super) fn acme(
        &self,
        raw: Option<&Spanned<RawAcme>>,
        listeners: &[Listener],
    ) -> Result<Option<Acme>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        let t = table.get_ref();
        let staging = t.staging.as_ref().is_some_and(|s| *s.get_ref());
        let directory =
            match (&t.directory, staging) {
                (Some(url), true) => return Err(self.at(
                    url,
                    "acme.directory and acme.staging = true both name a CA: expected one of them",
                )),
                (Some(url), false) => {
                    let value = url.get_ref();
                    let host = value.strip_prefix("https://").unwrap_or("");
                    if host.is_empty()
                        || host.starts_with('/')
                        || value.chars().any(char::is_whitespace)
                    {
                        return Err(self.at(
                            url,
                            format!(
                                "acme.directory \"{value}\" is not an https URL: expected e.g. \
                             \"{LETS_ENCRYPT}\""
                            ),
                        ));
                    }
                    value.clone()
                }
                (None, true) => LETS_ENCRYPT_STAGING.to_string(),
                (None, false) => LETS_ENCRYPT.to_string(),
            };
        let contact = match &t.contact {
            None => Vec::new(),
            Some(address) => {
                let value = address.get_ref();
                let valid = value.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && value.chars().all(|c| c.is_ascii_graphic())
                });
                if !valid {
                    return Err(self.at(
                        address,
                        format!(
                            "acme.contact \"{value}\" is not an email address: expected e.g. \
                             \"postmaster@example.org\""
                        ),
                    ));
                }
                vec![format!("mailto:{value}")]
            }
        };
        let challenge = match &t.challenge {
            None => Challenge::TlsAlpn01,
            Some(value) => match value.get_ref().as_str() {
                "tls-alpn-01" => Challenge::TlsAlpn01,
                "http-01" => Challenge::Http01,
                other => {
                    return Err(self.at(
                        value,
                        format!("acme.challenge \"{other}\" is not one of: tls-alpn-01, http-01"),
                    ))
                }
            },
        };
        let needed = match challenge {
            Challenge::TlsAlpn01 => Role::Https,
            Challenge::Http01 => Role::Http,
        };
        if !listeners.iter().any(|l| l.role == needed) {
            let at = t
                .challenge
                .as_ref()
                .map(|c| c.span())
                .unwrap_or(table.span());
            return Err(crate::config::ConfigError::at(
                self.origin,
                self.text,
                at,
                format!(
                    "acme.challenge {} is answered on an {} listener, and there is none: \
                     expected e.g. [[listener]] address = \"[::]:{}\" role = \"{}\"",
                    challenge.name(),
                    needed.name(),
                    if needed == Role::Https { 443 } else { 80 },
                    needed.name()
                ),
            ));
        }
        let ca_file = match &t.ca_file {
            None => None,
            Some(path) => Some(self.path("acme.ca_file", path)?),
        };
        let mut reload_command = Vec::new();
        if let Some(list) = &t.reload_command {
            if list.get_ref().is_empty() {
                return Err(self.at(
                    list,
                    "acme.reload_command is empty: expected a program and its arguments, \
                     e.g. [\"systemctl\", \"reload\", \"dovecot\"], or no key",
                ));
            }
            for word in list.get_ref() {
                if word.get_ref().is_empty() || word.get_ref().contains('\0') {
                    return Err(self.at(word, "acme.reload_command has an empty word"));
                }
                reload_command.push(word.get_ref().clone());
            }
        }
        Ok(Some(Acme {
            directory,
            contact,
            challenge,
            ca_file,
            reload_command,
        }))
    }

    pub(super) fn mta_sts(
        &self,
        raw: Option<&Spanned<RawMtaSts>>,
        listeners: &[Listener],
    ) -> Result<Option<MtaSts>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        self.https_listener(table, "[mta_sts]", listeners)?;
        let t = table.get_ref();
        let mode = match &t.mode {
            None => MtaStsMode::Testing,
            Some(value) => match value.get_ref().as_str() {
                "testing" => MtaStsMode::Testing,
                "enforce" => MtaStsMode::Enforce,
                "none" => MtaStsMode::None,
                other => {
                    return Err(self.at(
                        value,
                        format!("mta_sts.mode \"{other}\" is not one of: testing, enforce, none"),
                    ))
                }
            },
        };
        let max_age = self.duration(
            "mta_sts.max_age",
            t.max_age.as_ref(),
            DEFAULT_MAX_AGE,
            Duration::from_secs(60),
        )?;
        if max_age.as_secs() > MAX_MAX_AGE {
            let at = t.max_age.as_ref().map(|m| m.span()).unwrap_or(table.span());
            return Err(ConfigError::at(
                self.origin,
                self.text,
                at,
                format!(
                    "mta_sts.max_age is more than a year: expected at most {MAX_MAX_AGE} seconds \
                     (RFC 8461 §3.2)"
                ),
            ));
        }
        Ok(Some(MtaSts { mode, max_age }))
    }

    pub(super) fn autoconfig(
        &self,
        raw: Option<&Spanned<RawAutoconfig>>,
        listeners: &[Listener],
    ) -> Result<Option<Autoconfig>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        self.https_listener(table, "[autoconfig]", listeners)?;
        let imap_port = self
            .port("autoconfig.imap_port", table.get_ref().imap_port.as_ref())?
            .unwrap_or(993);
        Ok(Some(Autoconfig { imap_port }))
    }

    fn https_listener<T>(
        &self,
        table: &Spanned<T>,
        what: &str,
        listeners: &[Listener],
    ) -> Result<(), ConfigError> {
        if listeners.iter().any(|l| l.role == Role::Https) {
            return Ok(());
        }
        Err(self.at(
            table,
            format!(
                "{what} is served on an https listener, and there is none: expected e.g. \
                 [[listener]] address = \"[::]:443\" role = \"https\""
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok, with};
    use crate::config::{Challenge, MtaStsMode, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};

    const HTTPS: &str = "[[listener]]\naddress = \"127.0.0.1:443\"\nrole = \"https\"\n";
    const HTTP: &str = "[[listener]]\naddress = \"127.0.0.1:80\"\nrole = \"http\"\n";

    #[test]
    fn acme_defaults_and_choices() {
        let c = ok(&with(&format!("{HTTPS}[acme]\n")));
        let acme = c.acme.unwrap();
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(acme.challenge, Challenge::TlsAlpn01);
        assert!(acme.contact.is_empty() && acme.reload_command.is_empty());
        let acme = ok(&with(&format!(
            "{HTTP}[acme]\nstaging = true\nchallenge = \"http-01\"\n\
             contact = \"me@example.org\"\nreload_command = [\"systemctl\", \"reload\", \"dovecot\"]\n"
        )))
        .acme
        .unwrap();
        assert_eq!(acme.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(acme.challenge, Challenge::Http01);
        assert_eq!(acme.contact, ["mailto:me@example.org"]);
        assert_eq!(acme.reload_command, ["systemctl", "reload", "dovecot"]);
    }

    #[test]
    fn acme_mistakes() {
        assert!(err(&with("[acme]\n")).contains(
            "acme.challenge tls-alpn-01 is answered on an https listener, and there is none"
        ));
        assert!(
            err(&with(&format!("{HTTPS}[acme]\nchallenge = \"http-01\"\n")))
                .contains("on an http listener, and there is none")
        );
        assert!(
            err(&with(&format!("{HTTPS}[acme]\nchallenge = \"dns-01\"\n")))
                .contains("acme.challenge \"dns-01\" is not one of: tls-alpn-01, http-01")
        );
        assert!(err(&with(&format!(
            "{HTTPS}[acme]\ndirectory = \"http://ca/dir\"\n"
        )))
        .contains("is not an https URL"));
        assert!(err(&with(&format!(
            "{HTTPS}[acme]\ndirectory = \"https://ca/dir\"\nstaging = true\n"
        )))
        .contains("both name a CA"));
        assert!(
            err(&with(&format!("{HTTPS}[acme]\ncontact = \"nobody\"\n")))
                .contains("is not an email address")
        );
        assert!(err(&with(&format!("{HTTPS}[acme]\nreload_command = []\n")))
            .contains("acme.reload_command is empty"));
    }

    #[test]
    fn mta_sts_and_autoconfig_and_the_names() {
        let c = ok(&with(&format!(
            "{HTTPS}[mta_sts]\nmode = \"enforce\"\nmax_age = \"1d\"\n[autoconfig]\n"
        )));
        let sts = c.mta_sts.clone().unwrap();
        assert_eq!(sts.mode, MtaStsMode::Enforce);
        assert_eq!(sts.max_age.as_secs(), 86_400);
        assert_eq!(c.autoconfig.clone().unwrap().imap_port, 993);
        let mut names = vec![c.hostname.clone()];
        for prefix in ["mta-sts", "autoconfig"] {
            for d in &c.domains {
                names.push(format!("{prefix}.{d}"));
            }
        }
        assert_eq!(c.certificate_names(), names);
        let c = ok(&with(&format!("{HTTPS}[mta_sts]\n")));
        assert_eq!(c.mta_sts.as_ref().unwrap().mode, MtaStsMode::Testing);
        assert_eq!(c.certificate_names().len(), 1 + c.domains.len());
        assert!(err(&with("[mta_sts]\n")).contains("[mta_sts] is served on an https listener"));
        assert!(err(&with(&format!("{HTTPS}[mta_sts]\nmode = \"on\"\n")))
            .contains("mta_sts.mode \"on\" is not one of: testing, enforce, none"));
        assert!(
            err(&with(&format!("{HTTPS}[mta_sts]\nmax_age = \"400d\"\n")))
                .contains("more than a year")
        );
        assert!(
            err(&with(&format!("{HTTPS}[autoconfig]\nimap_port = 0\n"))).contains("is not a port")
        );
    }
}
