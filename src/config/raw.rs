//! [`RawConfig`]: the shape of `tern.toml` exactly as written, before validation.
//!
//! serde checks the structure (known keys only, via `deny_unknown_fields`; the right
//! TOML types); every value whose meaning `validate` can still reject keeps its byte
//! span ([`Spanned`]) so that error can name `file:line:col`. Required keys are
//! `Option` here on purpose: `validate` reports a missing key in its own words.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::{syntax, ConfigError};

/// The whole file. Field names are the TOML keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub hostname: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub domains: Option<Spanned<Vec<Spanned<String>>>>,
    pub postmaster: Option<Spanned<String>>,
    pub recipient_delimiter: Option<Spanned<String>>,
    /// `[[listener]]` tables, in file order.
    pub listener: Option<Spanned<Vec<Spanned<RawListener>>>>,
    pub tls: Option<Spanned<RawTls>>,
    /// `[[user]]` tables, in file order.
    pub user: Option<Spanned<Vec<Spanned<RawUser>>>>,
    #[serde(default)]
    pub aliases: RawAliases,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub relay: RawRelay,
    /// `[[route]]` tables, in file order.
    pub route: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    #[serde(default)]
    pub queue: RawQueue,
    /// `[dkim]`; absent means no signing.
    pub dkim: Option<Spanned<RawDkim>>,
    #[serde(default)]
    pub submission: RawSubmission,
    #[serde(default)]
    pub mx: RawMx,
    /// `[dovecot]`; absent means no user database is written.
    pub dovecot: Option<Spanned<RawDovecot>>,
    /// `[local_senders]`: Unix login = address(es) it may send as.
    #[serde(default)]
    pub local_senders: RawLocalSenders,
    /// The addresses the world reaches this server at.
    pub public_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[check]`: settings of `tern check`.
    #[serde(default)]
    pub check: RawCheck,
    /// `[acme]`; absent means `[tls]` (or self-signed) decides.
    pub acme: Option<Spanned<RawAcme>>,
    /// `[mta_sts]`; absent means no policy is served.
    pub mta_sts: Option<Spanned<RawMtaSts>>,
    /// `[autoconfig]`; absent means no client autoconfiguration.
    pub autoconfig: Option<Spanned<RawAutoconfig>>,
    /// `[spam]`: the rspamd filter; absent (or without `rspamd`) means off.
    #[serde(default)]
    pub spam: RawSpam,
}

/// The `[acme]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [acme] table")]
pub(crate) struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub staging: Option<Spanned<bool>>,
    pub contact: Option<Spanned<String>>,
    pub challenge: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub reload_command: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The `[mta_sts]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an [mta_sts] table with mode and max_age"
)]
pub(crate) struct RawMtaSts {
    pub mode: Option<Spanned<String>>,
    pub max_age: Option<Spanned<RawDuration>>,
}

/// The `[autoconfig]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an [autoconfig] table with imap_port"
)]
pub(crate) struct RawAutoconfig {
    pub imap_port: Option<Spanned<RawCount>>,
}

/// The `[spam]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [spam] table")]
pub(crate) struct RawSpam {
    pub rspamd: Option<Spanned<String>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub on_failure: Option<Spanned<String>>,
    pub scan_authenticated: Option<bool>,
}

/// The `[check]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [check] table with blocklists")]
pub(super) struct RawCheck {
    /// DNS blocklist zones.
    pub blocklists: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The `[dovecot]` table: where tern writes the IMAP/POP3 server's users.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [dovecot] table with users_file and optionally group"
)]
pub(super) struct RawDovecot {
    pub users_file: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

/// The `[mx]` table (checks on mail from other servers); every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [mx] table")]
pub(crate) struct RawMx {
    pub verify_sender_domain: Option<bool>,
    pub sender_domain_exempt: Option<Spanned<Vec<Spanned<String>>>>,
    pub dns_timeout: Option<Spanned<RawDuration>>,
    pub authenticate: Option<bool>,
    pub dmarc_reject: Option<bool>,
    pub spf_fail: Option<Spanned<String>>,
    pub dkim_max_size: Option<Spanned<RawSize>>,
}

/// The `[submission]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [submission] table")]
pub(crate) struct RawSubmission {
    pub trace: Option<bool>,
}

/// One `[[listener]]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[listener]] table with address and role"
)]
pub(crate) struct RawListener {
    pub address: Option<Spanned<String>>,
    pub role: Option<Spanned<String>>,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [tls] table with cert and key")]
pub(crate) struct RawTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// One `[[user]]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[user]] table with name and optionally maildir, password and send_as"
)]
pub(crate) struct RawUser {
    pub name: Option<Spanned<String>>,
    pub maildir: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    /// Extra addresses (or `@domain`s) this user may send as.
    pub send_as: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The `[limits]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
pub(crate) struct RawLimits {
    pub message_size: Option<Spanned<RawSize>>,
    pub recipients: Option<Spanned<RawCount>>,
    pub local_messages_per_hour: Option<Spanned<RawCount>>,
    pub connections: Option<Spanned<RawCount>>,
    pub connections_per_ip: Option<Spanned<RawCount>>,
    pub errors: Option<Spanned<RawCount>>,
    pub line_length: Option<Spanned<RawCount>>,
    pub command_timeout: Option<Spanned<RawDuration>>,
    pub data_timeout: Option<Spanned<RawDuration>>,
    pub session_timeout: Option<Spanned<RawDuration>>,
    pub min_data_rate: Option<Spanned<RawSize>>,
    /// Free space kept in reserve on data_dir's filesystem; `0` turns it off.
    pub free_space: Option<Spanned<RawSize>>,
    /// `[limits.mx]`: the connection budget of the mx listeners.
    pub mx: Option<Spanned<RawBudget>>,
    /// `[limits.submission]`: the connection budget of port 587.
    pub submission: Option<Spanned<RawBudget>>,
    /// `[limits.submissions]`: the connection budget of port 465.
    pub submissions: Option<Spanned<RawBudget>>,
}

/// `[limits.<role>]`: one listener role's connection budget; absent keys
/// take the `[limits]` value.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with connections and/or connections_per_ip"
)]
pub(crate) struct RawBudget {
    pub connections: Option<Spanned<RawCount>>,
    pub connections_per_ip: Option<Spanned<RawCount>>,
}

/// The `[relay]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [relay] table")]
pub(crate) struct RawRelay {
    pub nameservers: Option<Spanned<Vec<Spanned<String>>>>,
    pub port: Option<Spanned<RawCount>>,
    pub tls: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub concurrency_per_destination: Option<Spanned<RawCount>>,
    pub connect_timeout: Option<Spanned<RawDuration>>,
    pub command_timeout: Option<Spanned<RawDuration>>,
    /// `[relay.smarthost]`.
    pub smarthost: Option<Spanned<RawSmarthost>>,
}

/// The `[relay.smarthost]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [relay.smarthost] table with host and optionally port, tls, user, password"
)]
pub(crate) struct RawSmarthost {
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<RawCount>>,
    pub tls: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
}

/// One `[[route]]` table.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[route]] table with domain, and host or tls"
)]
pub(crate) struct RawRoute {
    pub domain: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub tls: Option<Spanned<String>>,
}

/// The `[queue]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [queue] table")]
pub(crate) struct RawQueue {
    pub lifetime: Option<Spanned<RawDuration>>,
    pub delay_notice: Option<Spanned<RawDuration>>,
    pub retry_first: Option<Spanned<RawDuration>>,
    pub retry_max: Option<Spanned<RawDuration>>,
}

/// The `[dkim]` table; every key is optional.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [dkim] table with optionally selector, keys and domains"
)]
pub(crate) struct RawDkim {
    pub selector: Option<Spanned<String>>,
    pub keys: Option<Spanned<String>>,
    pub domains: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The `[aliases]` table: `(source, targets)` pairs in file order.
#[derive(Debug, Default)]
pub(crate) struct RawAliases(pub Vec<(Spanned<String>, Spanned<RawTargets>)>);

/// The `[local_senders]` table has the shape of `[aliases]`: `(Unix login,
/// address or addresses)` pairs in file order.
pub(crate) type RawLocalSenders = RawAliases;

/// The value of one alias: a single target or an array of them.
#[derive(Debug)]
pub(crate) enum RawTargets {
    /// `"info" = "alice"`; its span is the span of the enclosing `Spanned`.
    One(String),
    /// `"info" = ["alice", "bob"]`.
    Many(Vec<Spanned<String>>),
}

/// A TOML value that may be an integer or a string, such as `25M` or `"25M"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrText {
    Int(i64),
    Text(String),
}

/// A size: bytes as an integer, or a string with a unit (see `units::parse_size`).
#[derive(Debug)]
pub(crate) struct RawSize(pub IntOrText);

/// A duration: seconds as an integer, or a string with units (`units::parse_duration`).
#[derive(Debug)]
pub(crate) struct RawDuration(pub IntOrText);

/// A count: an integer, range-checked by `validate`.
#[derive(Debug)]
pub(crate) struct RawCount(pub i64);

impl RawConfig {
    /// Parses `text` as TOML into the raw schema. Syntax errors, unknown keys and
    /// values of the wrong type become a [`ConfigError`] at their `line:col`.
    pub(crate) fn from_toml(text: &str, origin: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            // A string left open makes the parser stumble later (inside an
            // array, lines later): the open quote is the place to show.
            if let Some((open, quote)) = syntax::unclosed_string(text) {
                if e.span().is_none_or(|s| s.start >= open.start) {
                    let message = format!(
                        "string is not closed: expected `{quote}` before the end of the line"
                    );
                    return ConfigError::at(origin, text, open, message);
                }
            }
            match e.span() {
                Some(span) => {
                    let found = text.get(span.clone()).unwrap_or("");
                    let message = syntax::bare_word(text, span.start)
                        .filter(|_| is_value_error(message))
                        .unwrap_or_else(|| house_style(message, found));
                    ConfigError::at(origin, text, span, message)
                }
                None => ConfigError::whole_file(origin, house_style(message, "")),
            }
        })
    }
}

/// Is `message` the parser's complaint about a value it could not read
/// (where a bare word reads as a boolean or a string gone wrong)?
fn is_value_error(message: &str) -> bool {
    message.starts_with("invalid boolean") || message.starts_with("string values must be quoted")
}

/// Rewrites the few toml/serde messages that name things in Rust terms or leave
/// out the offending key: serde's "unknown field `x`, expected one of `a`, `b`"
/// becomes `unknown key "x", expected one of: a, b`, and toml's bare "duplicate
/// key" names the key (`found` is the text at the error's span). Also "a
/// sequence" becomes "an array", as TOML calls it; a string left open says so.
fn house_style(message: &str, found: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let mut names = rest.split('`').step_by(2).filter(|n| !n.is_empty());
        if let Some(key) = names.next() {
            let known: Vec<&str> = names.collect();
            return if known.is_empty() {
                format!("unknown key \"{key}\": this table takes no keys")
            } else {
                format!(
                    "unknown key \"{key}\", expected one of: {}",
                    known.join(", ")
                )
            };
        }
    }
    if message == "duplicate key" && !found.is_empty() {
        let key = found.trim_matches(|c| c == '"' || c == '\'');
        return format!("duplicate key \"{key}\": each key may appear once per table");
    }
    // The toml parser reports a string left open at the end of its line.
    match message {
        "invalid basic string, expected `\"`" => {
            return "string is not closed: expected `\"` before the end of the line".into()
        }
        "invalid literal string, expected `'`" => {
            return "string is not closed: expected `'` before the end of the line".into()
        }
        _ => {}
    }
    // serde names a Vec "a sequence" and a too-large integer "… as i128".
    message
        .replace("expected a sequence", "expected an array")
        .replace(" as i128", "")
}

impl<'de> Deserialize<'de> for RawAliases {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AliasesVisitor;
        impl<'de> Visitor<'de> for AliasesVisitor {
            type Value = RawAliases;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of alias = target(s)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAliases, A::Error> {
                let mut entries: Vec<(Spanned<String>, Spanned<RawTargets>)> = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // The deserializer may hand keys over sorted; file order reads better
                // in messages and summaries, and the spans tell it.
                entries.sort_by_key(|(key, _)| key.span().start);
                Ok(RawAliases(entries))
            }
        }
        deserializer.deserialize_map(AliasesVisitor)
    }
}

impl<'de> Deserialize<'de> for RawTargets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetsVisitor;
        impl<'de> Visitor<'de> for TargetsVisitor {
            type Value = RawTargets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user name or address, or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTargets, E> {
                Ok(RawTargets::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawTargets, A::Error> {
                let mut targets = Vec::new();
                while let Some(target) = seq.next_element()? {
                    targets.push(target);
                }
                Ok(RawTargets::Many(targets))
            }
        }
        deserializer.deserialize_any(TargetsVisitor)
    }
}

/// Accepts an integer or a string; `expecting` names what the key wants.
struct IntOrTextVisitor {
    expecting: &'static str,
}

impl<'de> Visitor<'de> for IntOrTextVisitor {
    type Value = IntOrText;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrText, E> {
        Ok(IntOrText::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrText, E> {
        i64::try_from(v)
            .map(IntOrText::Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrText, E> {
        Ok(IntOrText::Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a size: a number of bytes, or a string like \"25M\"";
        deserializer
            .deserialize_any(IntOrTextVisitor { expecting })
            .map(RawSize)
    }
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a duration: a number of seconds, or a string like \"5m\"";
        deserializer
            .deserialize_any(IntOrTextVisitor { expecting })
            .map(RawDuration)
    }
}

impl<'de> Deserialize<'de> for RawCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a whole number";
        match deserializer.deserialize_any(IntOrTextVisitor { expecting })? {
            IntOrText::Int(n) => Ok(RawCount(n)),
            IntOrText::Text(s) => Err(de::Error::invalid_type(de::Unexpected::Str(&s), &expecting)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        RawConfig::from_toml(text, Path::new("tern.toml"))
            .expect_err(text)
            .to_string()
    }

    #[test]
    fn unknown_keys_are_named_with_the_known_ones() {
        assert_eq!(
            error("hostname = \"x\"\n[tls]\ncrt = \"a\"\n"),
            "tern.toml:3:1: unknown key \"crt\", expected one of: cert, key"
        );
    }

    #[test]
    fn duplicate_keys_are_named() {
        assert_eq!(
            error("hostname = \"x\"\nhostname = \"y\"\n"),
            "tern.toml:2:1: duplicate key \"hostname\": each key may appear once per table"
        );
    }

    #[test]
    fn unclosed_strings_say_so() {
        assert_eq!(
            error("hostname = \"x\ndata_dir = 'y\n"),
            "tern.toml:1:12: string is not closed: expected `\"` before the end of the line"
        );
        assert_eq!(
            error("data_dir = 'y\n"),
            "tern.toml:1:12: string is not closed: expected `'` before the end of the line"
        );
    }

    #[test]
    fn wrong_types_say_what_the_key_wants() {
        assert_eq!(
            error("tls = 5\n"),
            "tern.toml:1:7: invalid type: integer `5`, expected a [tls] table with cert and key"
        );
        assert_eq!(
            error("[limits]\nrecipients = \"many\"\n"),
            "tern.toml:2:14: invalid type: string \"many\", expected a whole number"
        );
        assert_eq!(
            error("[limits]\ndata_timeout = 1.5\n"),
            "tern.toml:2:16: invalid type: floating point `1.5`, \
             expected a duration: a number of seconds, or a string like \"5m\""
        );
    }

    #[test]
    fn aliases_keep_file_order_and_spans() {
        let raw = RawConfig::from_toml(
            "[aliases]\nzed = \"a\"\n\"@x.org\" = [\"b\", \"c\"]\nabc = \"d\"\n",
            Path::new("tern.toml"),
        )
        .expect("valid");
        let keys: Vec<&str> = raw
            .aliases
            .0
            .iter()
            .map(|(k, _)| k.get_ref().as_str())
            .collect();
        assert_eq!(keys, ["zed", "@x.org", "abc"]);
        match raw.aliases.0[1].1.get_ref() {
            RawTargets::Many(t) => assert_eq!(t.len(), 2),
            RawTargets::One(_) => panic!("expected an array"),
        }
    }

    #[test]
    fn sizes_and_durations_take_integers_or_strings() {
        let raw = RawConfig::from_toml(
            "[limits]\nmessage_size = 1024\ncommand_timeout = \"5m\"\n",
            Path::new("tern.toml"),
        )
        .expect("valid");
        let size = raw.limits.message_size.expect("present");
        assert_eq!(size.get_ref().0, IntOrText::Int(1024));
        let timeout = raw.limits.command_timeout.expect("present");
        assert_eq!(timeout.get_ref().0, IntOrText::Text("5m".into()));
    }
}
