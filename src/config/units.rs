//! Sizes and durations as written in `tern.toml`: `"25M"`, `"5m"`, `"1h30m"`.
//!
//! Both parsers return, on failure, the "expected …" half of an error message;
//! `validate` puts the key name, the value and the position in front of it.

use std::time::Duration;

/// What `parse_size` accepts, for error messages.
const SIZE_EXPECTED: &str = "expected a whole number of bytes, optionally followed by \
     K, M or G (powers of 1024; KiB/MiB/GiB and KB/MB/GB mean the same), e.g. \"25M\"";

/// What `parse_duration` accepts, for error messages.
const DURATION_EXPECTED: &str = "expected a whole number of seconds, or whole numbers \
     each followed by s, m, h or d, e.g. \"90s\", \"5m\", \"1h30m\"";

/// Parses a size such as `"25M"` into bytes.
///
/// A whole number, optionally followed (after optional spaces) by a unit: `K`, `M`,
/// `G`, or the same with `iB` or `B` appended; case does not matter. Every unit is
/// a power of 1024 (`"1KB"` is 1024 bytes, as mail administrators mean it). No
/// unit means bytes. Fractions, negative numbers and overflow are refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(SIZE_EXPECTED.to_string());
    }
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(SIZE_EXPECTED.to_string()),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{SIZE_EXPECTED} (this one is too large)"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{SIZE_EXPECTED} (this one is too large)"))
}

/// Parses a duration such as `"5m"` or `"1h30m"`.
///
/// Either a bare whole number (seconds), or one or more whole numbers each followed
/// by a unit — `s`, `m`, `h`, `d` (lowercase; `m` is minutes) — optionally
/// separated by spaces: `"90s"`, `"5m"`, `"1h 30m"`, `"1d12h"`. Each unit may appear
/// once, largest first. Fractions and negative numbers are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text
            .parse()
            .map_err(|_| format!("{DURATION_EXPECTED} (this one is too large)"))?;
        return Ok(Duration::from_secs(seconds));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    if rest.is_empty() {
        return Err(DURATION_EXPECTED.to_string());
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let mut chars = after.chars();
        let unit = match chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(DURATION_EXPECTED.to_string()),
        };
        // Each unit once, largest first: "30m1h" and "5m5m" are typos, not sums.
        if digits.is_empty() || unit >= last_unit {
            return Err(DURATION_EXPECTED.to_string());
        }
        last_unit = unit;
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("{DURATION_EXPECTED} (this one is too large)"))?;
        total = number
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{DURATION_EXPECTED} (this one is too large)"))?;
        rest = chars.as_str().trim_start();
    }
    Ok(Duration::from_secs(total))
}

/// Writes `duration` (whole seconds) the way [`parse_duration`] reads it,
/// largest unit first: `"5d"`, `"4h"`, `"1h30m"`, `"1m30s"` (90 seconds); zero
/// is `"0s"`. For messages that compare two durations.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_secs();
    if rest == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            text.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("25M"), Ok(25 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("25 MiB"), Ok(25 << 20));
        assert_eq!(parse_size("25MB"), Ok(25 << 20));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size(" 10k "), Ok(10 << 10));
    }

    #[test]
    fn bad_sizes_say_what_was_expected() {
        for bad in [
            "", "M", "25X", "25 M B", "1.5G", "-1K", "25T", "25Mb x", "K25", "１K",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(
                err.starts_with("expected a whole number of bytes"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        assert!(parse_size("18446744073709551615").is_ok());
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17179869184G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_single_and_compound() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("0"), Ok(s(0)));
        assert_eq!(parse_duration("300"), Ok(s(300)));
        assert_eq!(parse_duration("90s"), Ok(s(90)));
        assert_eq!(parse_duration("5m"), Ok(s(300)));
        assert_eq!(parse_duration("1h"), Ok(s(3600)));
        assert_eq!(parse_duration("2d"), Ok(s(172_800)));
        assert_eq!(parse_duration("1h30m"), Ok(s(5400)));
        assert_eq!(parse_duration("1h 30m 15s"), Ok(s(5415)));
        assert_eq!(parse_duration("1d12h"), Ok(s(129_600)));
        assert_eq!(parse_duration(" 3m "), Ok(s(180)));
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        for bad in [
            "",
            "m",
            "5x",
            "5M",
            "1.5h",
            "-5m",
            "30m1h",
            "5m5m",
            "1h30",
            "5 minutes",
            "h1",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.starts_with("expected a whole number of seconds"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn durations_that_overflow_are_refused() {
        assert!(parse_duration("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("999999999999999999d")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_are_written_back_as_parsed() {
        let s = Duration::from_secs;
        assert_eq!(format_duration(s(0)), "0s");
        assert_eq!(format_duration(s(90)), "1m30s");
        assert_eq!(format_duration(s(300)), "5m");
        assert_eq!(format_duration(s(5400)), "1h30m");
        assert_eq!(format_duration(s(5 * 86_400)), "5d");
        assert_eq!(format_duration(s(86_400 + 1)), "1d1s");
        for secs in [1, 59, 61, 3599, 3661, 90_061, 432_000] {
            assert_eq!(parse_duration(&format_duration(s(secs))), Ok(s(secs)));
        }
    }
}
