//! The `[mx]` table: checks on mail from other servers (the sender's domain
//! must exist), the domains exempt from them, and how long DNS may take.

use std::time::Duration;

use super::Checker;
use crate::config::raw::RawMx;
use crate::config::{ConfigError, MxPolicy};

/// Default `dns_timeout`.
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl Checker<'_> {
    pub(super) fn mx(&self, raw: &RawMx) -> Result<MxPolicy, ConfigError> {
        let mut exempt = Vec::new();
        if let Some(list) = &raw.sender_domain_exempt {
            for name in list.get_ref() {
                let domain = self.dns_name("mx.sender_domain_exempt entry", name)?;
                if !exempt.contains(&domain) {
                    exempt.push(domain);
                }
            }
        }
        let dns_timeout = self.duration(
            "mx.dns_timeout",
            raw.dns_timeout.as_ref(),
            DEFAULT_DNS_TIMEOUT,
            Duration::from_secs(1),
        )?;
        Ok(MxPolicy {
            verify_sender_domain: raw.verify_sender_domain.unwrap_or(true),
            sender_domain_exempt: exempt,
            dns_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, ok, with};

    #[test]
    fn defaults_and_values() {
        let mx = ok(&with("")).mx;
        assert!(mx.verify_sender_domain);
        assert!(mx.sender_domain_exempt.is_empty());
        assert_eq!(mx.dns_timeout, Duration::from_secs(5));
        let mx = ok(&with(
            "[mx]\nverify_sender_domain = false\nsender_domain_exempt = [\"Partner.Example\"]\n\
             dns_timeout = \"2s\"\n",
        ))
        .mx;
        assert!(!mx.verify_sender_domain);
        assert_eq!(mx.sender_domain_exempt, ["partner.example"]);
        assert_eq!(mx.dns_timeout, Duration::from_secs(2));
    }

    #[test]
    fn mistakes() {
        assert_eq!(
            err(&with("[mx]\nsender_domain_exempt = [\"bad domain\"]\n")),
            "tern.toml:15:25: mx.sender_domain_exempt entry \"bad domain\" is not a valid \
             DNS name: label \"bad domain\" may hold only letters, digits and hyphens"
        );
        assert_eq!(
            err(&with("[mx]\ndns_timeout = 0\n")),
            "tern.toml:15:15: mx.dns_timeout 0 is too short: expected at least 1 second"
        );
    }
}
