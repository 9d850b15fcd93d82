//! The live DNS checks of `tern check`, through the configured resolver
//! (`[relay] nameservers`, or /etc/resolv.conf): each local domain's MX, the
//! hostname's addresses, forward-confirmed reverse DNS of each public
//! address, DKIM keys, DMARC, MTA-STS and TLS-RPT, and the DNS blocklists
//! of `[check]`. SPF is in [`super::spf`].

use std::net::IpAddr;

use super::dns::{tagged, Dns};
use super::records::{self, Record};
use super::{signing_keys, spf, Check, Status};
use crate::config::Config;
use crate::dkim::keys::{DomainKeys, KeyKind};
use crate::outbound::resolver::DnsError;
use hickory_resolver::TokioResolver;

/// Zone-file lines, one per record.
fn lines(records: &[Record]) -> String {
    records
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A list of addresses for messages.
fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every DNS check for `config`, in the order they are reported.
pub async fn run(config: &Config, resolver: &TokioResolver) -> Vec<Check> {
    let dns = Dns::new(resolver);
    let host = config.hostname.as_str();
    let public = &config.public_addresses;
    let mut checks = Vec::new();
    // A resolver that does not answer would make every lookup wait for its
    // timeout: ask once, and stop there if it does not answer.
    if let Some(first) = config.domains.first() {
        if let Err(e @ DnsError::Temporary(_)) = dns.mx(first).await {
            return vec![Check::new("dns", "resolver", Status::Failed)
                .found(format!("no answer to the first lookup (MX {first}): {e}"))
                .fix(
                    "check that the nameservers of [relay] nameservers (or /etc/resolv.conf) \
                      answer, then tern check again",
                )];
        }
    }
    for domain in &config.domains {
        checks.push(mx(&dns, domain, host).await);
    }
    checks.push(address(&dns, host, public).await);
    if public.is_empty() {
        checks.push(
            Check::new("ptr", "public addresses", Status::Skipped)
                .found("no public address known (the listeners are wildcards)")
                .fix(
                    "set public_addresses = [\"<the server's IPv4>\", \"<its IPv6>\"] in tern.toml",
                ),
        );
    }
    for ip in public {
        checks.push(reverse(&dns, *ip, host).await);
    }
    for domain in &config.domains {
        checks.extend(spf::check(&dns, domain, host, public).await);
    }
    match signing_keys(config) {
        Ok(keys) => {
            for k in &keys {
                for kind in KeyKind::ALL {
                    checks.push(dkim(&dns, k, kind).await);
                }
            }
        }
        Err(check) => checks.push(check),
    }
    for domain in &config.domains {
        checks.push(dmarc(&dns, domain).await);
    }
    for domain in &config.domains {
        checks.extend(mta_sts(&dns, domain, records::mta_sts(config, domain)).await);
    }
    for zone in &config.check.blocklists {
        for ip in public {
            checks.push(blocklist(&dns, *ip, zone).await);
        }
    }
    checks
}

/// A lookup that did not answer: the check cannot say, which counts as
/// failed (nothing outside could look it up either).
fn lookup_failed(check: &'static str, subject: &str, e: &DnsError) -> Check {
    Check::new(check, subject, Status::Failed)
        .found(e.to_string())
        .fix("check the domain's nameservers (and [relay] nameservers), then tern check again")
}

/// The domain's MX points to the hostname.
async fn mx(dns: &Dns, domain: &str, host: &str) -> Check {
    let fix = records::mx(domain, host).to_string();
    let failed = |found: String| {
        Check::new("mx", domain, Status::Failed)
            .found(found)
            .fix(fix.clone())
    };
    match dns.mx(domain).await {
        Ok(records) => {
            let mut shown: Vec<String> = records
                .iter()
                .map(|r| format!("{} {}", r.preference, r.exchange))
                .collect();
            shown.sort();
            let shown = shown.join(", ");
            if records.iter().all(|r| r.exchange.is_empty()) {
                failed(format!(
                    "null MX ({shown}): the domain says it accepts no mail"
                ))
            } else if records.iter().any(|r| r.exchange == host) {
                Check::new("mx", domain, Status::Ok).found(shown)
            } else {
                failed(format!("MX points to {shown}, not to {host}"))
            }
        }
        Err(DnsError::NoSuchDomain) => failed("the domain does not exist in DNS".into()),
        Err(DnsError::NoRecords) => failed("no MX record".into()),
        Err(e) => lookup_failed("mx", domain, &e),
    }
}

/// The hostname resolves to exactly the public addresses.
async fn address(dns: &Dns, host: &str, public: &[IpAddr]) -> Check {
    let wanted: Vec<Record> = public
        .iter()
        .map(|ip| records::address(host, *ip))
        .collect();
    let unknown_fix = "set public_addresses in tern.toml to the server's public addresses";
    let found = match dns.addresses(host).await {
        Ok(found) => found,
        Err(e @ DnsError::Temporary(_)) => return lookup_failed("address", host, &e),
        Err(_) => {
            let check = Check::new("address", host, Status::Failed)
                .found(format!("{host} has no A or AAAA record"));
            return if public.is_empty() {
                check.fix(unknown_fix)
            } else {
                check.fix(lines(&wanted))
            };
        }
    };
    if public.is_empty() {
        return Check::new("address", host, Status::Warning)
            .found(format!(
                "resolves to {}; this server's public addresses are not known",
                list(&found)
            ))
            .fix(unknown_fix);
    }
    let missing: Vec<Record> = public
        .iter()
        .filter(|ip| !found.contains(ip))
        .map(|ip| records::address(host, *ip))
        .collect();
    let extra: Vec<IpAddr> = found
        .iter()
        .filter(|ip| !public.contains(ip))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Check::new("address", host, Status::Failed)
            .found(format!(
                "resolves to {}, not to all of {}",
                list(&found),
                list(public)
            ))
            .fix(lines(&missing));
    }
    if !extra.is_empty() {
        return Check::new("address", host, Status::Warning)
            .found(format!(
                "also resolves to {}, which is not in public_addresses",
                list(&extra)
            ))
            .fix("remove those records, or add the addresses to public_addresses");
    }
    Check::new("address", host, Status::Ok).found(list(&found))
}

/// Forward-confirmed reverse DNS: the PTR of `ip` names the hostname, and
/// the hostname resolves back to `ip`.
async fn reverse(dns: &Dns, ip: IpAddr, host: &str) -> Check {
    let subject = ip.to_string();
    let fix = format!(
        "ask your hosting provider (who gave you {ip}) to set: {}",
        records::ptr(ip, host)
    );
    let names = match dns.ptr(ip).await {
        Ok(names) => names,
        Err(DnsError::Temporary(e)) => {
            return lookup_failed("ptr", &subject, &DnsError::Temporary(e))
        }
        Err(_) => {
            return Check::new("ptr", subject, Status::Failed)
                .found("no PTR record")
                .fix(fix)
        }
    };
    let confirms = |name: &str| {
        let name = name.to_string();
        async move {
            dns.addresses(&name)
                .await
                .is_ok_and(|addrs| addrs.contains(&ip))
        }
    };
    if names.iter().any(|n| n == host) {
        return if confirms(host).await {
            Check::new("ptr", subject, Status::Ok).found(format!("{host}, confirmed"))
        } else {
            Check::new("ptr", subject, Status::Failed)
                .found(format!(
                    "PTR names {host}, but {host} does not resolve to {ip}"
                ))
                .fix(records::address(host, ip).to_string())
        };
    }
    let first = &names[0];
    if confirms(first).await {
        Check::new("ptr", subject, Status::Warning)
            .found(format!(
                "PTR names {first} (confirmed), not {host}, the name tern greets with"
            ))
            .fix(fix)
    } else {
        Check::new("ptr", subject, Status::Failed)
            .found(format!(
                "PTR names {first}, which does not resolve back to {ip}"
            ))
            .fix(fix)
    }
}

/// The value of tag `name` in a DKIM/DMARC tag list (RFC 6376 §3.2), with
/// folding whitespace removed.
pub fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.split_whitespace().collect())
    })
}

/// The published key of one selector equals the local one.
async fn dkim(dns: &Dns, keys: &DomainKeys, kind: KeyKind) -> Check {
    let Some(ours) = records::dkim(keys).into_iter().find(|r| {
        r.name
            .starts_with(&format!("{}.", kind.selector(&keys.selector)))
    }) else {
        return Check::new("dkim", keys.domain.clone(), Status::Failed).found("no local key");
    };
    let subject = ours.name.trim_end_matches('.').to_string();
    let failed = |found: String| {
        Check::new("dkim", subject.clone(), Status::Failed)
            .found(found)
            .fix(ours.to_string())
    };
    let published = match dns.txt(&ours.name).await {
        Ok(texts) => texts,
        Err(DnsError::Temporary(e)) => {
            return lookup_failed("dkim", &subject, &DnsError::Temporary(e))
        }
        Err(_) => return failed("no DKIM record: receivers cannot verify the signatures".into()),
    };
    let local_key = tag(&ours.value, "p").unwrap_or_default();
    let keys_found: Vec<String> = published.iter().filter_map(|t| tag(t, "p")).collect();
    if keys_found.contains(&local_key) {
        return Check::new("dkim", subject, Status::Ok).found(format!(
            "the published {} key is the local key",
            kind.name()
        ));
    }
    match keys_found.first() {
        None => failed("a TXT record without a key (no p= tag)".into()),
        Some(p) if p.is_empty() => failed("the key is revoked (empty p=)".into()),
        Some(p) => failed(format!(
            "the published key (p={}...) is not the local key (p={}...)",
            p.chars().take(16).collect::<String>(),
            local_key.chars().take(16).collect::<String>()
        )),
    }
}

/// A DMARC record is published and parses; its policy is shown.
async fn dmarc(dns: &Dns, domain: &str) -> Check {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::dmarc::{Dmarc, Policy};
    let name = format!("_dmarc.{domain}");
    let fix = records::dmarc(domain).to_string();
    let found = match tagged(dns, &name, "v=DMARC1").await {
        Ok(found) => found,
        Err(e) => return lookup_failed("dmarc", domain, &e),
    };
    let failed = |found: String| {
        Check::new("dmarc", domain, Status::Failed)
            .found(found)
            .fix(fix.clone())
    };
    let record = match found.as_slice() {
        [] => return failed(format!("no DMARC record at {name}")),
        [one] => one,
        _ => {
            return failed(format!(
                "{} DMARC records at {name}: receivers ignore them all (RFC 7489 §6.6.3)",
                found.len()
            ))
        }
    };
    match Dmarc::parse(record.as_bytes()) {
        Ok(parsed) => {
            let policy = match parsed.p {
                Policy::None => "p=none (reports only)",
                Policy::Quarantine => "p=quarantine",
                Policy::Reject => "p=reject",
                Policy::Unspecified => "no policy",
            };
            Check::new("dmarc", domain, Status::Ok).found(policy)
        }
        Err(e) => failed(format!("\"{record}\" does not parse: {e}")),
    }
}

/// MTA-STS and TLS-RPT. With `[mta_sts]`, tern serves the policy and the
/// `_mta-sts` record must carry its id (`expected`); without, they are "not
/// configured" unless the owner publishes them (then the policy must be
/// served from elsewhere).
async fn mta_sts(dns: &Dns, domain: &str, expected: Option<records::Record>) -> Vec<Check> {
    let not_served = "not configured: tern does not serve an MTA-STS policy ([mta_sts] is off)";
    let found = tagged(dns, &format!("_mta-sts.{domain}"), "v=STSv1").await;
    let sts = match (found, expected) {
        (Ok(found), Some(want)) if found.iter().any(|f| tag(f, "id") == tag(&want.value, "id")) => {
            Check::new("mta-sts", domain, Status::Ok).found(format!("published ({})", want.value))
        }
        (Ok(found), Some(want)) => Check::new("mta-sts", domain, Status::Failed)
            .found(match found.first() {
                Some(f) => format!("\"{f}\" does not name the policy tern serves"),
                None => "not published".into(),
            })
            .fix(want.to_string()),
        (Ok(found), None) if found.is_empty() => {
            Check::new("mta-sts", domain, Status::Skipped).found(not_served)
        }
        (Ok(found), None) => Check::new("mta-sts", domain, Status::Warning)
            .found(format!(
                "published ({}), but tern does not serve the policy",
                tag(&found[0], "id").map_or("no id".into(), |id| format!("id={id}"))
            ))
            .fix(format!(
                "make sure https://mta-sts.{domain}/.well-known/mta-sts.txt is served elsewhere \
                 and lists mx: of this server, or remove _mta-sts.{domain}"
            )),
        (Err(e), _) => Check::new("mta-sts", domain, Status::Warning).found(e.to_string()),
    };
    let rpt = match tagged(dns, &format!("_smtp._tls.{domain}"), "v=TLSRPTv1").await {
        Ok(found) if found.is_empty() => Check::new("tls-rpt", domain, Status::Skipped)
            .found("not configured (only useful with MTA-STS)"),
        Ok(found) => Check::new("tls-rpt", domain, Status::Ok).found(
            tag(&found[0], "rua").map_or("published".into(), |rua| format!("reports to {rua}")),
        ),
        Err(e) => Check::new("tls-rpt", domain, Status::Warning).found(e.to_string()),
    };
    vec![sts, rpt]
}

/// `ip` is not listed in the blocklist `zone` (RFC 5782).
async fn blocklist(dns: &Dns, ip: IpAddr, zone: &str) -> Check {
    let subject = format!("{ip} in {zone}");
    let name = records::blocklist_name(ip, zone);
    let answers = match dns.addresses(&name).await {
        Ok(answers) => answers,
        Err(DnsError::NoSuchDomain | DnsError::NoRecords) => {
            return Check::new("blocklist", subject, Status::Ok).found("not listed")
        }
        Err(e) => {
            return Check::new("blocklist", subject, Status::Warning)
                .found(format!("the list did not answer: {e}"))
        }
    };
    let codes: Vec<String> = answers.iter().map(ToString::to_string).collect();
    let codes = codes.join(", ");
    // RFC 5782 §2.1: listings are 127.0.0.2 and up; several lists answer
    // 127.255.255.x to say they refuse the query (an open resolver).
    let refused = answers.iter().any(|a| match a {
        IpAddr::V4(v4) => v4.octets()[..3] == [127, 255, 255],
        IpAddr::V6(_) => false,
    });
    if refused {
        return Check::new("blocklist", subject, Status::Warning)
            .found(format!("the list refused the query ({codes})"))
            .fix("ask it through a resolver of your own: set [relay] nameservers");
    }
    if !answers
        .iter()
        .any(|a| matches!(a, IpAddr::V4(v4) if v4.octets()[0] == 127))
    {
        return Check::new("blocklist", subject, Status::Warning)
            .found(format!("unexpected answer {codes}"));
    }
    let reason = dns
        .txt(&name)
        .await
        .ok()
        .and_then(|t| t.into_iter().next())
        .unwrap_or_default();
    Check::new("blocklist", subject, Status::Failed)
        .found(format!("listed ({codes}) {reason}").trim_end().to_string())
        .fix(format!(
            "find out why (an open relay, a compromised account, an earlier owner of {ip}), \
             then follow {zone}'s removal procedure"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_without_whitespace() {
        let record = "v=DKIM1; k=rsa; p=MIIB AAAA\r\n BBBB ;t=s";
        assert_eq!(tag(record, "p").as_deref(), Some("MIIBAAAABBBB"));
        assert_eq!(tag(record, "k").as_deref(), Some("rsa"));
        assert_eq!(tag(record, "t").as_deref(), Some("s"));
        assert_eq!(tag(record, "x"), None);
        assert_eq!(tag("v=DKIM1; p=", "p").as_deref(), Some(""));
    }
}
