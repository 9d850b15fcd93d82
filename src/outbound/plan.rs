//! Where mail for one destination domain goes, and with what TLS rule: a
//! domain literal's address, a `[[route]]`'s host, the smarthost, or the
//! domain's MX hosts (RFC 5321 §5.1); or, before any connection, the outcome
//! for every recipient there (null MX, no such domain, DNS down).

use crate::config::{Config, SmarthostTls, TlsPolicy};
use crate::queue::{Diagnostic, Outcome};
use crate::smtp::{Domain, EnhancedCode};

use super::resolver::{plan, MxPlan, Resolver};

/// How to reach a destination.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Hosts in order of preference, with the port to use.
    pub hosts: Vec<(String, u16)>,
    pub tls: Tls,
    /// AUTH credentials (smarthost only).
    pub auth: Option<(String, String)>,
}

/// The TLS rule for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tls {
    /// STARTTLS if offered, any certificate; plaintext if not offered or if the
    /// handshake fails.
    Opportunistic,
    /// STARTTLS with a verified certificate, or no delivery.
    RequiredStartTls,
    /// TLS from the first byte, verified (a smarthost on port 465).
    Implicit,
}

/// What the attempt at one destination decided before any transaction.
pub enum Resolved {
    Plan(Plan),
    /// Every recipient gets this outcome (null MX, no such domain, DNS down).
    All(Outcome),
}

/// Works out where mail for `domain` goes.
pub async fn resolve(config: &Config, resolver: &dyn Resolver, domain: &Domain) -> Resolved {
    let relay = &config.relay;
    let name = match domain {
        Domain::Literal(lit) => {
            // RFC 5321 §4.1.3: deliver to that address.
            let ip = lit.strip_prefix("IPv6:").unwrap_or(lit);
            return Resolved::Plan(Plan {
                hosts: vec![(ip.to_string(), relay.port)],
                tls: policy(relay.tls),
                auth: None,
            });
        }
        Domain::Name(n) => n.as_str(),
    };
    let route = relay.routes.iter().find(|r| r.domain == name);
    let tls = policy(route.and_then(|r| r.tls).unwrap_or(relay.tls));
    if let Some((host, port)) = route.and_then(|r| r.host.clone()) {
        return Resolved::Plan(Plan {
            hosts: vec![(host, port)],
            tls,
            auth: None,
        });
    }
    if let Some(smart) = &relay.smarthost {
        return Resolved::Plan(Plan {
            hosts: vec![(smart.host.clone(), smart.port)],
            tls: match smart.tls {
                SmarthostTls::StartTls => Tls::RequiredStartTls,
                SmarthostTls::Implicit => Tls::Implicit,
            },
            auth: smart
                .auth
                .as_ref()
                .map(|c| (c.user.clone(), c.password.clone())),
        });
    }
    match plan(resolver, name, &config.hostname).await {
        Ok(MxPlan::Hosts(hosts)) => Resolved::Plan(Plan {
            hosts: hosts.into_iter().map(|h| (h, relay.port)).collect(),
            tls,
            auth: None,
        }),
        // RFC 7505 §3: 556 5.1.10 for a null MX.
        Ok(MxPlan::NullMx) => Resolved::All(Outcome::Failed(Diagnostic::reply(
            556,
            EnhancedCode(5, 1, 10),
            format!("Domain {name} accepts no mail (null MX)"),
        ))),
        Ok(MxPlan::NoSuchDomain) => Resolved::All(Outcome::Failed(Diagnostic::reply(
            550,
            EnhancedCode(5, 1, 2),
            format!("Domain {name} does not exist (DNS: NXDOMAIN)"),
        ))),
        Ok(MxPlan::LoopsToSelf) => Resolved::All(Outcome::Failed(Diagnostic::reply(
            554,
            EnhancedCode(5, 4, 6),
            format!("Mail for {name} loops back to myself ({})", config.hostname),
        ))),
        // RFC 3463 X.4.3: directory server failure.
        Err(e) => Resolved::All(Outcome::Deferred(Diagnostic::note(
            EnhancedCode(4, 4, 3),
            format!("MX lookup for {name}: {e}"),
        ))),
    }
}

fn policy(p: TlsPolicy) -> Tls {
    match p {
        TlsPolicy::Opportunistic => Tls::Opportunistic,
        TlsPolicy::Required => Tls::RequiredStartTls,
    }
}
