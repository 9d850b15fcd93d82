//! The DNS records tern needs published, as zone-file lines: what
//! `tern dns` prints (a commented snippet per domain, [`zone_snippets`]) and
//! what `tern check` offers as the fix of each failed check. One source for
//! both, so the fix is always the record `tern dns` asks for.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::config::Config;
use crate::dkim::keys::DomainKeys;

/// The longest character-string of a TXT record (RFC 1035 §3.3.14).
const TXT_STRING_MAX: usize = 255;

/// One resource record, as a zone-file line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, fully qualified with its final dot.
    pub name: String,
    /// `MX`, `A`, `AAAA`, `TXT`, `PTR`.
    pub kind: &'static str,
    /// The data: for TXT the text unquoted (all strings joined).
    pub value: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} IN {}", self.name, self.kind)?;
        if self.kind != "TXT" {
            return write!(f, " {}", self.value);
        }
        // Split into strings of at most 255 octets, at character boundaries.
        let mut rest = self.value.as_str();
        loop {
            let mut end = rest.len().min(TXT_STRING_MAX);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (chunk, tail) = rest.split_at(end);
            write!(
                f,
                " \"{}\"",
                chunk.replace('\\', "\\\\").replace('"', "\\\"")
            )?;
            rest = tail;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}

/// `name.`
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// `domain. IN MX 10 hostname.`
pub fn mx(domain: &str, hostname: &str) -> Record {
    Record {
        name: fqdn(domain),
        kind: "MX",
        value: format!("10 {}", fqdn(hostname)),
    }
}

/// `hostname. IN A ip` (or AAAA).
pub fn address(hostname: &str, ip: IpAddr) -> Record {
    Record {
        name: fqdn(hostname),
        kind: if ip.is_ipv4() { "A" } else { "AAAA" },
        value: ip.to_string(),
    }
}

/// The reverse name of `ip`: `25.2.0.192.in-addr.arpa.`, or the nibbles
/// under `ip6.arpa.` (RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xF, byte >> 4);
            }
            name.push_str("ip6.arpa.");
            name
        }
    }
}

/// The reversed address as a blocklist zone wants it in front of its name:
/// `25.2.0.192` or the 32 nibbles (RFC 5782 §2.1, §2.4).
pub fn blocklist_name(ip: IpAddr, zone: &str) -> String {
    let reverse = reverse_name(ip);
    let labels = reverse
        .trim_end_matches("in-addr.arpa.")
        .trim_end_matches("ip6.arpa.");
    format!("{labels}{}", fqdn(zone))
}

/// `<reverse name>. IN PTR hostname.`: asked of the hosting provider.
pub fn ptr(ip: IpAddr, hostname: &str) -> Record {
    Record {
        name: reverse_name(ip),
        kind: "PTR",
        value: fqdn(hostname),
    }
}

/// The SPF mechanisms naming `addresses`: `ip4:192.0.2.25 ip6:2001:db8::25`.
fn ip_terms(addresses: &[IpAddr]) -> Vec<String> {
    addresses
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("ip4:{v4}"),
            IpAddr::V6(v6) => format!("ip6:{v6}"),
        })
        .collect()
}

/// The SPF record of `domain`: this server's addresses (no DNS lookups for
/// receivers), or `mx` when they are not known; `-all` for everyone else.
pub fn spf(domain: &str, addresses: &[IpAddr]) -> Record {
    let terms = if addresses.is_empty() {
        "mx".to_string()
    } else {
        ip_terms(addresses).join(" ")
    };
    Record {
        name: fqdn(domain),
        kind: "TXT",
        value: format!("v=spf1 {terms} -all"),
    }
}

/// `published` (an SPF record) with this server's addresses added right
/// after `v=spf1`, where they cost no lookups and match first.
pub fn spf_with(domain: &str, published: &str, missing: &[IpAddr]) -> Record {
    let rest = published
        .get(6..)
        .filter(|_| published.len() >= 6 && published[..6].eq_ignore_ascii_case("v=spf1"))
        .unwrap_or("");
    let mut value = format!("v=spf1 {}", ip_terms(missing).join(" "));
    let rest = rest.trim();
    if rest.is_empty() {
        value.push_str(" -all");
    } else {
        value.push(' ');
        value.push_str(rest);
    }
    Record {
        name: fqdn(domain),
        kind: "TXT",
        value,
    }
}

/// A starting DMARC policy: aggregate reports to postmaster@ the domain,
/// no action yet (RFC 7489 §6.3). Move to `p=quarantine` once the reports
/// show every legitimate source passing.
pub fn dmarc(domain: &str) -> Record {
    Record {
        name: format!("_dmarc.{}", fqdn(domain)),
        kind: "TXT",
        value: format!("v=DMARC1; p=none; rua=mailto:postmaster@{domain}"),
    }
}

/// `_mta-sts.<domain>. IN TXT "v=STSv1; id=..."` (RFC 8461 §3.1) for the
/// policy tern serves: the id is derived from the policy text, so it
/// changes exactly when the policy does (senders then fetch it again).
/// `None` when `[mta_sts]` is off.
pub fn mta_sts(config: &Config, domain: &str) -> Option<Record> {
    let policy = crate::web::pages::mta_sts_policy(config)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, policy.as_bytes());
    let id: String = digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(Record {
        name: format!("_mta-sts.{}", fqdn(domain)),
        kind: "TXT",
        value: format!("v=STSv1; id={id}"),
    })
}

/// `_smtp._tls.<domain>. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@<domain>"`
/// (RFC 8460 §3): where senders report TLS failures.
pub fn tls_rpt(domain: &str) -> Record {
    Record {
        name: format!("_smtp._tls.{}", fqdn(domain)),
        kind: "TXT",
        value: format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
    }
}

/// `<prefix>.<domain>. IN CNAME hostname.`: a name the https listener
/// answers for (mta-sts, autoconfig).
pub fn service_alias(prefix: &str, domain: &str, hostname: &str) -> Record {
    Record {
        name: format!("{prefix}.{}", fqdn(domain)),
        kind: "CNAME",
        value: fqdn(hostname),
    }
}

/// The two DKIM key records of `keys` (RSA first).
pub fn dkim(keys: &DomainKeys) -> Vec<Record> {
    keys.dns_records()
        .into_iter()
        .map(|r| Record {
            name: r.name,
            kind: "TXT",
            value: r.value,
        })
        .collect()
}

/// What `tern dns` prints: per local domain a commented zone-file snippet
/// (MX, SPF, DKIM, DMARC), then the server's own records (A/AAAA of the
/// hostname) and the PTR records to ask the hosting provider for.
pub fn zone_snippets(config: &Config, keys: &[DomainKeys]) -> String {
    let host = &config.hostname;
    let addresses = &config.public_addresses;
    let mut out = String::new();
    let line = |out: &mut String, text: &dyn fmt::Display| {
        let _ = writeln!(out, "{text}");
    };
    for domain in &config.domains {
        let _ = writeln!(out, "; ---- zone {domain} ----");
        line(&mut out, &"; mail for the domain goes to this server");
        line(&mut out, &mx(domain, host));
        line(&mut out, &"; SPF: only this server sends the domain's mail");
        line(&mut out, &spf(domain, addresses));
        match keys.iter().find(|k| &k.domain == domain) {
            Some(k) => {
                line(
                    &mut out,
                    &format!(
                        "; DKIM: the public keys tern signs with (selector {}, rsa and ed25519)",
                        k.selector
                    ),
                );
                for record in dkim(k) {
                    line(&mut out, &record);
                }
            }
            None => line(
                &mut out,
                &"; DKIM: no keys for this domain, its mail is not signed \
                  (tern dkim keygen --all-missing, then tern dns again)",
            ),
        }
        line(
            &mut out,
            &"; DMARC: start by collecting reports; later p=quarantine, then p=reject",
        );
        line(&mut out, &dmarc(domain));
        match mta_sts(config, domain) {
            Some(record) => {
                line(
                    &mut out,
                    &format!(
                        "; MTA-STS: tern serves the policy at \
                         https://mta-sts.{domain}/.well-known/mta-sts.txt; TLS-RPT: reports to postmaster"
                    ),
                );
                line(&mut out, &service_alias("mta-sts", domain, host));
                line(&mut out, &record);
                line(&mut out, &tls_rpt(domain));
            }
            None => line(
                &mut out,
                &"; MTA-STS and TLS-RPT: none yet (turn on [mta_sts] with an https listener)",
            ),
        }
        if config.autoconfig.is_some() {
            line(
                &mut out,
                &format!("; mail clients find their settings at https://autoconfig.{domain}/"),
            );
            line(&mut out, &service_alias("autoconfig", domain, host));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "; ---- the server {host} ----");
    if addresses.is_empty() {
        line(
            &mut out,
            &format!(
                "; the addresses of {host} are not known: set public_addresses in tern.toml \
                 (the listeners are wildcards), then tern dns again"
            ),
        );
        return out;
    }
    line(
        &mut out,
        &"; its addresses (in the zone that holds the hostname)",
    );
    for ip in addresses {
        line(&mut out, &address(host, *ip));
    }
    line(
        &mut out,
        &"; reverse DNS: ask your hosting provider to set these PTR records",
    );
    for ip in addresses {
        line(&mut out, &ptr(*ip, host));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_zone_file_lines() {
        let v4: IpAddr = "192.0.2.25".parse().unwrap();
        let v6: IpAddr = "2001:db8::25".parse().unwrap();
        assert_eq!(
            mx("example.org", "mx.example.org").to_string(),
            "example.org. IN MX 10 mx.example.org."
        );
        assert_eq!(
            address("mx.example.org", v6).to_string(),
            "mx.example.org. IN AAAA 2001:db8::25"
        );
        assert_eq!(
            ptr(v4, "mx.example.org").to_string(),
            "25.2.0.192.in-addr.arpa. IN PTR mx.example.org."
        );
        assert_eq!(
            reverse_name(v6),
            "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(
            blocklist_name(v4, "zen.spamhaus.org"),
            "25.2.0.192.zen.spamhaus.org."
        );
        assert_eq!(
            spf("example.org", &[v4, v6]).to_string(),
            "example.org. IN TXT \"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all\""
        );
        assert_eq!(spf("example.org", &[]).value, "v=spf1 mx -all");
        assert_eq!(
            spf_with("example.org", "v=spf1 include:_spf.example ~all", &[v4]).value,
            "v=spf1 ip4:192.0.2.25 include:_spf.example ~all"
        );
        assert_eq!(
            dmarc("example.org").to_string(),
            "_dmarc.example.org. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.org\""
        );
    }

    #[test]
    fn mta_sts_records_follow_the_policy() {
        let text = |mode: &str| {
            format!(
                "hostname = \"mx.example.org\"\ndata_dir = \"/tmp/x\"\ndomains = [\"example.org\"]\n\
                 [[listener]]\naddress = \"127.0.0.1:443\"\nrole = \"https\"\n\
                 [[user]]\nname = \"me\"\n[mta_sts]\nmode = \"{mode}\"\n[autoconfig]\n"
            )
        };
        let parse = |t: &str| Config::parse(t, std::path::Path::new("tern.toml")).unwrap();
        let (testing, enforce) = (parse(&text("testing")), parse(&text("enforce")));
        let a = mta_sts(&testing, "example.org").unwrap();
        let b = mta_sts(&enforce, "example.org").unwrap();
        assert_eq!(a.name, "_mta-sts.example.org.");
        assert!(
            a.value.starts_with("v=STSv1; id=") && a.value.len() == 32,
            "{a}"
        );
        assert_ne!(a.value, b.value, "a new policy has a new id");
        assert_eq!(a, mta_sts(&testing, "example.org").unwrap());
        assert_eq!(
            tls_rpt("example.org").to_string(),
            "_smtp._tls.example.org. IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@example.org\""
        );
        let zone = zone_snippets(&testing, &[]);
        for want in [
            "mta-sts.example.org. IN CNAME mx.example.org.\n",
            "autoconfig.example.org. IN CNAME mx.example.org.\n",
            &format!("{a}\n"),
            "_smtp._tls.example.org. IN TXT",
        ] {
            assert!(zone.contains(want), "no {want:?} in:\n{zone}");
        }
    }

    #[test]
    fn long_txt_values_are_split_into_strings() {
        let record = Record {
            name: "x.example.".into(),
            kind: "TXT",
            value: "a".repeat(300),
        };
        let text = record.to_string();
        assert_eq!(
            text,
            format!(
                "x.example. IN TXT \"{}\" \"{}\"",
                "a".repeat(255),
                "a".repeat(45)
            )
        );
    }
}
