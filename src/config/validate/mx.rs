//! The `[mx]` table: checks on mail from other servers (the sender's domain
//! must exist; SPF, DKIM, DMARC and iprev and what their failures do), the
//! domains exempt from them, and how long DNS may take.

use std::time::Duration;

use super::Checker;
use crate::config::raw::RawMx;
use crate::config::{ConfigError, MxPolicy, SpfFailAction};

/// Default `dns_timeout`.
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `dkim_max_size`: 4 MiB.
const DEFAULT_DKIM_MAX_SIZE: u64 = 4 << 20;

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
        let spf_fail = match &raw.spf_fail {
            None => SpfFailAction::Deliver,
            Some(value) => match value.get_ref().as_str() {
                "deliver" => SpfFailAction::Deliver,
                "junk" => SpfFailAction::Junk,
                "reject" => SpfFailAction::Reject,
                other => {
                    return Err(self.at(
                        value,
                        format!("mx.spf_fail \"{other}\" is not one of: deliver, junk, reject"),
                    ))
                }
            },
        };
        let dkim_max_size = match &raw.dkim_max_size {
            None => DEFAULT_DKIM_MAX_SIZE,
            Some(size) => self.size("mx.dkim_max_size", size, 64 << 10, "64K")?,
        };
        Ok(MxPolicy {
            verify_sender_domain: raw.verify_sender_domain.unwrap_or(true),
            sender_domain_exempt: exempt,
            dns_timeout,
            authenticate: raw.authenticate.unwrap_or(true),
            dmarc_reject: raw.dmarc_reject.unwrap_or(true),
            spf_fail,
            dkim_max_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, ok, with};
    use crate::config::SpfFailAction;

    #[test]
    fn defaults_and_values() {
        let mx = ok(&with("")).mx;
        assert!(mx.verify_sender_domain);
        assert!(mx.sender_domain_exempt.is_empty());
        assert_eq!(mx.dns_timeout, Duration::from_secs(5));
        assert!(mx.authenticate && mx.dmarc_reject);
        assert_eq!(mx.spf_fail, SpfFailAction::Deliver);
        assert_eq!(mx.dkim_max_size, 4 << 20);
        let mx = ok(&with(
            "[mx]\nverify_sender_domain = false\nsender_domain_exempt = [\"Partner.Example\"]\n\
             dns_timeout = \"2s\"\nauthenticate = false\ndmarc_reject = false\n\
             spf_fail = \"reject\"\ndkim_max_size = \"1M\"\n",
        ))
        .mx;
        assert!(!mx.authenticate && !mx.dmarc_reject);
        assert_eq!(mx.spf_fail, SpfFailAction::Reject);
        assert_eq!(mx.dkim_max_size, 1 << 20);
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
        assert_eq!(
            err(&with("[mx]\nspf_fail = \"drop\"\n")),
            "tern.toml:15:12: mx.spf_fail \"drop\" is not one of: deliver, junk, reject"
        );
    }
}
