//! The SPF checks of `tern check`: the domain publishes exactly one SPF
//! record, it passes (evaluated by mail-auth, as a receiver would) for each
//! public address, and it needs no more than 10 DNS lookups (RFC 7208
//! §4.6.4), counted through its `include:`s and `redirect=`.

use std::collections::HashSet;
use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Spf};
use mail_auth::{MessageAuthenticator, SpfResult};

use super::dns::{tagged, Dns};
use super::records;
use super::{Check, Status};
use crate::inbound::verify::spf_word;

/// RFC 7208 §4.6.4: at most this many terms that cause DNS lookups.
pub const LOOKUP_LIMIT: usize = 10;
/// Counting stops here (a record that far over needs rewriting anyway).
const COUNT_CAP: usize = 30;

/// The SPF checks of `domain`: `spf` (published, passes for every public
/// address) and `spf-lookups`.
pub async fn check(dns: &Dns, domain: &str, host: &str, public: &[IpAddr]) -> Vec<Check> {
    let fix = records::spf(domain, public).to_string();
    let failed = |found: String| {
        vec![Check::new("spf", domain, Status::Failed)
            .found(found)
            .fix(fix.clone())]
    };
    let found = match tagged(dns, domain, "v=spf1").await {
        Ok(found) => found,
        Err(e) => return failed(format!("lookup failed: {e}")),
    };
    let text = match found.as_slice() {
        [] => return failed("no SPF record".into()),
        [one] => one.clone(),
        _ => {
            return failed(format!(
                "{} SPF records: receivers treat that as an error (RFC 7208 §4.5); publish one",
                found.len()
            ))
        }
    };
    let parsed = match Spf::parse(text.as_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => return failed(format!("\"{text}\" does not parse: {e}")),
    };
    let mut checks = vec![evaluate(dns, domain, host, public, &text).await];
    let lookups = count_lookups(dns, domain, &parsed).await;
    checks.push(if lookups > LOOKUP_LIMIT {
        let shown = if lookups >= COUNT_CAP {
            format!("{COUNT_CAP} or more")
        } else {
            lookups.to_string()
        };
        Check::new("spf-lookups", domain, Status::Failed)
            .found(format!(
                "{shown} DNS lookups, more than {LOOKUP_LIMIT}: receivers answer permerror \
                 (RFC 7208 §4.6.4)"
            ))
            .fix(format!(
                "replace include:, a, mx, ptr and exists terms by ip4:/ip6: terms; when this \
                 server alone sends the domain's mail:\n{fix}"
            ))
    } else {
        Check::new("spf-lookups", domain, Status::Ok)
            .found(format!("{lookups} of at most {LOOKUP_LIMIT} DNS lookups"))
    });
    checks
}

/// The record passes for every public address, as MAIL FROM
/// postmaster@`domain` from `host`.
async fn evaluate(dns: &Dns, domain: &str, host: &str, public: &[IpAddr], text: &str) -> Check {
    if public.is_empty() {
        return Check::new("spf", domain, Status::Warning)
            .found(format!(
                "\"{text}\"; not evaluated: this server's public addresses are not known"
            ))
            .fix("set public_addresses in tern.toml");
    }
    let auth = MessageAuthenticator(dns.resolver().clone());
    let sender = format!("postmaster@{domain}");
    let mut failing = Vec::new();
    for ip in public {
        let output = auth
            .verify_spf(SpfParameters::verify_mail_from(*ip, host, host, &sender))
            .await;
        if output.result() != SpfResult::Pass {
            failing.push((*ip, output.result()));
        }
    }
    if failing.is_empty() {
        return Check::new("spf", domain, Status::Ok).found(format!("pass: \"{text}\""));
    }
    let shown: Vec<String> = failing
        .iter()
        .map(|(ip, result)| format!("{ip}: {}", spf_word(*result)))
        .collect();
    let missing: Vec<IpAddr> = failing.iter().map(|(ip, _)| *ip).collect();
    Check::new("spf", domain, Status::Failed)
        .found(format!("\"{text}\" does not pass for {}", shown.join(", ")))
        .fix(records::spf_with(domain, text, &missing).to_string())
}

/// A macro that is a plain domain name (`include:_spf.example`).
fn literal(m: &Macro) -> Option<String> {
    match m {
        Macro::Literal(bytes) => std::str::from_utf8(bytes).ok().map(str::to_lowercase),
        _ => None,
    }
}

/// The DNS lookups evaluating `spf` of `domain` can cost: one per
/// `include`, `a`, `mx`, `ptr`, `exists` and `redirect`, through the
/// records they include (RFC 7208 §4.6.4). Targets with macros are
/// counted but not followed.
pub async fn count_lookups(dns: &Dns, domain: &str, spf: &Spf) -> usize {
    let mut count = 0;
    let mut seen: HashSet<String> = HashSet::from([domain.to_lowercase()]);
    let mut pending: Vec<Spf> = vec![spf.clone()];
    while let Some(record) = pending.pop() {
        let mut follow: Vec<String> = Vec::new();
        for directive in record.directives.iter() {
            match &directive.mechanism {
                Mechanism::Include { macro_string } => {
                    count += 1;
                    follow.extend(literal(macro_string));
                }
                Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr { .. }
                | Mechanism::Exists { .. } => count += 1,
                Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => {}
            }
        }
        if let Some(redirect) = &record.redirect {
            count += 1;
            follow.extend(literal(redirect));
        }
        if count >= COUNT_CAP {
            return COUNT_CAP;
        }
        for target in follow {
            if !seen.insert(target.clone()) {
                continue;
            }
            if let Ok(found) = tagged(dns, &target, "v=spf1").await {
                if let Some(parsed) = found.first().and_then(|t| Spf::parse(t.as_bytes()).ok()) {
                    pending.push(parsed);
                }
            }
        }
    }
    count
}
