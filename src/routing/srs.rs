//! SRS, the Sender Rewriting Scheme: mail an alias forwards to another
//! domain leaves with an envelope sender at our own domain, so SPF passes at
//! the destination, and a bounce to that address finds its way back.
//!
//! `sender@their.example` becomes
//! `SRS0=HHHH=TT=their.example=sender@our.example`: `TT` is the day (base32,
//! mod 1024), `HHHH` the first four base64 characters of an HMAC-SHA256 over
//! the day, domain and local part with a secret generated once in the data
//! directory (`srs.secret`, mode 0600). A bounce to such an address is
//! accepted only when the hash matches (case-insensitively, since some MTAs
//! lowercase addresses) and the day is at most [`MAX_AGE_DAYS`] old;
//! anything else at our domain that starts with `SRS0=` is refused with
//! 550 5.1.1. An address that is already SRS0 is wrapped again, not turned
//! into SRS1 (simpler; the local part grows).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use ring::hmac;

use crate::smtp::{Address, Domain};

/// How long a rewritten address is accepted back (RFC-less convention:
/// libsrs2 uses 21 days).
pub const MAX_AGE_DAYS: u64 = 21;
/// The timestamp's alphabet (RFC 4648 base32), two characters: 1024 days.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// The secret's file in the data directory.
pub const SECRET_FILE: &str = "srs.secret";

/// Why an `SRS0=` address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    #[error("not a well-formed SRS0 address")]
    Malformed,
    #[error("the SRS hash does not match")]
    BadHash,
    #[error("the SRS address has expired")]
    Expired,
}

/// The rewriting key.
pub struct Srs {
    key: hmac::Key,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srs { .. }")
    }
}

impl Srs {
    /// A key from `secret`.
    pub fn from_secret(secret: &[u8]) -> Srs {
        Srs {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The key kept in `data_dir`, made (32 random bytes, mode 0600) the
    /// first time.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Srs> {
        let path = data_dir.join(SECRET_FILE);
        match fs::read(&path) {
            Ok(secret) if secret.len() >= 16 => return Ok(Srs::from_secret(&secret)),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is shorter than 16 bytes", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| io::Error::other("no randomness for the SRS secret"))?;
        fs::create_dir_all(data_dir)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(&secret)?;
        file.sync_all()?;
        fs::File::open(data_dir)?.sync_all()?;
        Ok(Srs::from_secret(&secret))
    }

    fn hash(&self, stamp: &str, domain: &str, local: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [stamp, domain, local] {
            ctx.update(part.to_ascii_lowercase().as_bytes());
            ctx.update(b"\0");
        }
        let tag = ctx.sign();
        let text = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        text[..4].to_string()
    }

    /// `sender` rewritten at `our_domain` on `day` (days since the epoch).
    /// `None` for an address literal sender (nothing to rewrite into).
    pub fn forward(&self, sender: &Address, our_domain: &str, day: u64) -> Option<Address> {
        let Domain::Name(domain) = &sender.domain else {
            return None;
        };
        let stamp = stamp(day);
        let hash = self.hash(&stamp, domain, &sender.local);
        let text = format!("SRS0={hash}={stamp}={domain}={}@{our_domain}", sender.local);
        Address::parse(&text).ok()
    }

    /// The original sender of `local` (the local part of an address at one
    /// of our domains), `Ok(None)` when it is not an SRS0 address at all.
    pub fn reverse(&self, local: &str, day: u64) -> Result<Option<Address>, SrsError> {
        let Some(rest) = local
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("SRS0="))
            .map(|_| &local[5..])
        else {
            return Ok(None);
        };
        let mut parts = rest.splitn(4, '=');
        let (Some(hash), Some(stamp), Some(domain), Some(original)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if domain.is_empty() || original.is_empty() {
            return Err(SrsError::Malformed);
        }
        let then = unstamp(stamp).ok_or(SrsError::Malformed)?;
        if !self
            .hash(stamp, domain, original)
            .eq_ignore_ascii_case(hash)
        {
            return Err(SrsError::BadHash);
        }
        let age = (day % 1024 + 1024 - then) % 1024;
        if age > MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        Address::parse(&format!("{original}@{domain}"))
            .map(Some)
            .map_err(|_| SrsError::Malformed)
    }
}

/// Today, in days since the epoch.
pub fn today(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

fn stamp(day: u64) -> String {
    let t = (day % 1024) as usize;
    [BASE32[t >> 5] as char, BASE32[t & 31] as char]
        .iter()
        .collect()
}

fn unstamp(stamp: &str) -> Option<u64> {
    let digit = |c: u8| {
        BASE32
            .iter()
            .position(|&b| b == c.to_ascii_uppercase())
            .map(|p| p as u64)
    };
    match stamp.as_bytes() {
        [a, b] => Some(digit(*a)? << 5 | digit(*b)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_case_and_age() {
        let srs = Srs::from_secret(b"0123456789abcdef0123456789abcdef");
        let sender = Address::parse("Ceo.Office@Bank.Example").unwrap();
        let day = 20_000;
        let rewritten = srs.forward(&sender, "example.org", day).unwrap();
        let text = rewritten.to_string();
        assert!(text.starts_with("SRS0="), "{text}");
        assert!(text.ends_with("@example.org"), "{text}");
        let back = srs.reverse(&rewritten.local, day + 3).unwrap().unwrap();
        assert_eq!(back.to_string().to_lowercase(), "ceo.office@bank.example");
        // Some MTAs lowercase the whole address.
        let lower = rewritten.local.to_lowercase();
        assert!(srs.reverse(&lower, day).unwrap().is_some());
        assert_eq!(
            srs.reverse(&rewritten.local, day + MAX_AGE_DAYS + 1),
            Err(SrsError::Expired)
        );
        // Across the 1024-day wrap.
        let late = srs.forward(&sender, "example.org", 1023).unwrap();
        assert!(srs.reverse(&late.local, 1025).unwrap().is_some());
    }

    #[test]
    fn forgeries_are_refused() {
        let srs = Srs::from_secret(b"0123456789abcdef0123456789abcdef");
        let other = Srs::from_secret(b"another secret, another server!!");
        let sender = Address::parse("a@b.example").unwrap();
        let theirs = other.forward(&sender, "example.org", 100).unwrap();
        assert_eq!(srs.reverse(&theirs.local, 100), Err(SrsError::BadHash));
        let ours = srs.forward(&sender, "example.org", 100).unwrap();
        let tampered = ours.local.replace("=b.example=", "=evil.example=");
        assert_eq!(srs.reverse(&tampered, 100), Err(SrsError::BadHash));
        assert_eq!(srs.reverse("SRS0=abcd", 100), Err(SrsError::Malformed));
        assert_eq!(
            srs.reverse("srs0=xxxx=!!=b.example=a", 100),
            Err(SrsError::Malformed)
        );
        assert_eq!(srs.reverse("alice", 100), Ok(None));
    }

    #[test]
    fn the_secret_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Srs::load_or_create(dir.path()).unwrap();
        let meta = fs::metadata(dir.path().join(SECRET_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = Srs::load_or_create(dir.path()).unwrap();
        let sender = Address::parse("a@b.example").unwrap();
        let fwd = a.forward(&sender, "example.org", 5).unwrap();
        assert!(b.reverse(&fwd.local, 5).unwrap().is_some(), "same secret");
    }
}
