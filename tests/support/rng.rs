//! xorshift64*: deterministic from its seed, good enough to pick kill points.

use std::time::{SystemTime, UNIX_EPOCH};

/// A seeded pseudo-random number generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, xorshift cannot leave 0).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The seed from the environment variable `var` if set (to replay a
    /// failure), otherwise from the clock. Prints it either way.
    pub fn from_env(var: &str) -> (Rng, u64) {
        let seed = match std::env::var(var) {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var} must be a number, got {s:?}")),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        eprintln!("random seed {seed} (replay with {var}={seed})");
        (Rng::new(seed), seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi` (`hi` exclusive, `lo < hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}
