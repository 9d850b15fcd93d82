//! Who lives here: resolves a recipient address to the routes it expands to,
//! using the users, aliases, catch-alls and plus-addressing of the config.
//!
//! Order, for `local@domain` at one of our domains (local part compared without
//! case): an alias for exactly `local@domain`; an alias for `local` at every
//! domain; a user named `local`; the same three for the part before the
//! recipient delimiter (`me+tag` → `me`); `postmaster` (RFC 5321 §4.5.1: it
//! always exists); the domain's catch-all alias. Anything else is unknown.
//! Alias targets are not expanded further.
//!
//! System mail: the hostname is ours too when it is not one of the domains
//! (as Postfix's `myhostname` is in `mydestination`), for what programs on
//! this host send as `<login>@<hostname>` and for the bounces that come
//! back to them. There an alias for the local part or a user name is looked
//! up as above; `postmaster`, `root`, `mailer-daemon` and the host's logins
//! (/etc/passwd) go to the postmaster, the owner; anything else is unknown,
//! so the hostname is no catch-all for strangers.

use crate::config::{AliasSource, AliasTarget, Config};
use crate::smtp::{Address, Recipient, Route};

/// The outcome of looking up a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// One of ours; deliver to these routes.
    Local(Vec<Recipient>),
    /// At one of our domains, but nobody by that name.
    Unknown,
    /// Not one of our domains (or an address literal): relaying.
    NotLocal,
}

/// Looks up `to` (`None`: the bare `<Postmaster>`).
pub fn resolve(config: &Config, to: Option<&Address>) -> Resolution {
    let Some(addr) = to else {
        // RFC 5321 §4.1.1.3: the bare form means postmaster of this server;
        // name it with our first domain so Delivered-To is a full address.
        let routes = postmaster_routes(config, None);
        let original = format!("postmaster@{}", config.domains[0]);
        return Resolution::Local(recipients(&original, routes));
    };
    let Some(domain) = addr.domain.name() else {
        // An address literal is never one of our domain names.
        return Resolution::NotLocal;
    };
    let original = addr.to_string();
    let local = addr.local.to_lowercase();
    if !config.is_local_domain(domain) {
        return if config.is_hostname(domain) {
            system_mail(config, &original, &local)
        } else {
            Resolution::NotLocal
        };
    }
    if let Some(routes) = lookup(config, &local, domain) {
        return Resolution::Local(recipients(&original, routes));
    }
    if let Some(delim) = config.recipient_delimiter {
        if let Some((base, _tag)) = local.split_once(delim) {
            if let Some(routes) = lookup(config, base, domain) {
                return Resolution::Local(recipients(&original, routes));
            }
        }
    }
    if local == "postmaster" {
        return Resolution::Local(recipients(
            &original,
            postmaster_routes(config, Some(domain)),
        ));
    }
    for alias in &config.aliases {
        if matches!(&alias.source, AliasSource::CatchAll(d) if d == domain) {
            return Resolution::Local(recipients(&original, routes_of(&alias.targets)));
        }
    }
    Resolution::Unknown
}

/// Mail to `local` at the hostname (see the module documentation).
fn system_mail(config: &Config, original: &str, local: &str) -> Resolution {
    let hostname = config.hostname.as_str();
    let base = match config.recipient_delimiter {
        Some(d) => local.split_once(d).map_or(local, |(b, _)| b),
        None => local,
    };
    if let Some(routes) = lookup(config, local, hostname).or_else(|| lookup(config, base, hostname))
    {
        return Resolution::Local(recipients(original, routes));
    }
    let system = ["postmaster", "root", "mailer-daemon"].contains(&base)
        || config.system_accounts.contains(base);
    if system {
        return Resolution::Local(recipients(original, postmaster_routes(config, None)));
    }
    Resolution::Unknown
}

/// May `user` (authenticated) send as `from`? Their own name at any of our
/// domains (with or without a `+tag`), and every alias that delivers to them
/// (an exact address, or a local part at any of our domains). Catch-alls do
/// not count. The null sender is allowed (notifications).
pub fn owns(config: &Config, user: &str, from: Option<&Address>) -> bool {
    let Some(addr) = from else {
        return true;
    };
    let Some(domain) = addr.domain.name() else {
        return false;
    };
    if !config.is_local_domain(domain) {
        return false;
    }
    let local = addr.local.to_lowercase();
    let base = match config.recipient_delimiter {
        Some(d) => local.split_once(d).map_or(local.as_str(), |(b, _)| b),
        None => local.as_str(),
    };
    if base == user {
        return true;
    }
    let mine = |targets: &[AliasTarget]| {
        targets
            .iter()
            .any(|t| matches!(t, AliasTarget::User(u) if u == user))
    };
    config.aliases.iter().any(|a| match &a.source {
        AliasSource::Address {
            local: l,
            domain: d,
        } => (l == &local || l == base) && d == domain && mine(&a.targets),
        AliasSource::LocalPart(l) => (l == &local || l == base) && mine(&a.targets),
        AliasSource::CatchAll(_) => false,
    })
}

/// Aliases for the exact address, then for the local part, then a user.
fn lookup(config: &Config, local: &str, domain: &str) -> Option<Vec<Route>> {
    let exact = config.aliases.iter().find(|a| {
        matches!(&a.source, AliasSource::Address { local: l, domain: d } if l == local && d == domain)
    });
    let any_domain = || {
        config
            .aliases
            .iter()
            .find(|a| matches!(&a.source, AliasSource::LocalPart(l) if l == local))
    };
    if let Some(alias) = exact.or_else(any_domain) {
        return Some(routes_of(&alias.targets));
    }
    config
        .users
        .contains_key(local)
        .then(|| vec![Route::Local(local.to_string())])
}

fn postmaster_routes(config: &Config, domain: Option<&str>) -> Vec<Route> {
    let domain = domain.unwrap_or_else(|| config.domains[0].as_str());
    lookup(config, "postmaster", domain)
        .unwrap_or_else(|| vec![Route::Local(config.postmaster.clone())])
}

fn routes_of(targets: &[AliasTarget]) -> Vec<Route> {
    targets
        .iter()
        .filter_map(|t| match t {
            AliasTarget::User(u) => Some(Route::Local(u.clone())),
            AliasTarget::Remote(a) => match Address::parse(a) {
                Ok(addr) => Some(Route::Remote(addr)),
                Err(e) => {
                    log::error!("alias target {a:?} is not a valid address ({e}); skipped");
                    None
                }
            },
        })
        .collect()
}

fn recipients(original: &str, routes: Vec<Route>) -> Vec<Recipient> {
    routes
        .into_iter()
        .map(|route| Recipient {
            original: original.to_string(),
            route,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG_TEXT: &str = r#"
hostname = "mx.example.org"
data_dir = "/tmp/tern-test"
domains = ["example.org", "example.net"]
[[listener]]
address = "127.0.0.1:2525"
role = "mx"
[[user]]
name = "me"
[[user]]
name = "bob"
[aliases]
"info@example.org" = "bob"
"sales" = ["me", "bob"]
"@example.net" = "me"
"friends@example.org" = ["me", "pal@elsewhere.example"]
"#;

    fn config() -> Config {
        Config::parse(CONFIG_TEXT, Path::new("test.toml")).unwrap()
    }

    fn routes(s: &str) -> Resolution {
        let addr = Address::parse(s).unwrap();
        match resolve(&config(), Some(&addr)) {
            Resolution::Local(rs) => {
                assert!(rs.iter().all(|r| r.original == addr.to_string()));
                Resolution::Local(rs)
            }
            other => other,
        }
    }

    fn local(names: &[&str]) -> Vec<Route> {
        names.iter().map(|n| Route::Local(n.to_string())).collect()
    }

    fn route_list(r: Resolution) -> Vec<Route> {
        match r {
            Resolution::Local(rs) => rs.into_iter().map(|r| r.route).collect(),
            other => panic!("expected local, got {other:?}"),
        }
    }

    #[test]
    fn users_at_every_domain_any_case() {
        assert_eq!(route_list(routes("me@example.org")), local(&["me"]));
        assert_eq!(route_list(routes("ME@EXAMPLE.ORG")), local(&["me"]));
        assert_eq!(route_list(routes("bob@example.net")), local(&["bob"]));
    }

    #[test]
    fn aliases_and_plus_addressing() {
        assert_eq!(route_list(routes("info@example.org")), local(&["bob"]));
        assert_eq!(
            route_list(routes("sales@example.net")),
            local(&["me", "bob"])
        );
        assert_eq!(route_list(routes("me+lists@example.org")), local(&["me"]));
        assert_eq!(
            route_list(routes("sales+x@example.org")),
            local(&["me", "bob"])
        );
        let friends = route_list(routes("friends@example.org"));
        assert_eq!(friends[0], Route::Local("me".into()));
        assert_eq!(
            friends[1],
            Route::Remote(Address::parse("pal@elsewhere.example").unwrap())
        );
    }

    #[test]
    fn system_mail_at_the_hostname_goes_to_the_owner() {
        let mut config = config();
        config.system_accounts = ["daemon".to_string(), "www-data".to_string()].into();
        let at = |s: &str| resolve(&config, Some(&Address::parse(s).unwrap()));
        // root, postmaster and the host's logins: the postmaster (the first
        // user, "me"), whatever the case, with or without a +tag.
        for to in [
            "root@mx.example.org",
            "ROOT@MX.EXAMPLE.ORG",
            "postmaster@mx.example.org",
            "MAILER-DAEMON@mx.example.org",
            "www-data@mx.example.org",
            "daemon+cron@mx.example.org",
        ] {
            assert_eq!(route_list(at(to)), local(&["me"]), "{to}");
        }
        // Users and local-part aliases as at every domain.
        assert_eq!(route_list(at("bob@mx.example.org")), local(&["bob"]));
        assert_eq!(
            route_list(at("sales@mx.example.org")),
            local(&["me", "bob"])
        );
        // The hostname is no catch-all, and a subdomain of it is not ours.
        assert_eq!(at("nosuch@mx.example.org"), Resolution::Unknown);
        assert_eq!(at("root@sub.mx.example.org"), Resolution::NotLocal);
        // An alias for root sends system mail elsewhere.
        let text = format!("{CONFIG_TEXT}\"root\" = \"bob\"\n");
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let at = |s: &str| resolve(&config, Some(&Address::parse(s).unwrap()));
        assert_eq!(route_list(at("root@mx.example.org")), local(&["bob"]));
    }

    #[test]
    fn postmaster_always_exists() {
        assert_eq!(route_list(routes("postmaster@example.org")), local(&["me"]));
        assert_eq!(route_list(routes("PostMaster@example.net")), local(&["me"]));
        assert_eq!(route_list(resolve(&config(), None)), local(&["me"]));
        match resolve(&config(), None) {
            Resolution::Local(rs) => assert_eq!(rs[0].original, "postmaster@example.org"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sender_ownership() {
        let c = config();
        let owns = |user: &str, from: &str| owns(&c, user, Some(&Address::parse(from).unwrap()));
        assert!(owns("me", "me@example.org"));
        assert!(owns("me", "Me+lists@example.net"));
        assert!(owns("bob", "info@example.org"), "exact alias to bob");
        assert!(
            owns("me", "sales@example.net"),
            "local-part alias with me as a target"
        );
        assert!(owns("bob", "sales@example.org"));
        assert!(!owns("me", "info@example.org"), "info is bob's");
        assert!(!owns("me", "bob@example.org"));
        assert!(
            !owns("me", "anything@example.net"),
            "catch-alls do not count"
        );
        assert!(!owns("me", "me@elsewhere.example"));
        assert!(!owns("me", "me@[127.0.0.1]"));
        assert!(super::owns(&c, "me", None));
    }

    #[test]
    fn catch_all_only_for_its_domain() {
        assert_eq!(route_list(routes("anything@example.net")), local(&["me"]));
        assert_eq!(routes("anything@example.org"), Resolution::Unknown);
    }

    #[test]
    fn relay_tricks_stay_local_or_unknown() {
        for trick in [
            "pal%elsewhere.example@example.org",
            "elsewhere.example!pal@example.org",
            "\"pal@elsewhere.example\"@example.org",
            "me%elsewhere.example@example.org",
        ] {
            assert_eq!(routes(trick), Resolution::Unknown, "{trick}");
        }
        assert_eq!(routes("me@[127.0.0.1]"), Resolution::NotLocal);
        assert_eq!(routes("me@example.org.evil.example"), Resolution::NotLocal);
        assert_eq!(routes("me@elsewhere.example"), Resolution::NotLocal);
        // At a catch-all domain the trick is just a local address.
        assert_eq!(
            route_list(routes("pal%elsewhere.example@example.net")),
            local(&["me"])
        );
    }
}
