//! Logins on the submission ports: password checks against the argon2id hashes
//! in tern.toml (constant-time comparison inside argon2), the same amount of
//! work for unknown users (no user enumeration by timing), and the per-address
//! throttle of failed attempts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::config::Config;

/// Hashes `password` for tern.toml (`tern user passwd`): argon2id with the
/// crate's default (OWASP-recommended) parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A hash nobody's password matches, to spend the same time on unknown users.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("tern decoy password, never valid").unwrap_or_default())
}

/// The local user a login name means: `alice` or `alice@<one of our domains>`.
fn user_of<'a>(config: &'a Config, login: &str) -> Option<&'a crate::config::User> {
    let login = login.to_lowercase();
    let name = match login.rsplit_once('@') {
        Some((local, domain)) if config.is_local_domain(domain) => local.to_string(),
        Some(_) => return None,
        None => login,
    };
    config.users.get(&name)
}

/// Checks a login; `Some(user name)` when right. Blocking (argon2 takes tens
/// of milliseconds by design): call it off the async threads.
pub fn verify(config: &Config, login: &str, password: &str) -> Option<String> {
    let user = user_of(config, login);
    let hash = user
        .and_then(|u| u.password.as_deref())
        .unwrap_or_else(|| decoy_hash());
    let ok = PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    match user {
        Some(u) if ok && u.password.is_some() => Some(u.name.clone()),
        _ => None,
    }
}

/// Counts failed logins per client address over a sliding window. Attempts
/// still being checked count too: otherwise a client could start many
/// password checks at once before the first failure is recorded.
#[derive(Debug)]
pub struct Throttle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// One login attempt being checked; see [`Throttle::begin`].
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    ip: IpAddr,
}

impl Attempt<'_> {
    /// The password was wrong: it counts as a failure.
    pub fn failed(self, now: Instant) {
        self.throttle.failed(self.ip, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut map = self
            .throttle
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The most addresses remembered; the oldest are forgotten beyond this.
const MAX_TRACKED: usize = 100_000;

impl Default for Throttle {
    /// 5 failures in 10 minutes.
    fn default() -> Self {
        Throttle::new(5, Duration::from_secs(600))
    }
}

impl Throttle {
    pub fn new(max_failures: usize, window: Duration) -> Throttle {
        Throttle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a login attempt from `ip`: `None` while the address has used up
    /// its failures, counting the attempts still being checked as failures.
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Option<Attempt<'_>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let pending = in_flight.get(&ip).copied().unwrap_or(0);
        if self.failures_within(ip, now) + pending >= self.max_failures {
            return None;
        }
        *in_flight.entry(ip).or_insert(0) += 1;
        Some(Attempt { throttle: self, ip })
    }

    fn failures_within(&self, ip: IpAddr, now: Instant) -> usize {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(&ip) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        let n = times.len();
        if n == 0 {
            map.remove(&ip);
        }
        n
    }

    /// True while `ip` has used up its failed attempts.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.failures_within(ip, now) >= self.max_failures
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = map.entry(ip).or_default();
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let hash = hash_password("correct horse").unwrap();
        let text = format!(
            "hostname = \"mx.example.org\"\ndata_dir = \"/tmp/x\"\ndomains = [\"example.org\"]\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
             [[user]]\nname = \"me\"\npassword = \"{hash}\"\n[[user]]\nname = \"nopw\"\n"
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn passwords() {
        let c = config();
        assert_eq!(verify(&c, "me", "correct horse"), Some("me".into()));
        assert_eq!(
            verify(&c, "ME@example.org", "correct horse"),
            Some("me".into())
        );
        assert_eq!(verify(&c, "me", "wrong"), None);
        assert_eq!(verify(&c, "me@elsewhere.example", "correct horse"), None);
        assert_eq!(verify(&c, "nobody", "correct horse"), None);
        assert_eq!(
            verify(&c, "nopw", ""),
            None,
            "a user without password cannot log in"
        );
    }

    #[test]
    fn attempts_in_flight_count() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let now = Instant::now();
        let a = t.begin(ip, now).unwrap();
        let b = t.begin(ip, now).unwrap();
        let c = t.begin(ip, now).unwrap();
        assert!(t.begin(ip, now).is_none(), "three checks already running");
        drop(c); // a success frees its place
        let d = t.begin(ip, now).unwrap();
        a.failed(now);
        b.failed(now);
        d.failed(now);
        assert!(t.begin(ip, now).is_none());
        assert!(t.begin(ip, now + Duration::from_secs(61)).is_some());
    }

    #[test]
    fn throttle_window() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!t.blocked(ip, t0), "attempt {i}");
            t.failed(ip, t0);
        }
        assert!(t.blocked(ip, t0 + Duration::from_secs(59)));
        assert!(!t.blocked("192.0.2.2".parse().unwrap(), t0));
        assert!(!t.blocked(ip, t0 + Duration::from_secs(61)));
    }
}
