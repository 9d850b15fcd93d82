//! The `[spam]` table: where rspamd listens, how long a scan may take, what a
//! message gets when rspamd cannot answer, and whose mail is scanned.

use std::net::SocketAddr;
use std::time::Duration;

use super::Checker;
use crate::config::raw::RawSpam;
use crate::config::{ConfigError, SpamFailure, SpamFilter};

/// Default `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Checker<'_> {
    pub(super) fn spam(&self, raw: &RawSpam) -> Result<Option<SpamFilter>, ConfigError> {
        let timeout = self.duration(
            "spam.timeout",
            raw.timeout.as_ref(),
            DEFAULT_TIMEOUT,
            Duration::from_secs(1),
        )?;
        let on_failure = match &raw.on_failure {
            None => SpamFailure::Accept,
            Some(value) => match value.get_ref().as_str() {
                "accept" => SpamFailure::Accept,
                "tempfail" => SpamFailure::Tempfail,
                other => {
                    return Err(self.at(
                        value,
                        format!("spam.on_failure \"{other}\" is not one of: accept, tempfail"),
                    ))
                }
            },
        };
        let Some(address) = &raw.rspamd else {
            return Ok(None);
        };
        let rspamd: SocketAddr = address.get_ref().parse().map_err(|_| {
            self.at(
                address,
                format!(
                    "spam.rspamd \"{}\" is not an IP address and port: expected rspamd's \
                     normal worker, e.g. \"127.0.0.1:11333\"",
                    address.get_ref()
                ),
            )
        })?;
        Ok(Some(SpamFilter {
            rspamd,
            timeout,
            on_failure,
            scan_authenticated: raw.scan_authenticated.unwrap_or(false),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, ok, with};
    use crate::config::SpamFailure;

    #[test]
    fn absent_defaults_and_values() {
        assert_eq!(ok(&with("")).spam, None);
        assert_eq!(ok(&with("[spam]\ntimeout = \"3s\"\n")).spam, None);
        let spam = ok(&with("[spam]\nrspamd = \"127.0.0.1:11333\"\n"))
            .spam
            .expect("on");
        assert_eq!(spam.rspamd, "127.0.0.1:11333".parse().unwrap());
        assert_eq!(spam.timeout, Duration::from_secs(10));
        assert_eq!(spam.on_failure, SpamFailure::Accept);
        assert!(!spam.scan_authenticated);
        let spam = ok(&with(
            "[spam]\nrspamd = \"[::1]:11333\"\ntimeout = \"2s\"\non_failure = \"tempfail\"\n\
             scan_authenticated = true\n",
        ))
        .spam
        .expect("on");
        assert_eq!(spam.rspamd, "[::1]:11333".parse().unwrap());
        assert_eq!(spam.timeout, Duration::from_secs(2));
        assert_eq!(spam.on_failure, SpamFailure::Tempfail);
        assert!(spam.scan_authenticated);
    }

    #[test]
    fn mistakes() {
        assert_eq!(
            err(&with("[spam]\nrspamd = \"localhost:11333\"\n")),
            "tern.toml:15:10: spam.rspamd \"localhost:11333\" is not an IP address and port: \
             expected rspamd's normal worker, e.g. \"127.0.0.1:11333\""
        );
        assert_eq!(
            err(&with(
                "[spam]\nrspamd = \"127.0.0.1:11333\"\non_failure = \"drop\"\n"
            )),
            "tern.toml:16:14: spam.on_failure \"drop\" is not one of: accept, tempfail"
        );
        assert_eq!(
            err(&with("[spam]\nrspamd = \"127.0.0.1:11333\"\ntimeout = 0\n")),
            "tern.toml:16:11: spam.timeout 0 is too short: expected at least 1 second"
        );
    }
}
