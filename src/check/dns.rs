//! The lookups `tern check` makes ([`Dns`]): TXT, PTR, MX and addresses
//! through one resolver (the one tern's own delivery uses, for MX and
//! addresses), and [`tagged`] TXT records such as `v=DMARC1`. Shared by the
//! live checks ([`super::live`]) and SPF ([`super::spf`]).

use std::net::IpAddr;

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use super::records;
use crate::outbound::resolver::{classify, fqdn, DnsError, HickoryResolver, Mx, Resolver};

/// The lookups the checks make.
pub struct Dns {
    resolver: TokioResolver,
    /// The same resolver behind tern's own MX and address lookups.
    delivery: HickoryResolver,
}

impl Dns {
    pub fn new(resolver: &TokioResolver) -> Dns {
        Dns {
            resolver: resolver.clone(),
            delivery: HickoryResolver::from(resolver.clone()),
        }
    }

    /// The resolver, for mail-auth.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The TXT records at `name`, each one's strings joined.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let lookup = self
            .resolver
            .txt_lookup(fqdn(name))
            .await
            .map_err(classify)?;
        let texts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        if texts.is_empty() {
            return Err(DnsError::NoRecords);
        }
        Ok(texts)
    }

    /// The names the PTR records of `ip` give (lowercase, no final dot).
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let lookup = self
            .resolver
            .reverse_lookup(records::reverse_name(ip))
            .await
            .map_err(classify)?;
        let names: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(name) => Some(name.0.to_ascii().trim_end_matches('.').to_lowercase()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(DnsError::NoRecords);
        }
        Ok(names)
    }

    /// The MX records of `domain`.
    pub async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        self.delivery.mx(domain).await
    }

    /// The IPv6 and IPv4 addresses of `host`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        self.delivery.addresses(host).await
    }
}

/// The TXT records at `name` that start with `tag` (case-insensitive), e.g.
/// `v=DMARC1`; `Ok(empty)` when there are none.
pub async fn tagged(dns: &Dns, name: &str, tag: &str) -> Result<Vec<String>, DnsError> {
    match dns.txt(name).await {
        Ok(texts) => Ok(texts
            .into_iter()
            .filter(|t| {
                t.get(..tag.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(tag))
                    && t[tag.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == ';' || c == ' ')
            })
            .collect()),
        Err(DnsError::NoRecords | DnsError::NoSuchDomain) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
