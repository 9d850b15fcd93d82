//! When to try again: exponential backoff with jitter, a cap, and the queue
//! lifetime after which a message is bounced (RFC 5321 §4.5.4.1: retry for at
//! least 4–5 days, first retry after at least 30 minutes is suggested; we start
//! sooner since most temporary failures are greylisting).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::spool::millis;
use crate::config::QueueSettings;

/// The retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub first: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// Give up (bounce) when a message has been queued this long.
    pub lifetime: Duration,
    /// Tell the sender once a message has waited this long (RFC 3464 "delayed").
    pub delay_notice: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(5 * 60),
            max: Duration::from_secs(4 * 3600),
            lifetime: Duration::from_secs(5 * 86_400),
            delay_notice: Duration::from_secs(4 * 3600),
        }
    }
}

impl From<&QueueSettings> for RetryPolicy {
    fn from(q: &QueueSettings) -> Self {
        RetryPolicy {
            first: q.retry_first,
            max: q.retry_max,
            lifetime: q.lifetime,
            delay_notice: q.delay_notice,
        }
    }
}

static JITTER_STATE: AtomicU64 = AtomicU64::new(0);

/// A number in 0..1000, different on each call (not cryptographic).
fn jitter_permille() -> u64 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = JITTER_STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): `first`
    /// doubled each time, capped at `max`, then shortened by up to 20% at
    /// random so retries of many messages spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let base = self.first.saturating_mul(1 << doublings).min(self.max);
        let cut = base.as_millis() as u64 * 200 * jitter_permille() / 1_000_000;
        base - Duration::from_millis(cut)
    }

    /// Has a message received at `received_at` (ms) outlived the queue lifetime?
    pub fn expired(&self, received_at: u64, now: SystemTime) -> bool {
        millis(now).saturating_sub(received_at) >= self.lifetime.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_bounded_jitter() {
        let p = RetryPolicy::default();
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!(
                d1 <= Duration::from_secs(300) && d1 >= Duration::from_secs(240),
                "{d1:?}"
            );
            let d3 = p.delay(3);
            assert!(
                d3 <= Duration::from_secs(1200) && d3 >= Duration::from_secs(960),
                "{d3:?}"
            );
            let d50 = p.delay(50);
            assert!(d50 <= p.max && d50 >= p.max * 4 / 5, "{d50:?}");
        }
    }

    #[test]
    fn jitter_varies() {
        let p = RetryPolicy::default();
        let delays: std::collections::HashSet<_> = (0..50).map(|_| p.delay(2)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn expiry() {
        let p = RetryPolicy::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let received = millis(t0);
        assert!(!p.expired(received, t0 + Duration::from_secs(5 * 86_400 - 1)));
        assert!(p.expired(received, t0 + Duration::from_secs(5 * 86_400)));
    }
}
