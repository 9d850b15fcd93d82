//! [`validate`]: [`RawConfig`] → [`Config`]. Every rule `tern.toml` has beyond its
//! TOML shape lives here, checked once; the first broken rule becomes a
//! [`ConfigError`] at the span of the value that breaks it.
//!
//! Relative paths (`data_dir`, `[tls]`, `maildir`, `relay.ca_file`,
//! `dkim.keys`) resolve against the directory of the config file; when the
//! origin has no directory part (the embedded default, or a bare `tern.toml`)
//! they stay relative to the current directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::names::{dns_name_problem, user_name_problem, ATEXT_SPECIALS};
use super::raw::{RawConfig, RawListener, RawTls, RawUser};
use super::{Config, ConfigError, Listener, Role, TlsConfig, User};

mod aliases;
mod check;
mod dkim;
mod dovecot;
mod limits;
mod mx;
mod numbers;
mod queue;
mod relay;
mod senders;
mod spam;
mod web;

/// The default `recipient_delimiter`.
const DEFAULT_DELIMITER: char = '+';

/// Turns the raw file into a [`Config`], or reports the first rule it breaks.
/// `text` and `origin` are what `raw` was parsed from, for positions and paths.
pub(crate) fn validate(raw: RawConfig, text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let check = Checker {
        text,
        origin,
        base: origin.parent().unwrap_or(Path::new("")),
    };
    let hostname = match &raw.hostname {
        Some(name) => check.dns_name("hostname", name)?,
        None => {
            return Err(check.missing(
                "missing key \"hostname\": expected the server's DNS name, \
                 e.g. hostname = \"mail.example.org\"",
            ))
        }
    };
    let data_dir = match &raw.data_dir {
        Some(dir) => check.path("data_dir", dir)?,
        None => {
            return Err(check.missing(
                "missing key \"data_dir\": expected the directory for the queue and \
                 mailboxes, e.g. data_dir = \"/var/lib/tern\"",
            ))
        }
    };
    let domains = check.domains(raw.domains.as_ref())?;
    let recipient_delimiter = check.delimiter(raw.recipient_delimiter.as_ref())?;
    let listeners = check.listeners(raw.listener.as_ref())?;
    let tls = check.tls(raw.tls.as_ref())?;
    let (users, first_user) =
        check.users(raw.user.as_ref(), recipient_delimiter, &data_dir, &domains)?;
    let postmaster = match &raw.postmaster {
        Some(name) => check.postmaster(name, &users)?,
        None => first_user,
    };
    let aliases = check.aliases(&raw.aliases, &domains, &users)?;
    let limits = check.limits(&raw.limits)?;
    let relay = check.relay(&raw.relay, raw.route.as_ref(), &domains)?;
    let queue = check.queue(&raw.queue)?;
    let dkim = check.dkim(raw.dkim.as_ref(), &domains, &data_dir)?;
    let mx = check.mx(&raw.mx)?;
    let dovecot = check.dovecot(raw.dovecot.as_ref())?;
    let local_senders = check.local_senders(&raw.local_senders, &domains)?;
    let (public_addresses, public_addresses_configured) =
        check.public_addresses(raw.public_addresses.as_ref(), &listeners)?;
    let check_settings = check.check_settings(&raw.check)?;
    let acme = check.acme(raw.acme.as_ref(), &listeners)?;
    let mta_sts = check.mta_sts(raw.mta_sts.as_ref(), &listeners)?;
    let autoconfig = check.autoconfig(raw.autoconfig.as_ref(), &listeners)?;
    let spam = check.spam(&raw.spam)?;
    Ok(Config {
        hostname,
        data_dir,
        listeners,
        tls,
        domains,
        users,
        postmaster,
        aliases,
        recipient_delimiter,
        limits,
        relay,
        queue,
        dkim,
        local_senders,
        submission: super::Submission {
            trace: raw.submission.trace.unwrap_or(false),
        },
        mx,
        dovecot,
        public_addresses,
        public_addresses_configured,
        check: check_settings,
        system_accounts: Default::default(),
        acme,
        mta_sts,
        autoconfig,
        spam,
    })
}

/// The file being validated: turns spans into positioned errors, paths into
/// resolved paths.
struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
    /// The directory relative paths resolve against.
    base: &'a Path,
}

impl Checker<'_> {
    /// An error at `value`'s place in the file.
    pub(super) fn at<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.origin, self.text, value.span(), message)
    }

    /// An error about something absent, which has no place.
    pub(super) fn missing(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::whole_file(self.origin, message)
    }

    /// A DNS name, lowercased.
    pub(super) fn dns_name(
        &self,
        what: &str,
        name: &Spanned<String>,
    ) -> Result<String, ConfigError> {
        let value = name.get_ref();
        match dns_name_problem(value) {
            Some(problem) => Err(self.at(
                name,
                format!("{what} \"{value}\" is not a valid DNS name: {problem}"),
            )),
            None => Ok(value.to_ascii_lowercase()),
        }
    }

    /// A path, resolved against the config file's directory.
    pub(super) fn path(&self, what: &str, path: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let value = path.get_ref();
        if value.is_empty() || value.contains('\0') {
            return Err(self.at(path, format!("{what} is empty: expected a path")));
        }
        Ok(self.base.join(value))
    }

    fn domains(
        &self,
        domains: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(list) = domains else {
            return Err(self.missing(
                "missing key \"domains\": expected the domains this server receives mail \
                 for, e.g. domains = [\"example.org\"]",
            ));
        };
        if list.get_ref().is_empty() {
            return Err(self.at(
                list,
                "domains is empty: expected at least one domain this server receives mail for",
            ));
        }
        let mut seen = Vec::new();
        for domain in list.get_ref() {
            let name = self.dns_name("domain", domain)?;
            if seen.contains(&name) {
                return Err(self.at(
                    domain,
                    format!("domain \"{}\" is listed twice", domain.get_ref()),
                ));
            }
            seen.push(name);
        }
        Ok(seen)
    }

    fn delimiter(&self, delimiter: Option<&Spanned<String>>) -> Result<Option<char>, ConfigError> {
        let Some(spanned) = delimiter else {
            return Ok(Some(DEFAULT_DELIMITER));
        };
        let value = spanned.get_ref();
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (None, _) => Ok(None),
            (Some(c), None) if c == '.' || ATEXT_SPECIALS.contains(c) => Ok(Some(c)),
            _ => Err(self.at(
                spanned,
                format!(
                    "recipient_delimiter \"{value}\" is not one character allowed in \
                     addresses: expected one of {}, or \"\" to turn plus-addressing off",
                    delimiter_choices()
                ),
            )),
        }
    }

    fn listeners(
        &self,
        listeners: Option<&Spanned<Vec<Spanned<RawListener>>>>,
    ) -> Result<Vec<Listener>, ConfigError> {
        let none = "no [[listener]] defined: expected at least one, \
                    e.g. [[listener]] address = \"0.0.0.0:25\" role = \"mx\"";
        let Some(list) = listeners else {
            return Err(self.missing(none));
        };
        if list.get_ref().is_empty() {
            return Err(self.at(list, none));
        }
        let mut result: Vec<Listener> = Vec::new();
        for table in list.get_ref() {
            let listener = self.listener(table)?;
            // Port 0 (any free port, for tests) may appear more than once.
            if listener.address.port() != 0 && result.iter().any(|l| l.address == listener.address)
            {
                let message = format!("listener address \"{}\" is used twice", listener.address);
                return Err(match &table.get_ref().address {
                    Some(address) => self.at(address, message),
                    None => self.at(table, message),
                });
            }
            result.push(listener);
        }
        Ok(result)
    }

    fn listener(&self, table: &Spanned<RawListener>) -> Result<Listener, ConfigError> {
        let Some(address) = &table.get_ref().address else {
            return Err(self.at(
                table,
                "[[listener]] has no address: expected e.g. address = \"0.0.0.0:25\"",
            ));
        };
        let Some(role) = &table.get_ref().role else {
            return Err(self.at(
                table,
                "[[listener]] has no role: expected one of: mx, submission, submissions, https, http",
            ));
        };
        let parsed: SocketAddr = address.get_ref().parse().map_err(|_| {
            self.at(
                address,
                format!(
                    "listener address \"{}\" is not an IP address and port: \
                     expected e.g. \"0.0.0.0:25\" or \"[::]:25\"",
                    address.get_ref()
                ),
            )
        })?;
        let role_value = match role.get_ref().as_str() {
            "mx" => Role::Mx,
            "submission" => Role::Submission,
            "submissions" => Role::Submissions,
            "https" => Role::Https,
            "http" => Role::Http,
            other => {
                return Err(self.at(
                    role,
                    format!(
                        "listener role \"{other}\" is not one of: mx, submission, submissions, \
                         https, http"
                    ),
                ))
            }
        };
        Ok(Listener {
            address: parsed,
            role: role_value,
        })
    }

    fn tls(&self, tls: Option<&Spanned<RawTls>>) -> Result<TlsConfig, ConfigError> {
        let Some(table) = tls else {
            return Ok(TlsConfig::SelfSigned);
        };
        let both = "expected both cert and key, or neither (then a self-signed \
                    certificate is generated)";
        match (&table.get_ref().cert, &table.get_ref().key) {
            (Some(cert), Some(key)) => Ok(TlsConfig::Files {
                cert: self.path("tls cert", cert)?,
                key: self.path("tls key", key)?,
            }),
            (None, None) => Ok(TlsConfig::SelfSigned),
            (Some(_), None) => Err(self.at(table, format!("[tls] has cert but no key: {both}"))),
            (None, Some(_)) => Err(self.at(table, format!("[tls] has key but no cert: {both}"))),
        }
    }

    /// An argon2id hash in PHC form, as `tern user passwd` prints it.
    fn password_hash(&self, hash: &Spanned<String>, user: &str) -> Result<String, ConfigError> {
        use argon2::password_hash::phc::PasswordHash;
        let text = hash.get_ref();
        match PasswordHash::new(text) {
            Ok(parsed) if parsed.algorithm.as_str() == "argon2id" => Ok(text.clone()),
            Ok(parsed) => Err(self.at(
                hash,
                format!(
                    "password of user \"{user}\" uses {}: expected an argon2id hash from `tern user passwd`",
                    parsed.algorithm
                ),
            )),
            Err(_) => Err(self.at(
                hash,
                format!(
                    "password of user \"{user}\" is not a password hash: expected the \"$argon2id$...\" \
                     line printed by `tern user passwd` (never the password itself)"
                ),
            )),
        }
    }

    /// The users by name, and the first one in file order (the default postmaster).
    fn users(
        &self,
        users: Option<&Spanned<Vec<Spanned<RawUser>>>>,
        delimiter: Option<char>,
        data_dir: &Path,
        domains: &[String],
    ) -> Result<(BTreeMap<String, User>, String), ConfigError> {
        let none = "no [[user]] defined: expected at least one, e.g. [[user]] name = \"alice\"";
        let Some(list) = users else {
            return Err(self.missing(none));
        };
        let mut result: BTreeMap<String, User> = BTreeMap::new();
        let mut first = None;
        for table in list.get_ref() {
            let Some(spanned_name) = &table.get_ref().name else {
                return Err(self.at(
                    table,
                    "[[user]] has no name: expected e.g. name = \"alice\"",
                ));
            };
            let name = self.user_name(spanned_name, delimiter)?;
            if result.contains_key(&name) {
                return Err(self.at(
                    spanned_name,
                    format!(
                        "user \"{}\" is defined twice (names are case-insensitive)",
                        spanned_name.get_ref()
                    ),
                ));
            }
            let maildir = match &table.get_ref().maildir {
                Some(dir) => self.path("maildir", dir)?,
                None => data_dir.join("mail").join(&name),
            };
            if let Some(other) = result.values().find(|u| u.maildir == maildir) {
                let place = table.get_ref().maildir.as_ref().unwrap_or(spanned_name);
                return Err(self.at(
                    place,
                    format!(
                        "maildir \"{}\" of user \"{name}\" is also the maildir of user \"{}\": \
                         expected one maildir per user",
                        maildir.display(),
                        other.name
                    ),
                ));
            }
            let password = match &table.get_ref().password {
                Some(hash) => Some(self.password_hash(hash, &name)?),
                None => None,
            };
            let send_as = self.send_as(table.get_ref().send_as.as_ref(), &name, domains)?;
            first.get_or_insert_with(|| name.clone());
            result.insert(
                name.clone(),
                User {
                    name,
                    maildir,
                    password,
                    send_as,
                },
            );
        }
        match first {
            Some(first) => Ok((result, first)),
            None => Err(self.at(list, none)),
        }
    }

    fn user_name(
        &self,
        name: &Spanned<String>,
        delimiter: Option<char>,
    ) -> Result<String, ConfigError> {
        let value = name.get_ref();
        if let Some(d) = delimiter.filter(|d| value.contains(*d)) {
            return Err(self.at(
                name,
                format!(
                    "user name \"{value}\" contains the recipient_delimiter \"{d}\": expected \
                     a name without it, or a different recipient_delimiter"
                ),
            ));
        }
        let lower = value.to_ascii_lowercase();
        match user_name_problem(&lower) {
            Some(problem) => Err(self.at(
                name,
                format!("user name \"{value}\" is not valid: {problem}"),
            )),
            None => Ok(lower),
        }
    }

    fn postmaster(
        &self,
        name: &Spanned<String>,
        users: &BTreeMap<String, User>,
    ) -> Result<String, ConfigError> {
        let lower = name.get_ref().to_ascii_lowercase();
        if users.contains_key(&lower) {
            return Ok(lower);
        }
        Err(self.at(
            name,
            format!(
                "postmaster \"{}\" is not a user: expected one of: {}",
                name.get_ref(),
                user_list(users)
            ),
        ))
    }
}

/// The characters `recipient_delimiter` may be, for its error message.
fn delimiter_choices() -> String {
    let mut all: Vec<String> = ATEXT_SPECIALS.chars().map(String::from).collect();
    all.push(".".into());
    all.join(" ")
}

/// The user names, for "expected one of" messages.
pub(super) fn user_list(users: &BTreeMap<String, User>) -> String {
    users.keys().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A small valid file; tests append tables or prepend top-level keys.
    pub(super) const BASE: &str = r#"hostname = "Mail.Example.ORG"
data_dir = "/var/lib/tern"
domains = ["example.org", "Example.NET"]

[[listener]]
address = "0.0.0.0:25"
role = "mx"

[[user]]
name = "Alice"

[[user]]
name = "bob"
"#;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("tern.toml"))
    }

    pub(super) fn ok(text: &str) -> Config {
        parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    pub(super) fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// `BASE` with `tables` appended (only tables may follow `[[user]]`).
    pub(super) fn with(tables: &str) -> String {
        format!("{BASE}{tables}")
    }

    /// `BASE` with top-level `keys` put first.
    pub(super) fn with_keys(keys: &str) -> String {
        format!("{keys}{BASE}")
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let config = ok(BASE);
        assert_eq!(config.hostname, "mail.example.org");
        assert_eq!(config.domains, ["example.org", "example.net"]);
        assert_eq!(config.postmaster, "alice");
        assert_eq!(config.recipient_delimiter, Some('+'));
        assert_eq!(config.tls, TlsConfig::SelfSigned);
        assert!(config.aliases.is_empty());
        assert_eq!(
            config.users["alice"].maildir,
            PathBuf::from("/var/lib/tern/mail/alice")
        );
        assert_eq!(
            config.listeners,
            [Listener {
                address: "0.0.0.0:25".parse().expect("literal"),
                role: Role::Mx
            }]
        );
        let limits = config.limits;
        assert_eq!(limits.message_size, 25 * 1024 * 1024);
        assert_eq!(
            (
                limits.recipients,
                limits.connections,
                limits.connections_per_ip
            ),
            (100, 100, 10)
        );
        assert_eq!((limits.errors, limits.line_length), (10, 2048));
        assert_eq!(limits.command_timeout, Duration::from_secs(300));
        assert_eq!(limits.data_timeout, Duration::from_secs(180));
        assert_eq!(limits.session_timeout, Duration::from_secs(1800));
        assert_eq!(limits.min_data_rate, 1024);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let text = BASE.replace("/var/lib/tern", "data")
            + "maildir = \"boxes/bob\"\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"/k.pem\"\n";
        let config = Config::parse(&text, Path::new("/etc/tern/tern.toml")).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/etc/tern/data"));
        assert_eq!(
            config.users["alice"].maildir,
            PathBuf::from("/etc/tern/data/mail/alice")
        );
        assert_eq!(
            config.users["bob"].maildir,
            PathBuf::from("/etc/tern/boxes/bob")
        );
        assert_eq!(
            config.tls,
            TlsConfig::Files {
                cert: "/etc/tern/tls/cert.pem".into(),
                key: "/k.pem".into()
            }
        );
        // No directory in the origin: paths stay relative to the current directory.
        assert_eq!(ok(&text).data_dir, PathBuf::from("data"));
    }

    #[test]
    fn every_listener_role_and_ipv6() {
        let text = with(
            "[[listener]]\naddress = \"[::]:587\"\nrole = \"submission\"\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n",
        );
        let roles: Vec<Role> = ok(&text).listeners.iter().map(|l| l.role).collect();
        assert_eq!(roles, [Role::Mx, Role::Submission, Role::Submissions]);
    }

    #[test]
    fn listener_mistakes() {
        let text = with("[[listener]]\naddress = \"0.0.0.0:25\"\nrole = \"submission\"\n");
        assert_eq!(
            err(&text),
            "tern.toml:15:11: listener address \"0.0.0.0:25\" is used twice"
        );
        let text = with("[[listener]]\nrole = \"mx\"\n");
        assert!(err(&text).starts_with("tern.toml:14:1: [[listener]] has no address"));
        let text = with("[[listener]]\naddress = \"mail.example.org:25\"\nrole = \"mx\"\n");
        assert!(err(&text).contains("is not an IP address and port"));
        let text = BASE.replace("\"mx\"", "\"MX\"");
        assert_eq!(
            err(&text),
            "tern.toml:7:8: listener role \"MX\" is not one of: mx, submission, submissions, https, http"
        );
    }

    #[test]
    fn recipient_delimiter_choices() {
        assert_eq!(
            ok(&with_keys("recipient_delimiter = \"\"\n")).recipient_delimiter,
            None
        );
        assert_eq!(
            ok(&with_keys("recipient_delimiter = \"=\"\n")).recipient_delimiter,
            Some('=')
        );
        for bad in ["@", " ", "++", "a", "<", "é"] {
            let text = with_keys(&format!("recipient_delimiter = \"{bad}\"\n"));
            assert!(
                err(&text).starts_with("tern.toml:1:23: recipient_delimiter"),
                "{bad}"
            );
        }
        let text = with_keys("recipient_delimiter = \"-\"\n").replace("bob", "bo-b");
        assert!(err(&text).contains("user name \"bo-b\" contains the recipient_delimiter \"-\""));
    }

    #[test]
    fn user_mistakes() {
        let text = BASE.replace("\"bob\"", "\"ALICE\"");
        assert_eq!(
            err(&text),
            "tern.toml:13:8: user \"ALICE\" is defined twice (names are case-insensitive)"
        );
        let text = BASE.replace("\"bob\"", "\"b b\"");
        assert!(err(&text).starts_with("tern.toml:13:8: user name \"b b\" is not valid"));
        let text = with("[[user]]\nmaildir = \"/x\"\n");
        assert!(err(&text).starts_with("tern.toml:14:1: [[user]] has no name"));
        let text = with("maildir = \"/var/lib/tern/mail/alice\"\n");
        assert!(err(&text).contains("is also the maildir of user \"alice\""));
        let no_users = BASE.split("[[user]]").next().unwrap_or_default();
        assert!(err(no_users).starts_with("tern.toml: no [[user]] defined"));
        let text = format!("user = []\n{no_users}");
        assert!(err(&text).starts_with("tern.toml:1:8: no [[user]]"));
    }

    #[test]
    fn postmaster_defaults_to_the_first_user_or_names_one() {
        assert_eq!(ok(&with_keys("postmaster = \"BOB\"\n")).postmaster, "bob");
        assert_eq!(
            err(&with_keys("postmaster = \"carol\"\n")),
            "tern.toml:1:14: postmaster \"carol\" is not a user: expected one of: alice, bob"
        );
        // "postmaster" itself may be a user name.
        let text = BASE.replace("\"bob\"", "\"postmaster\"");
        assert_eq!(ok(&text).postmaster, "alice");
    }

    #[test]
    fn missing_required_keys_have_no_position() {
        let text = BASE.replacen("hostname = \"Mail.Example.ORG\"\n", "", 1);
        assert!(err(&text).starts_with("tern.toml: missing key \"hostname\""));
        let text = BASE.replacen("data_dir = \"/var/lib/tern\"\n", "", 1);
        assert!(err(&text).starts_with("tern.toml: missing key \"data_dir\""));
        let text = BASE.replacen("domains = [\"example.org\", \"Example.NET\"]\n", "", 1);
        assert!(err(&text).starts_with("tern.toml: missing key \"domains\""));
        let text = with_keys("data_dir = \"\"\n").replacen("data_dir = \"/var/lib/tern\"\n", "", 1);
        assert_eq!(
            err(&text),
            "tern.toml:1:12: data_dir is empty: expected a path"
        );
    }

    #[test]
    fn a_quoted_value_with_a_newline_keeps_the_message_on_one_line() {
        // The fuzzer's find: a TOML escape put a line break into the text of
        // an error, which split `file:line:col: message` over two lines.
        let text = BASE.replace("Mail.Example.ORG", "mail\\n_x.example.org");
        let shown = err(&text);
        assert!(!shown.contains('\n'), "{shown:?}");
        assert!(
            shown.starts_with("tern.toml:1:12: hostname \"mail\\n_x"),
            "{shown}"
        );
    }

    #[test]
    fn domain_mistakes() {
        let text = BASE.replace("\"Example.NET\"", "\"example.ORG\"");
        assert_eq!(
            err(&text),
            "tern.toml:3:27: domain \"example.ORG\" is listed twice"
        );
        let text = BASE.replace("\"Example.NET\"", "\"example.net.\"");
        assert!(err(&text).contains("ends with a dot; write it without the trailing dot"));
        let text = BASE.replace("[\"example.org\", \"Example.NET\"]", "[]");
        assert!(err(&text).starts_with("tern.toml:3:11: domains is empty"));
        let text = BASE.replace("Mail.Example.ORG", "mail_1.example.org");
        assert_eq!(
            err(&text),
            "tern.toml:1:12: hostname \"mail_1.example.org\" is not a valid DNS name: \
             label \"mail_1\" may hold only letters, digits and hyphens"
        );
    }

    #[test]
    fn tls_needs_both_files_or_neither() {
        assert_eq!(ok(&with("[tls]\n")).tls, TlsConfig::SelfSigned);
        assert!(err(&with("[tls]\ncert = \"/c.pem\"\n"))
            .starts_with("tern.toml:14:1: [tls] has cert but no key"));
        assert!(err(&with("[tls]\nkey = \"/k.pem\"\n")).contains("[tls] has key but no cert"));
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = Config::default_config();
        assert_eq!(config.hostname, "localhost");
        assert_eq!(config.data_dir, PathBuf::from("tern-data"));
        assert_eq!(config.postmaster, "me");
        assert_eq!(
            config.users["me"].maildir,
            PathBuf::from("tern-data/mail/me")
        );
    }

    #[test]
    fn summary_is_one_line() {
        let config = ok(&with("[aliases]\ninfo = \"alice\"\n"));
        assert_eq!(
            config.summary(Path::new("/etc/tern/tern.toml")),
            "ok: /etc/tern/tern.toml: hostname mail.example.org, 1 listener (mx 0.0.0.0:25), \
             2 domains, 2 users, 1 alias"
        );
        let config = ok(&with(
            "[relay.smarthost]\nhost = \"smtp.provider.example:465\"\n",
        ));
        assert!(config
            .summary(Path::new("tern.toml"))
            .ends_with(", 2 users, 0 aliases, smarthost smtp.provider.example:465"));
        let config = ok(&with("[relay.smarthost]\nhost = \"2001:db8::1\"\n"));
        assert!(config
            .summary(Path::new("tern.toml"))
            .ends_with(", smarthost [2001:db8::1]:587"));
    }
}
