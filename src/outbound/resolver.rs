//! DNS for delivery: the [`Resolver`] trait (DESIGN invariant 7: the outside
//! world is injected), its hickory implementation against the configured
//! nameservers, and the choice of hosts for a domain (RFC 5321 §5.1): MX records
//! by preference, shuffled within a preference; the domain itself when it has
//! no MX; null MX (RFC 7505) meaning "accepts no mail".

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::BoxFuture;

/// A DNS answer that is not a list of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("no such domain")]
    NoSuchDomain,
    /// The name exists but has no records of the type asked.
    #[error("no records")]
    NoRecords,
    /// Timeout, SERVFAIL, unreachable nameserver: try later.
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// The host name, lowercase, without the trailing dot; empty for the root
    /// (`.`), as in a null MX.
    pub exchange: String,
}

/// What delivery needs from DNS.
pub trait Resolver: Send + Sync + 'static {
    /// The MX records of `domain`.
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, DnsError>>;
    /// The IPv6 and IPv4 addresses of `host`.
    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>>;

    /// The same hickory resolver, for mail-auth's checks of incoming mail
    /// (SPF, DKIM, DMARC, iprev): its configured nameservers and its answer
    /// cache are shared, so what the sender-domain check asked is not asked
    /// again within its TTL. `None` (the test tables) skips those checks.
    fn authenticator(&self) -> Option<mail_auth::MessageAuthenticator> {
        None
    }
}

/// The production resolver: hickory, asking the configured nameservers (or
/// those of /etc/resolv.conf).
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// A resolver asking `nameservers`, or the system's when empty.
    pub fn new(nameservers: &[SocketAddr]) -> Result<HickoryResolver, String> {
        Ok(HickoryResolver {
            inner: tokio_resolver(nameservers)?,
        })
    }
}

impl From<TokioResolver> for HickoryResolver {
    fn from(inner: TokioResolver) -> HickoryResolver {
        HickoryResolver { inner }
    }
}

/// The hickory resolver every part of tern uses (delivery, the checks on
/// incoming mail, `tern check`): it asks `nameservers` (`[relay]
/// nameservers`), or those of /etc/resolv.conf when empty.
pub fn tokio_resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?
    } else {
        let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
        for ns in nameservers {
            let connection = |protocol| {
                let mut c = ConnectionConfig::new(protocol);
                c.port = ns.port();
                c
            };
            config.add_name_server(NameServerConfig::new(
                ns.ip(),
                true,
                vec![
                    connection(ProtocolConfig::Udp),
                    connection(ProtocolConfig::Tcp),
                ],
            ));
        }
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
    };
    // We never speak DNS over TLS, but hickory builds a TLS client anyway
    // and by default loads the system's CA certificates for it, failing
    // on a machine without any. Give it one that needs none.
    builder = builder.with_tls_config((*crate::tls::client_opportunistic()).clone());
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(5);
    options.attempts = 2;
    options.ndots = 0;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// What a failed hickory lookup means.
pub(crate) fn classify(e: NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NoSuchDomain
    } else if e.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(e.to_string())
    }
}

/// `name.` — fully qualified, so no search domains are tried.
pub(crate) fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Resolver for HickoryResolver {
    fn authenticator(&self) -> Option<mail_auth::MessageAuthenticator> {
        // A clone shares the resolver's connections and cache.
        Some(mail_auth::MessageAuthenticator(self.inner.clone()))
    }

    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, DnsError>> {
        Box::pin(async move {
            let lookup = self.inner.mx_lookup(fqdn(domain)).await.map_err(classify)?;
            let records: Vec<Mx> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: mx.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
                    }),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(records)
        })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        Box::pin(async move {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![ip]);
            }
            let name = fqdn(host);
            let (v6, v4) = tokio::join!(
                self.inner.ipv6_lookup(name.clone()),
                self.inner.ipv4_lookup(name)
            );
            let mut addrs = Vec::new();
            let mut errors = Vec::new();
            for result in [v6, v4] {
                match result {
                    Ok(lookup) => {
                        addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        }))
                    }
                    Err(e) => errors.push(classify(e)),
                }
            }
            if !addrs.is_empty() {
                return Ok(addrs);
            }
            // Both failed or were empty: the most telling reason wins.
            if let Some(t) = errors.iter().find(|e| matches!(e, DnsError::Temporary(_))) {
                return Err(t.clone());
            }
            if errors.contains(&DnsError::NoSuchDomain) {
                return Err(DnsError::NoSuchDomain);
            }
            Err(DnsError::NoRecords)
        })
    }
}

/// Where to deliver a domain's mail, per DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPlan {
    /// Try these hosts in this order.
    Hosts(Vec<String>),
    /// RFC 7505 null MX: the domain accepts no mail.
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
    /// We are the best MX ourselves, yet the domain is not one of ours.
    LoopsToSelf,
}

/// RFC 5321 §5.1: MX records sorted by preference (random order within one
/// preference, to spread load); no MX means the domain itself is the host.
/// When `myself` (our host name) is listed, only hosts more preferred than us
/// count.
pub async fn plan(resolver: &dyn Resolver, domain: &str, myself: &str) -> Result<MxPlan, DnsError> {
    match resolver.mx(domain).await {
        Ok(mut records) => {
            if records.len() == 1 && records[0].exchange.is_empty() {
                return Ok(MxPlan::NullMx);
            }
            if let Some(mine) = records
                .iter()
                .filter(|r| r.exchange == myself)
                .map(|r| r.preference)
                .min()
            {
                records.retain(|r| r.preference < mine);
                if records.is_empty() {
                    return Ok(MxPlan::LoopsToSelf);
                }
            }
            Ok(MxPlan::Hosts(order_mx(records)))
        }
        Err(DnsError::NoRecords) if domain == myself => Ok(MxPlan::LoopsToSelf),
        Err(DnsError::NoRecords) => Ok(MxPlan::Hosts(vec![domain.to_string()])),
        Err(DnsError::NoSuchDomain) => Ok(MxPlan::NoSuchDomain),
        Err(e) => Err(e),
    }
}

/// Sorts by preference, shuffling equal preferences; drops root exchanges.
fn order_mx(mut records: Vec<Mx>) -> Vec<String> {
    records.retain(|r| !r.exchange.is_empty());
    // Shuffle first, then a stable sort keeps the shuffle within a preference.
    let n = records.len();
    for i in (1..n).rev() {
        let j = random_below(i + 1);
        records.swap(i, j);
    }
    records.sort_by_key(|r| r.preference);
    let mut hosts: Vec<String> = Vec::new();
    for r in records {
        if !hosts.contains(&r.exchange) {
            hosts.push(r.exchange);
        }
    }
    hosts
}

/// A number below `n` (n > 0), not cryptographic.
fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(n);
    (h.finish() % n as u64) as usize
}

/// Orders addresses IPv6 first, alternating with IPv4 (RFC 8305 in spirit:
/// try both families, prefer v6).
pub fn interleave(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = addrs.into_iter().partition(|a| a.is_ipv6());
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A resolver answering from a table (for the pure selection logic; the
    /// integration tests use a real DNS server on loopback).
    struct Table(HashMap<String, Result<Vec<Mx>, DnsError>>);

    impl Resolver for Table {
        fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, DnsError>> {
            Box::pin(async move {
                self.0
                    .get(domain)
                    .cloned()
                    .unwrap_or(Err(DnsError::NoSuchDomain))
            })
        }
        fn addresses<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
            Box::pin(async move { Err(DnsError::NoRecords) })
        }
    }

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[tokio::test]
    async fn plans() {
        let mut t = HashMap::new();
        t.insert(
            "a.example".to_string(),
            Ok(vec![mx(20, "backup.a.example"), mx(10, "mx.a.example")]),
        );
        t.insert("null.example".to_string(), Ok(vec![mx(0, "")]));
        t.insert("nomx.example".to_string(), Err(DnsError::NoRecords));
        t.insert(
            "broken.example".to_string(),
            Err(DnsError::Temporary("SERVFAIL".into())),
        );
        t.insert(
            "self.example".to_string(),
            Ok(vec![mx(10, "me.example"), mx(20, "backup.example")]),
        );
        t.insert(
            "backup.example".to_string(),
            Ok(vec![mx(10, "primary.example"), mx(20, "me.example")]),
        );
        let r = Table(t);
        let plan = |d: &'static str| plan(&r, d, "me.example");
        assert_eq!(
            plan("a.example").await,
            Ok(MxPlan::Hosts(vec![
                "mx.a.example".into(),
                "backup.a.example".into()
            ]))
        );
        assert_eq!(plan("null.example").await, Ok(MxPlan::NullMx));
        assert_eq!(
            plan("nomx.example").await,
            Ok(MxPlan::Hosts(vec!["nomx.example".into()]))
        );
        assert_eq!(plan("gone.example").await, Ok(MxPlan::NoSuchDomain));
        assert!(matches!(
            plan("broken.example").await,
            Err(DnsError::Temporary(_))
        ));
        // RFC 5321 §5.1: never hand mail to a host less preferred than ourselves.
        assert_eq!(plan("self.example").await, Ok(MxPlan::LoopsToSelf));
        assert_eq!(
            plan("backup.example").await,
            Ok(MxPlan::Hosts(vec!["primary.example".into()]))
        );
    }

    #[test]
    fn equal_preferences_are_shuffled_but_stay_behind_better_ones() {
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let order = order_mx(vec![
                mx(10, "a"),
                mx(10, "b"),
                mx(10, "c"),
                mx(5, "best"),
                mx(50, "last"),
            ]);
            assert_eq!(order[0], "best");
            assert_eq!(order[4], "last");
            firsts.insert(order[1].clone());
        }
        assert!(firsts.len() > 1, "no shuffling within a preference");
    }

    #[test]
    fn interleaves_families_v6_first() {
        let addrs: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let out = interleave(addrs);
        assert_eq!(out[0].to_string(), "2001:db8::1");
        assert_eq!(out[1].to_string(), "192.0.2.1");
        assert_eq!(out[2].to_string(), "192.0.2.2");
    }
}
