//! Range checks for the numbers `tern.toml` holds, shared by `[limits]`,
//! `[relay]` and `[queue]`: sizes, counts, durations and ports. Each takes the
//! key's full dotted name (`limits.recipients`) for its message, and a default
//! for when the key is absent.

use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::raw::{IntOrText, RawCount, RawDuration, RawSize};
use crate::config::units::{parse_duration, parse_size};
use crate::config::ConfigError;

impl Checker<'_> {
    /// An error at the first of two keys that is present (one of them is, or the
    /// defaults would have been consistent).
    pub(super) fn at_either<A, B>(
        &self,
        first: Option<&Spanned<A>>,
        second: Option<&Spanned<B>>,
        message: String,
    ) -> ConfigError {
        match (first, second) {
            (Some(a), _) => self.at(a, message),
            (None, Some(b)) => self.at(b, message),
            (None, None) => self.missing(message),
        }
    }

    /// A size of at least `min` bytes (written `min_written` in the message).
    pub(super) fn size(
        &self,
        key: &str,
        size: &Spanned<RawSize>,
        min: u64,
        min_written: &str,
    ) -> Result<u64, ConfigError> {
        let bytes = match &size.get_ref().0 {
            IntOrText::Int(n) => u64::try_from(*n).map_err(|_| {
                self.at(
                    size,
                    format!("{key} {n} is negative: expected at least {min_written}"),
                )
            })?,
            IntOrText::Text(text) => parse_size(text).map_err(|expected| {
                self.at(size, format!("{key} \"{text}\" is not a size: {expected}"))
            })?,
        };
        if bytes < min {
            return Err(self.at(
                size,
                format!(
                    "{key} {} is too small: expected at least {min_written} ({min} bytes)",
                    written(&size.get_ref().0)
                ),
            ));
        }
        Ok(bytes)
    }

    /// A count of at least `min`; `why` follows the bound in the message.
    pub(super) fn count(
        &self,
        key: &str,
        count: Option<&Spanned<RawCount>>,
        default: usize,
        min: usize,
        why: &str,
    ) -> Result<usize, ConfigError> {
        let Some(spanned) = count else {
            return Ok(default);
        };
        let RawCount(n) = *spanned.get_ref();
        match usize::try_from(n) {
            Ok(n) if n >= min => Ok(n),
            _ => Err(self.at(
                spanned,
                format!("{key} {n} is too small: expected at least {min}{why}"),
            )),
        }
    }

    /// A duration of at least `min` (1 second or 1 minute, as the tables need).
    pub(super) fn duration(
        &self,
        key: &str,
        duration: Option<&Spanned<RawDuration>>,
        default: Duration,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(spanned) = duration else {
            return Ok(default);
        };
        let value = match &spanned.get_ref().0 {
            // A negative number is reported as too short below.
            IntOrText::Int(n) => Duration::from_secs(u64::try_from(*n).unwrap_or(0)),
            IntOrText::Text(text) => parse_duration(text).map_err(|expected| {
                self.at(
                    spanned,
                    format!("{key} \"{text}\" is not a duration: {expected}"),
                )
            })?,
        };
        if value < min {
            let min_written = match min.as_secs() {
                60 => "1 minute".to_string(),
                1 => "1 second".to_string(),
                n => format!("{n} seconds"),
            };
            return Err(self.at(
                spanned,
                format!(
                    "{key} {} is too short: expected at least {min_written}",
                    written(&spanned.get_ref().0)
                ),
            ));
        }
        Ok(value)
    }

    /// A TCP port, 1 to 65535; `None` when the key is absent.
    pub(super) fn port(
        &self,
        key: &str,
        port: Option<&Spanned<RawCount>>,
    ) -> Result<Option<u16>, ConfigError> {
        let Some(spanned) = port else {
            return Ok(None);
        };
        let RawCount(n) = *spanned.get_ref();
        match u16::try_from(n) {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(self.at(
                spanned,
                format!("{key} {n} is not a port: expected a number from 1 to 65535"),
            )),
        }
    }
}

/// A value as the owner wrote it: `25` or `"25M"`.
fn written(value: &IntOrText) -> String {
    match value {
        IntOrText::Int(n) => n.to_string(),
        IntOrText::Text(text) => format!("\"{text}\""),
    }
}
