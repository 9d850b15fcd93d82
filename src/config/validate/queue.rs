//! The `[queue]` table: how long undeliverable mail is retried, when its
//! sender hears about the delay, and the retry backoff. Every key optional,
//! with the defaults of [`QueueSettings`]; the rules across keys are
//! `delay_notice < lifetime` and `retry_first <= retry_max`.

use std::time::Duration;

use super::Checker;
use crate::config::raw::RawQueue;
use crate::config::units::format_duration;
use crate::config::{ConfigError, QueueSettings};

impl Checker<'_> {
    pub(super) fn queue(&self, raw: &RawQueue) -> Result<QueueSettings, ConfigError> {
        let defaults = QueueSettings::default();
        let second = Duration::from_secs(1);
        // A lifetime under a minute would bounce mail on the first greylisting.
        let lifetime = self.duration(
            "queue.lifetime",
            raw.lifetime.as_ref(),
            defaults.lifetime,
            Duration::from_secs(60),
        )?;
        let delay_notice = self.duration(
            "queue.delay_notice",
            raw.delay_notice.as_ref(),
            defaults.delay_notice,
            second,
        )?;
        let retry_first = self.duration(
            "queue.retry_first",
            raw.retry_first.as_ref(),
            defaults.retry_first,
            second,
        )?;
        let retry_max = self.duration(
            "queue.retry_max",
            raw.retry_max.as_ref(),
            defaults.retry_max,
            second,
        )?;
        if delay_notice >= lifetime {
            return Err(self.at_either(
                raw.delay_notice.as_ref(),
                raw.lifetime.as_ref(),
                format!(
                    "queue.delay_notice ({}) is not shorter than queue.lifetime ({}): \
                     expected less, so that the delay notice comes before the bounce",
                    format_duration(delay_notice),
                    format_duration(lifetime)
                ),
            ));
        }
        if retry_max < retry_first {
            return Err(self.at_either(
                raw.retry_max.as_ref(),
                raw.retry_first.as_ref(),
                format!(
                    "queue.retry_max ({}) is shorter than queue.retry_first ({}): expected \
                     at least as long",
                    format_duration(retry_max),
                    format_duration(retry_first)
                ),
            ));
        }
        Ok(QueueSettings {
            lifetime,
            delay_notice,
            retry_first,
            retry_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, ok, with, BASE};
    use crate::config::QueueSettings;

    #[test]
    fn no_queue_table_means_the_documented_defaults() {
        let queue = ok(BASE).queue;
        assert_eq!(queue, QueueSettings::default());
        assert_eq!(queue.lifetime, Duration::from_secs(5 * 86_400));
        assert_eq!(queue.delay_notice, Duration::from_secs(4 * 3600));
        assert_eq!(queue.retry_first, Duration::from_secs(300));
        assert_eq!(queue.retry_max, Duration::from_secs(4 * 3600));
        assert_eq!(ok(&with("[queue]\n")).queue, QueueSettings::default());
    }

    #[test]
    fn every_queue_key() {
        let queue = ok(&with(
            "[queue]\nlifetime = \"2d\"\ndelay_notice = \"1d23h\"\nretry_first = 30\n\
             retry_max = \"30s\"\n",
        ))
        .queue;
        assert_eq!(
            queue,
            QueueSettings {
                lifetime: Duration::from_secs(2 * 86_400),
                delay_notice: Duration::from_secs(47 * 3600),
                retry_first: Duration::from_secs(30),
                retry_max: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn queue_mistakes() {
        let cases = [
            (
                "lifetime = \"30s\"",
                "tern.toml:15:12: queue.lifetime \"30s\" is too short: expected at least \
                 1 minute",
            ),
            (
                "lifetime = \"4h\"",
                "tern.toml:15:12: queue.delay_notice (4h) is not shorter than queue.lifetime \
                 (4h): expected less, so that the delay notice comes before the bounce",
            ),
            (
                "lifetime = \"1d\"\ndelay_notice = \"2d\"",
                "tern.toml:16:16: queue.delay_notice (2d) is not shorter than queue.lifetime \
                 (1d): expected less, so that the delay notice comes before the bounce",
            ),
            (
                "retry_first = \"0s\"",
                "tern.toml:15:15: queue.retry_first \"0s\" is too short: expected at least \
                 1 second",
            ),
            (
                "retry_max = \"1m\"",
                "tern.toml:15:13: queue.retry_max (1m) is shorter than queue.retry_first \
                 (5m): expected at least as long",
            ),
            (
                "retry_first = \"5h\"",
                "tern.toml:15:15: queue.retry_max (4h) is shorter than queue.retry_first \
                 (5h): expected at least as long",
            ),
            (
                "retry_first = \"5 minutes\"",
                "tern.toml:15:15: queue.retry_first \"5 minutes\" is not a duration: expected \
                 a whole number of seconds, or whole numbers each followed by s, m, h or d, \
                 e.g. \"90s\", \"5m\", \"1h30m\"",
            ),
            (
                "bounce_after = \"5d\"",
                "tern.toml:15:1: unknown key \"bounce_after\", expected one of: lifetime, \
                 delay_notice, retry_first, retry_max",
            ),
        ];
        for (keys, expected) in cases {
            let text = with(&format!("[queue]\n{keys}\n"));
            assert_eq!(err(&text), expected, "{keys}");
        }
    }
}
