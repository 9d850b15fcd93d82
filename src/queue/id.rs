//! Queue ids: unique, sortable by arrival, short enough to read out loud.
//! An id is the arrival time in microseconds since the epoch, made strictly
//! increasing by the generator, shown as 13 upper-case hex digits.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of one queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013X}", self.0)
    }
}

/// Why a string is not a queue id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a queue id (expected up to 16 hex digits): {0:?}")]
pub struct BadQueueId(pub String);

impl FromStr for QueueId {
    type Err = BadQueueId;

    fn from_str(s: &str) -> Result<QueueId, BadQueueId> {
        if s.is_empty() || s.len() > 16 {
            return Err(BadQueueId(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(QueueId)
            .map_err(|_| BadQueueId(s.to_string()))
    }
}

/// On the control socket an id travels as its hex string, as shown to people.
impl serde::Serialize for QueueId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for QueueId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<QueueId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out strictly increasing ids based on the clock.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator that will never return an id at or below `floor` (the
    /// largest id found in the spool at start-up).
    pub fn starting_after(floor: u64) -> IdGenerator {
        IdGenerator {
            last: AtomicU64::new(floor),
        }
    }

    /// The next id for a message arriving at `now`.
    pub fn next(&self, now: SystemTime) -> QueueId {
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = micros.max(last + 1);
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return QueueId(candidate),
                Err(actual) => last = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_increase_even_when_the_clock_stands_still_or_goes_back() {
        let gen = IdGenerator::starting_after(0);
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = gen.next(t);
        let b = gen.next(t);
        let c = gen.next(t - Duration::from_secs(60));
        assert!(a < b && b < c);
    }

    #[test]
    fn floor_is_respected() {
        let gen = IdGenerator::starting_after(u64::MAX / 2);
        assert!(gen.next(UNIX_EPOCH).0 > u64::MAX / 2);
    }

    #[test]
    fn round_trip() {
        let id = QueueId(0x1_2345_6789_ABCD);
        assert_eq!(id.to_string(), "123456789ABCD");
        assert_eq!("123456789abcd".parse::<QueueId>(), Ok(id));
        assert!("xyz".parse::<QueueId>().is_err());
        assert!("".parse::<QueueId>().is_err());
    }
}
