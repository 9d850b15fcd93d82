//! `public_addresses` (the addresses the world reaches this server at) and
//! the `[check]` table (the DNS blocklists `tern check` consults): what
//! `tern dns` publishes and `tern check` verifies.

use std::net::IpAddr;

use toml::Spanned;

use super::Checker;
use crate::config::raw::RawCheck;
use crate::config::{CheckSettings, ConfigError, Listener};

impl Checker<'_> {
    /// `public_addresses` when written (then `true`), or the listeners'
    /// addresses that others could reach: not wildcard, not loopback.
    pub(super) fn public_addresses(
        &self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        listeners: &[Listener],
    ) -> Result<(Vec<IpAddr>, bool), ConfigError> {
        let Some(list) = raw else {
            let mut derived: Vec<IpAddr> = Vec::new();
            for ip in listeners.iter().map(|l| l.address.ip()) {
                if reachable(ip) && !derived.contains(&ip) {
                    derived.push(ip);
                }
            }
            return Ok((derived, false));
        };
        let mut result: Vec<IpAddr> = Vec::new();
        for entry in list.get_ref() {
            let text = entry.get_ref();
            let ip: IpAddr = text.parse().map_err(|_| {
                self.at(
                    entry,
                    format!(
                        "public_addresses entry \"{text}\" is not an IP address: expected \
                         e.g. \"192.0.2.25\" or \"2001:db8::25\" (no port, no brackets)"
                    ),
                )
            })?;
            if !reachable(ip) {
                return Err(self.at(
                    entry,
                    format!(
                        "public_addresses entry \"{text}\" is not an address other servers \
                         can reach: expected this server's own public address"
                    ),
                ));
            }
            if result.contains(&ip) {
                return Err(self.at(
                    entry,
                    format!("public_addresses entry \"{text}\" is listed twice"),
                ));
            }
            result.push(ip);
        }
        Ok((result, true))
    }

    /// The `[check]` table.
    pub(super) fn check_settings(&self, raw: &RawCheck) -> Result<CheckSettings, ConfigError> {
        let mut blocklists: Vec<String> = Vec::new();
        if let Some(list) = &raw.blocklists {
            for entry in list.get_ref() {
                let zone = self.dns_name("check.blocklists entry", entry)?;
                if blocklists.contains(&zone) {
                    return Err(self.at(
                        entry,
                        format!(
                            "check.blocklists entry \"{}\" is listed twice",
                            entry.get_ref()
                        ),
                    ));
                }
                blocklists.push(zone);
            }
        }
        Ok(CheckSettings { blocklists })
    }
}

/// Could another server connect to `ip`? Not a wildcard, loopback or
/// multicast address.
fn reachable(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::tests::{err, ok, with, with_keys, BASE};

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn public_addresses_are_written_or_taken_from_the_listeners() {
        let config = ok(BASE);
        assert!(config.public_addresses.is_empty(), "0.0.0.0 is a wildcard");
        assert!(!config.public_addresses_configured);
        let config = ok(&with(
            "[[listener]]\naddress = \"192.0.2.25:587\"\nrole = \"submission\"\n\
             [[listener]]\naddress = \"[2001:db8::25]:25\"\nrole = \"mx\"\n\
             [[listener]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n\
             [[listener]]\naddress = \"192.0.2.25:25\"\nrole = \"mx\"\n",
        ));
        assert_eq!(
            config.public_addresses,
            ips(&["192.0.2.25", "2001:db8::25"])
        );
        let config = ok(&with_keys(
            "public_addresses = [\"198.51.100.7\", \"2001:DB8::7\"]\n",
        ));
        assert_eq!(
            config.public_addresses,
            ips(&["198.51.100.7", "2001:db8::7"])
        );
        assert!(config.public_addresses_configured);
        assert!(ok(&with_keys("public_addresses = []\n"))
            .public_addresses
            .is_empty());
    }

    #[test]
    fn public_address_mistakes() {
        assert_eq!(
            err(&with_keys("public_addresses = [\"192.0.2.1:25\"]\n")),
            "tern.toml:1:21: public_addresses entry \"192.0.2.1:25\" is not an IP address: \
             expected e.g. \"192.0.2.25\" or \"2001:db8::25\" (no port, no brackets)"
        );
        assert_eq!(
            err(&with_keys("public_addresses = [\"192.0.2.1\", \"::\"]\n")),
            "tern.toml:1:34: public_addresses entry \"::\" is not an address other servers \
             can reach: expected this server's own public address"
        );
        assert_eq!(
            err(&with_keys(
                "public_addresses = [\"2001:db8::1\", \"2001:DB8:0::1\"]\n"
            )),
            "tern.toml:1:36: public_addresses entry \"2001:DB8:0::1\" is listed twice"
        );
    }

    #[test]
    fn blocklists() {
        assert!(ok(BASE).check.blocklists.is_empty());
        let config = ok(&with(
            "[check]\nblocklists = [\"Zen.Spamhaus.org\", \"bl.example\"]\n",
        ));
        assert_eq!(config.check.blocklists, ["zen.spamhaus.org", "bl.example"]);
        assert_eq!(
            err(&with(
                "[check]\nblocklists = [\"bl.example\", \"BL.example\"]\n"
            )),
            "tern.toml:15:29: check.blocklists entry \"BL.example\" is listed twice"
        );
        assert_eq!(
            err(&with("[check]\nblocklists = [\"not a zone\"]\n")),
            "tern.toml:15:15: check.blocklists entry \"not a zone\" is not a valid DNS \
             name: label \"not a zone\" may hold only letters, digits and hyphens"
        );
        assert!(err(&with("[check]\nblocklist = []\n"))
            .starts_with("tern.toml:15:1: unknown key \"blocklist\", expected one of: blocklists"));
    }
}
