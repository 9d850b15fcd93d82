//! How mail leaves: the `[relay]` table (nameservers, port, TLS policy, CA
//! bundle, concurrency, timeouts), `[relay.smarthost]` (one host for all
//! outgoing mail, with its port, TLS mode and credentials) and the `[[route]]`
//! tables (per-domain exceptions: a fixed host and/or a TLS policy). Every key
//! is optional; an absent one takes the default of [`Relay`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::names::host_and_port;
use crate::config::raw::{RawRelay, RawRoute, RawSmarthost};
use crate::config::{
    ConfigError, Credentials, DomainRoute, Relay, Smarthost, SmarthostTls, TlsPolicy,
};

/// The DNS port, when a nameserver is given without one.
const DNS_PORT: u16 = 53;
/// Submission with STARTTLS (RFC 6409) and with implicit TLS (RFC 8314 §3.3).
const SUBMISSION_PORT: u16 = 587;
const SUBMISSIONS_PORT: u16 = 465;

impl Checker<'_> {
    /// `[relay]` with `[relay.smarthost]`, and the `[[route]]` tables, which
    /// must not name a local domain (`domains`).
    pub(super) fn relay(
        &self,
        raw: &RawRelay,
        routes: Option<&Spanned<Vec<Spanned<RawRoute>>>>,
        domains: &[String],
    ) -> Result<Relay, ConfigError> {
        let defaults = Relay::default();
        let nameservers = match &raw.nameservers {
            Some(list) => self.nameservers(list)?,
            None => defaults.nameservers,
        };
        let port = self
            .port("relay.port", raw.port.as_ref())?
            .unwrap_or(defaults.port);
        let tls = match &raw.tls {
            Some(policy) => self.tls_policy("relay tls", policy)?,
            None => defaults.tls,
        };
        let ca_file = match &raw.ca_file {
            Some(path) => self.path("relay ca_file", path)?,
            None => defaults.ca_file,
        };
        let concurrency_per_destination = self.count(
            "relay.concurrency_per_destination",
            raw.concurrency_per_destination.as_ref(),
            defaults.concurrency_per_destination,
            1,
            "",
        )?;
        let second = Duration::from_secs(1);
        let connect_timeout = self.duration(
            "relay.connect_timeout",
            raw.connect_timeout.as_ref(),
            defaults.connect_timeout,
            second,
        )?;
        let command_timeout = self.duration(
            "relay.command_timeout",
            raw.command_timeout.as_ref(),
            defaults.command_timeout,
            second,
        )?;
        let smarthost = match &raw.smarthost {
            Some(table) => Some(self.smarthost(table)?),
            None => None,
        };
        let routes = match routes {
            Some(list) => self.routes(list, domains, port)?,
            None => Vec::new(),
        };
        Ok(Relay {
            nameservers,
            port,
            tls,
            ca_file,
            smarthost,
            routes,
            concurrency_per_destination,
            connect_timeout,
            command_timeout,
        })
    }

    /// IP addresses with optional ports; an empty array means the system's
    /// resolvers, as if the key were absent.
    fn nameservers(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        let mut result: Vec<SocketAddr> = Vec::new();
        for spanned in list.get_ref() {
            let written = spanned.get_ref();
            let Some(address) = nameserver_address(written) else {
                return Err(self.at(
                    spanned,
                    format!(
                        "relay nameserver \"{written}\" is not an IP address: expected an IP \
                         address with an optional port, e.g. \"192.0.2.53\", \
                         \"192.0.2.53:5353\", \"::1\" or \"[::1]:53\""
                    ),
                ));
            };
            if address.port() == 0 {
                return Err(self.at(
                    spanned,
                    format!(
                        "relay nameserver \"{written}\" has port 0: expected a port from 1 \
                         to 65535, or none for {DNS_PORT}"
                    ),
                ));
            }
            if result.contains(&address) {
                return Err(self.at(
                    spanned,
                    format!("relay nameserver \"{written}\" is listed twice"),
                ));
            }
            result.push(address);
        }
        Ok(result)
    }

    /// `opportunistic` or `required`.
    fn tls_policy(&self, what: &str, policy: &Spanned<String>) -> Result<TlsPolicy, ConfigError> {
        match policy.get_ref().as_str() {
            "opportunistic" => Ok(TlsPolicy::Opportunistic),
            "required" => Ok(TlsPolicy::Required),
            other => Err(self.at(
                policy,
                format!("{what} \"{other}\" is not one of: opportunistic, required"),
            )),
        }
    }

    /// `host` or `host:port` (see [`host_and_port`]); `example` shows the form
    /// expected in the message.
    fn host(
        &self,
        what: &str,
        host: &Spanned<String>,
        example: &str,
    ) -> Result<(String, Option<u16>), ConfigError> {
        host_and_port(host.get_ref()).map_err(|problem| {
            self.at(
                host,
                format!(
                    "{what} \"{}\" is not valid: {problem}; expected a host name or IP \
                     address, optionally with :port, e.g. \"{example}\"",
                    host.get_ref()
                ),
            )
        })
    }

    /// The smarthost. Port and TLS mode default from each other: port 465 means
    /// implicit TLS and implicit TLS means port 465; otherwise 587 and STARTTLS.
    fn smarthost(&self, table: &Spanned<RawSmarthost>) -> Result<Smarthost, ConfigError> {
        let raw = table.get_ref();
        let Some(spanned_host) = &raw.host else {
            return Err(self.at(
                table,
                "[relay.smarthost] has no host: expected e.g. host = \"smtp.provider.example\"",
            ));
        };
        let (host, port_in_host) =
            self.host("smarthost host", spanned_host, "smtp.provider.example:587")?;
        let port_key = self.port("relay.smarthost.port", raw.port.as_ref())?;
        if let (Some(_), Some(port)) = (port_in_host, &raw.port) {
            return Err(self.at(
                port,
                format!(
                    "relay.smarthost.port repeats the port of host \"{}\": expected the \
                     port in host or in port, not both",
                    spanned_host.get_ref()
                ),
            ));
        }
        let tls = match &raw.tls {
            Some(mode) => Some(match mode.get_ref().as_str() {
                "starttls" => SmarthostTls::StartTls,
                "implicit" => SmarthostTls::Implicit,
                other => {
                    return Err(self.at(
                        mode,
                        format!("smarthost tls \"{other}\" is not one of: starttls, implicit"),
                    ))
                }
            }),
            None => None,
        };
        let (port, tls) = match (port_in_host.or(port_key), tls) {
            (Some(port), Some(tls)) => (port, tls),
            (Some(SUBMISSIONS_PORT), None) => (SUBMISSIONS_PORT, SmarthostTls::Implicit),
            (Some(port), None) => (port, SmarthostTls::StartTls),
            (None, Some(SmarthostTls::Implicit)) => (SUBMISSIONS_PORT, SmarthostTls::Implicit),
            (None, _) => (SUBMISSION_PORT, SmarthostTls::StartTls),
        };
        let both = "expected both user and password, or neither (then no AUTH)";
        let auth = match (&raw.user, &raw.password) {
            (Some(user), Some(password)) => Some(Credentials {
                user: self.secret("smarthost user", user)?,
                password: self.secret("smarthost password", password)?,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.at(
                    table,
                    format!("[relay.smarthost] has user but no password: {both}"),
                ))
            }
            (None, Some(_)) => {
                return Err(self.at(
                    table,
                    format!("[relay.smarthost] has password but no user: {both}"),
                ))
            }
        };
        Ok(Smarthost {
            host,
            port,
            tls,
            auth,
        })
    }

    /// A user name or password for AUTH: not empty, and no NUL, which separates
    /// the fields of AUTH PLAIN (RFC 4616 §2).
    fn secret(&self, what: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let text = value.get_ref();
        if text.is_empty() {
            return Err(self.at(
                value,
                format!("{what} is empty: expected the one the provider gave you"),
            ));
        }
        if text.contains('\0') {
            return Err(self.at(
                value,
                format!("{what} contains a NUL character, which AUTH cannot send"),
            ));
        }
        Ok(text.clone())
    }

    /// The routes in file order, one per domain; a host without a port gets
    /// `default_port` (`relay.port`).
    fn routes(
        &self,
        list: &Spanned<Vec<Spanned<RawRoute>>>,
        domains: &[String],
        default_port: u16,
    ) -> Result<Vec<DomainRoute>, ConfigError> {
        let mut result: Vec<DomainRoute> = Vec::new();
        for table in list.get_ref() {
            let raw = table.get_ref();
            let Some(spanned_domain) = &raw.domain else {
                return Err(self.at(
                    table,
                    "[[route]] has no domain: expected e.g. domain = \"partner.example\"",
                ));
            };
            let written = spanned_domain.get_ref();
            let domain = self.dns_name("route domain", spanned_domain)?;
            if domains.contains(&domain) {
                return Err(self.at(
                    spanned_domain,
                    format!(
                        "route domain \"{written}\" is a local domain; local mail never leaves"
                    ),
                ));
            }
            if result.iter().any(|r| r.domain == domain) {
                return Err(self.at(
                    spanned_domain,
                    format!(
                        "[[route]] for \"{written}\" is defined twice (domains are \
                         case-insensitive)"
                    ),
                ));
            }
            let host = match &raw.host {
                Some(host) => {
                    let (name, port) = self.host("route host", host, "mx.partner.example:2525")?;
                    Some((name, port.unwrap_or(default_port)))
                }
                None => None,
            };
            let tls = match &raw.tls {
                Some(policy) => Some(self.tls_policy("route tls", policy)?),
                None => None,
            };
            if host.is_none() && tls.is_none() {
                return Err(self.at(
                    table,
                    format!(
                        "[[route]] for \"{written}\" sets neither host nor tls: expected \
                         host = \"mx.{domain}\", tls = \"required\", or both"
                    ),
                ));
            }
            result.push(DomainRoute { domain, host, tls });
        }
        Ok(result)
    }
}

/// `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`; port 53 when none is given.
fn nameserver_address(text: &str) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let bracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    let ip = match bracketed {
        Some(inside) => IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?),
        None => text.parse::<IpAddr>().ok()?,
    };
    Some(SocketAddr::new(ip, DNS_PORT))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::tests::{err, ok, with, with_keys, BASE};
    use crate::config::{
        Config, Credentials, DomainRoute, Relay, Smarthost, SmarthostTls, TlsPolicy,
    };

    /// `BASE` with `[relay]` holding `keys`.
    fn relay(keys: &str) -> String {
        with(&format!("[relay]\n{keys}\n"))
    }

    /// `BASE` with `[relay.smarthost]` holding `keys`.
    fn smarthost(keys: &str) -> Option<Smarthost> {
        ok(&with(&format!("[relay.smarthost]\n{keys}\n")))
            .relay
            .smarthost
    }

    #[test]
    fn no_relay_table_means_the_documented_defaults() {
        let config = ok(BASE);
        assert_eq!(config.relay, Relay::default());
        assert!(config.relay.nameservers.is_empty());
        assert_eq!(config.relay.port, 25);
        assert_eq!(config.relay.tls, TlsPolicy::Opportunistic);
        assert_eq!(config.relay.concurrency_per_destination, 4);
        assert_eq!(ok(&relay("")).relay, Relay::default());
        assert_eq!(ok(&relay("nameservers = []")).relay, Relay::default());
    }

    #[test]
    fn every_relay_key() {
        let config = Config::parse(
            &relay(
                "nameservers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"::1\", \"[2001:db8::53]\", \
                 \"[::1]:5300\"]\nport = 2525\ntls = \"required\"\nca_file = \"certs/ca.pem\"\n\
                 concurrency_per_destination = 1\nconnect_timeout = 10\ncommand_timeout = \"2m\"",
            ),
            std::path::Path::new("/etc/tern/tern.toml"),
        )
        .expect("valid");
        let relay = config.relay;
        let names: Vec<String> = relay.nameservers.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            names,
            [
                "127.0.0.1:5353",
                "192.0.2.53:53",
                "[::1]:53",
                "[2001:db8::53]:53",
                "[::1]:5300"
            ]
        );
        assert_eq!(relay.port, 2525);
        assert_eq!(relay.tls, TlsPolicy::Required);
        assert_eq!(relay.ca_file, PathBuf::from("/etc/tern/certs/ca.pem"));
        assert_eq!(relay.concurrency_per_destination, 1);
        assert_eq!(relay.connect_timeout, Duration::from_secs(10));
        assert_eq!(relay.command_timeout, Duration::from_secs(120));
    }

    #[test]
    fn relay_mistakes() {
        let cases = [
            (
                "tls = \"maybe\"",
                "tern.toml:15:7: relay tls \"maybe\" is not one of: opportunistic, required",
            ),
            (
                "nameservers = [\"192.0.2.53\", \"dns.example\"]",
                "tern.toml:15:30: relay nameserver \"dns.example\" is not an IP address: \
                 expected an IP address with an optional port, e.g. \"192.0.2.53\", \
                 \"192.0.2.53:5353\", \"::1\" or \"[::1]:53\"",
            ),
            (
                "nameservers = [\"192.0.2.53:0\"]",
                "tern.toml:15:16: relay nameserver \"192.0.2.53:0\" has port 0: expected a \
                 port from 1 to 65535, or none for 53",
            ),
            (
                "nameservers = [\"192.0.2.53\", \"192.0.2.53:53\"]",
                "tern.toml:15:30: relay nameserver \"192.0.2.53:53\" is listed twice",
            ),
            (
                "nameservers = \"192.0.2.53\"",
                "tern.toml:15:15: invalid type: string \"192.0.2.53\", expected an array",
            ),
            (
                "port = 0",
                "tern.toml:15:8: relay.port 0 is not a port: expected a number from 1 to 65535",
            ),
            (
                "port = 70000",
                "tern.toml:15:8: relay.port 70000 is not a port: expected a number from 1 \
                 to 65535",
            ),
            (
                "ca_file = \"\"",
                "tern.toml:15:11: relay ca_file is empty: expected a path",
            ),
            (
                "concurrency_per_destination = 0",
                "tern.toml:15:31: relay.concurrency_per_destination 0 is too small: expected \
                 at least 1",
            ),
            (
                "connect_timeout = \"0s\"",
                "tern.toml:15:19: relay.connect_timeout \"0s\" is too short: expected at \
                 least 1 second",
            ),
            (
                "command_timeout = \"five\"",
                "tern.toml:15:19: relay.command_timeout \"five\" is not a duration: expected \
                 a whole number of seconds, or whole numbers each followed by s, m, h or d, \
                 e.g. \"90s\", \"5m\", \"1h30m\"",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(err(&relay(line)), expected, "{line}");
        }
        assert!(err(&relay("timeout = 5")).starts_with(
            "tern.toml:15:1: unknown key \"timeout\", expected one of: nameservers, port, tls, \
             ca_file, concurrency_per_destination, connect_timeout, command_timeout, smarthost"
        ));
    }

    #[test]
    fn smarthost_port_and_tls_default_from_each_other() {
        let host = |keys: &str| {
            let s = smarthost(keys).expect("a smarthost");
            (s.host, s.port, s.tls)
        };
        let name = || "smtp.provider.example".to_string();
        assert_eq!(
            host("host = \"SMTP.Provider.example\""),
            (name(), 587, SmarthostTls::StartTls)
        );
        assert_eq!(
            host("host = \"smtp.provider.example\"\nport = 465"),
            (name(), 465, SmarthostTls::Implicit)
        );
        assert_eq!(
            host("host = \"smtp.provider.example:465\""),
            (name(), 465, SmarthostTls::Implicit)
        );
        assert_eq!(
            host("host = \"smtp.provider.example\"\ntls = \"implicit\""),
            (name(), 465, SmarthostTls::Implicit)
        );
        assert_eq!(
            host("host = \"smtp.provider.example:2587\"\ntls = \"implicit\""),
            (name(), 2587, SmarthostTls::Implicit)
        );
        assert_eq!(
            host("host = \"smtp.provider.example\"\nport = 465\ntls = \"starttls\""),
            (name(), 465, SmarthostTls::StartTls)
        );
        assert_eq!(
            host("host = \"smtp.provider.example:25\""),
            (name(), 25, SmarthostTls::StartTls)
        );
        assert_eq!(
            host("host = \"[2001:db8::587]:587\""),
            ("2001:db8::587".into(), 587, SmarthostTls::StartTls)
        );
    }

    #[test]
    fn smarthost_credentials_are_both_or_neither() {
        let s = smarthost(
            "host = \"smtp.provider.example\"\nuser = \"me@provider.example\"\n\
             password = \"s3cret\"",
        )
        .expect("a smarthost");
        assert_eq!(
            s.auth,
            Some(Credentials {
                user: "me@provider.example".into(),
                password: "s3cret".into()
            })
        );
        assert!(!format!("{s:?}").contains("s3cret"));
        let s = smarthost("host = \"smtp.provider.example\"").expect("a smarthost");
        assert_eq!(s.auth, None);
    }

    #[test]
    fn smarthost_mistakes() {
        let cases = [
            (
                "port = 587",
                "tern.toml:14:1: [relay.smarthost] has no host: expected e.g. \
                 host = \"smtp.provider.example\"",
            ),
            (
                "host = \"smtp.provider.example\"\nuser = \"me\"",
                "tern.toml:14:1: [relay.smarthost] has user but no password: expected both \
                 user and password, or neither (then no AUTH)",
            ),
            (
                "host = \"smtp.provider.example\"\npassword = \"secret\"",
                "tern.toml:14:1: [relay.smarthost] has password but no user: expected both \
                 user and password, or neither (then no AUTH)",
            ),
            (
                "host = \"smtp.provider.example:587\"\nport = 587",
                "tern.toml:16:8: relay.smarthost.port repeats the port of host \
                 \"smtp.provider.example:587\": expected the port in host or in port, not both",
            ),
            (
                "host = \"smtp.provider.example\"\nport = 0",
                "tern.toml:16:8: relay.smarthost.port 0 is not a port: expected a number \
                 from 1 to 65535",
            ),
            (
                "host = \"smtp.provider.example\"\ntls = \"ssl\"",
                "tern.toml:16:7: smarthost tls \"ssl\" is not one of: starttls, implicit",
            ),
            (
                "host = \"smtp provider\"",
                "tern.toml:15:8: smarthost host \"smtp provider\" is not valid: label \
                 \"smtp provider\" may hold only letters, digits and hyphens; expected a host \
                 name or IP address, optionally with :port, e.g. \"smtp.provider.example:587\"",
            ),
            (
                "host = \"smtp.provider.example\"\nuser = \"\"\npassword = \"x\"",
                "tern.toml:16:8: smarthost user is empty: expected the one the provider \
                 gave you",
            ),
            (
                "host = \"smtp.provider.example\"\nuser = \"me\"\npassword = \"a\\u0000b\"",
                "tern.toml:17:12: smarthost password contains a NUL character, which AUTH \
                 cannot send",
            ),
        ];
        for (keys, expected) in cases {
            let text = with(&format!("[relay.smarthost]\n{keys}\n"));
            assert_eq!(err(&text), expected, "{keys}");
        }
        let text = with("[relay]\nsmarthost = \"smtp.provider.example\"\n");
        assert_eq!(
            err(&text),
            "tern.toml:15:13: invalid type: string \"smtp.provider.example\", expected a \
             [relay.smarthost] table with host and optionally port, tls, user, password"
        );
    }

    #[test]
    fn routes_take_a_host_a_policy_or_both() {
        let config = ok(&with(
            "[relay]\nport = 2525\n\
             [[route]]\ndomain = \"Partner.example\"\nhost = \"mx.partner.example:25\"\n\
             tls = \"required\"\n\
             [[route]]\ndomain = \"bank.example\"\ntls = \"required\"\n\
             [[route]]\ndomain = \"lab.example\"\nhost = \"[2001:db8::25]\"\n",
        ));
        assert_eq!(
            config.relay.routes,
            [
                DomainRoute {
                    domain: "partner.example".into(),
                    host: Some(("mx.partner.example".into(), 25)),
                    tls: Some(TlsPolicy::Required),
                },
                DomainRoute {
                    domain: "bank.example".into(),
                    host: None,
                    tls: Some(TlsPolicy::Required),
                },
                DomainRoute {
                    domain: "lab.example".into(),
                    host: Some(("2001:db8::25".into(), 2525)),
                    tls: None,
                },
            ]
        );
        assert!(ok(&with_keys("route = []\n")).relay.routes.is_empty());
    }

    #[test]
    fn route_mistakes() {
        let cases = [
            (
                "domain = \"Example.ORG\"\ntls = \"required\"",
                "tern.toml:15:10: route domain \"Example.ORG\" is a local domain; local mail \
                 never leaves",
            ),
            (
                "domain = \"partner.example\"",
                "tern.toml:14:1: [[route]] for \"partner.example\" sets neither host nor tls: \
                 expected host = \"mx.partner.example\", tls = \"required\", or both",
            ),
            (
                "host = \"mx.partner.example\"",
                "tern.toml:14:1: [[route]] has no domain: expected e.g. \
                 domain = \"partner.example\"",
            ),
            (
                "domain = \"partner.example.\"\ntls = \"required\"",
                "tern.toml:15:10: route domain \"partner.example.\" is not a valid DNS name: \
                 it ends with a dot; write it without the trailing dot",
            ),
            (
                "domain = \"partner.example\"\nhost = \"mx.partner.example:99999\"",
                "tern.toml:16:8: route host \"mx.partner.example:99999\" is not valid: port \
                 \"99999\" is not a number from 1 to 65535; expected a host name or IP \
                 address, optionally with :port, e.g. \"mx.partner.example:2525\"",
            ),
            (
                "domain = \"partner.example\"\nhost = \"2001:db8::25:25\"\ntls = \"on\"",
                "tern.toml:17:7: route tls \"on\" is not one of: opportunistic, required",
            ),
            (
                "domain = \"partner.example\"\nmx = \"mx.partner.example\"",
                "tern.toml:16:1: unknown key \"mx\", expected one of: domain, host, tls",
            ),
        ];
        for (keys, expected) in cases {
            let text = with(&format!("[[route]]\n{keys}\n"));
            assert_eq!(err(&text), expected, "{keys}");
        }
        let text = with(
            "[[route]]\ndomain = \"partner.example\"\ntls = \"required\"\n\
             [[route]]\ndomain = \"PARTNER.example\"\nhost = \"mx.partner.example\"\n",
        );
        assert_eq!(
            err(&text),
            "tern.toml:18:10: [[route]] for \"PARTNER.example\" is defined twice (domains are \
             case-insensitive)"
        );
    }
}
