//! Logins on the submission ports: password checks against the argon2id hashes
//! in tern.toml (constant-time comparison inside argon2), and the same amount
//! of work for unknown users (no user enumeration by timing). The throttle of
//! failed attempts is in [`super::throttle`].

use std::sync::OnceLock;

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
    fn throttle_keys_name_the_user() {
        let c = config();
        assert_eq!(throttle_key(&c, "ME@Example.org"), "me");
        assert_eq!(throttle_key(&c, "me"), "me");
        assert_eq!(throttle_key(&c, "Nobody"), "nobody");
        assert_eq!(throttle_key(&c, &"x".repeat(300)).len(), 64);
    }
}
