//! Logins on the submission ports: password checks against the argon2id hashes
//! in tern.toml (constant-time comparison inside argon2), and the same amount
//! of work for unknown users (no user enumeration by timing). The throttle of
//! failed attempts is in [`super::throttle`].

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};

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

/// What the login throttle counts a login under: the user it means
/// (`alice` and `Alice@example.org` are one login), or a login that is no
/// user lowercased and cut to 64 characters.
pub fn throttle_key(config: &Config, login: &str) -> String {
    match user_of(config, login) {
        Some(user) => user.name.clone(),
        None => login.to_lowercase().chars().take(64).collect(),
    }
}

/// Checks a login; `Some(user name)` when right. Blocking (argon2 takes tens
/// of milliseconds by design): call it off the async threads.
pub fn verify(config: &Config, login: &str, password: &str) -> Option<String> {
    let user = user_of(config, login);
    let hash = user
        .and_then(|u| u.password.as_deref())
        .unwrap_or_else(|| decoy_hash());
    let ok = PasswordHash::new(hash)
        .map(|parsed| matches(&parsed, password.as_bytes()))
        .unwrap_or(false);
    match user {
        Some(u) if ok && u.password.is_some() => Some(u.name.clone()),
        _ => None,
    }
}

/// Argon2's working memory kept between checks: at most this many buffers
/// (the throttle's cap on checks running at once), each as large as the
/// largest hash checked (19 MiB with the default parameters).
const KEPT_BUFFERS: usize = super::throttle::CONCURRENT_CHECKS;

/// The buffers not in use. Allocating 19 MiB per check made glibc keep
/// freed blocks in every malloc arena the blocking threads touched (1.1-1.7
/// GiB resident after a few hundred logins, in the submission benchmark), and a fresh mapping costs a page fault per 4 KiB besides.
static BUFFERS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Does `password` hash to `hash`? As argon2's `verify_password` (the
/// parameters, salt and version from the PHC string; constant-time
/// comparison of the outputs), but in a reused buffer.
fn matches(hash: &PasswordHash, password: &[u8]) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let blocks = params.block_count();
    let mut memory = {
        let mut kept = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        kept.pop().unwrap_or_default()
    };
    if memory.len() < blocks {
        // Fallible, as argon2's own allocation: a hash in tern.toml asking
        // for more memory than there is fails the check, not the daemon.
        let mut fresh = Vec::new();
        if fresh.try_reserve_exact(blocks).is_err() {
            return false;
        }
        fresh.resize(blocks, Block::new());
        memory = fresh;
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory[..blocks],
    );
    {
        let mut kept = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_BUFFERS {
            kept.push(memory);
        }
    }
    // Output's == is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|out| out == *expected)
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
    fn pooled_check_agrees_with_argon2s_own() {
        use argon2::PasswordVerifier;
        // Ours (m=19456, t=2) and one with other parameters (m=1024, t=3).
        let ours = hash_password("correct horse").unwrap();
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 3, 1, None).unwrap(),
        )
        .hash_password(b"battery staple")
        .unwrap()
        .to_string();
        for (hash, right) in [(&ours, "correct horse"), (&other, "battery staple")] {
            let parsed = PasswordHash::new(hash).unwrap();
            for _ in 0..2 {
                // The second round runs in a buffer used before.
                assert!(matches(&parsed, right.as_bytes()));
                assert!(!matches(&parsed, b"wrong"));
                assert!(!matches(&parsed, b""));
            }
            assert!(Argon2::default()
                .verify_password(right.as_bytes(), &parsed)
                .is_ok());
        }
        // A smaller hash after a larger one uses the front of a kept
        // buffer, a larger one after it a new one; no more are kept than
        // checks run at once.
        for (hash, right) in [(&other, "battery staple"), (&ours, "correct horse")] {
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(matches(&parsed, right.as_bytes()));
        }
        assert!(BUFFERS.lock().unwrap().len() <= KEPT_BUFFERS);
        // A hash without output or salt matches nothing.
        let bare = PasswordHash::new("$argon2id$v=19$m=1024,t=3,p=1").unwrap();
        assert!(!matches(&bare, b""));
    }

    #[test]
    fn throttle_keys_name_the_user() {
        let c = config();
        assert_eq!(throttle_key(&c, "ME@Example.org"), "me");
        assert_eq!(throttle_key(&c, "me"), "me");
        assert_eq!(throttle_key(&c, "Nobody"), "nobody");
        assert_eq!(throttle_key(&c, &"x".repeat(300)).len(), 64);
    }
}
