//! Does the sender exist? On the mx listeners, the domain of MAIL FROM must
//! be able to receive a reply (a bounce we may owe, or the recipient's
//! answer): it has an MX, or no MX but an A or AAAA record (RFC 5321 §5.1).
//! NXDOMAIN, a null MX (RFC 7505) or a name with neither is refused with a
//! 550 5.1.8; a DNS failure or a lookup slower than `[mx] dns_timeout` gets
//! 450 4.1.8 so the sender retries. Logged-in users, local sendmail, the
//! null sender, our own domains and the configured exemptions are not looked
//! up. The lookup is async: a slow nameserver delays only its own session.

use std::time::Duration;

use crate::config::Config;
use crate::outbound::resolver::{DnsError, Resolver};
use crate::smtp::{Address, Domain, Reply};

/// What DNS says about a sender's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It can receive mail.
    Exists,
    /// NXDOMAIN, or neither MX nor address records.
    NotFound,
    /// RFC 7505: the domain says it accepts no mail.
    NullMx,
    /// The question could not be answered now (SERVFAIL, timeout).
    Unknown(String),
}

impl Verdict {
    /// The reply that refuses the sender, or `None` when it may send.
    pub fn refusal(&self) -> Option<Reply> {
        match self {
            Verdict::Exists => None,
            Verdict::NotFound => Some(Reply::SENDER_DOMAIN_NOT_FOUND),
            Verdict::NullMx => Some(Reply::SENDER_DOMAIN_NULL_MX),
            Verdict::Unknown(_) => Some(Reply::SENDER_DOMAIN_UNVERIFIED),
        }
    }

    /// For the log line.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Exists => "exists".into(),
            Verdict::NotFound => "not found (NXDOMAIN, or no MX, A or AAAA)".into(),
            Verdict::NullMx => "null MX: accepts no mail".into(),
            Verdict::Unknown(why) => format!("unknown: {why}"),
        }
    }
}

/// The domain to look up for `from` on an mx listener, or `None` when the
/// sender is not checked: the null sender, an address literal, one of our
/// domains, an exempt domain, or the check turned off.
pub fn domain_to_verify<'a>(config: &Config, from: Option<&'a Address>) -> Option<&'a str> {
    if !config.mx.verify_sender_domain {
        return None;
    }
    let Domain::Name(name) = &from?.domain else {
        return None;
    };
    let exempt = config.is_local_domain(name)
        || config
            .mx
            .sender_domain_exempt
            .iter()
            .any(|d| d == name || name.ends_with(&format!(".{d}")));
    (!exempt).then_some(name.as_str())
}

/// Looks `domain` up, giving up after `limit`.
pub async fn verify(resolver: &dyn Resolver, domain: &str, limit: Duration) -> Verdict {
    match tokio::time::timeout(limit, lookup(resolver, domain)).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::Unknown(format!("no DNS answer within {}s", limit.as_secs_f32())),
    }
}

async fn lookup(resolver: &dyn Resolver, domain: &str) -> Verdict {
    match resolver.mx(domain).await {
        // RFC 7505 §3: a single MX of "." says the domain accepts no mail.
        Ok(records) if records.len() == 1 && records[0].exchange.is_empty() => Verdict::NullMx,
        Ok(records) if !records.is_empty() => Verdict::Exists,
        // No MX: the domain itself is its mail host if it has an address.
        Ok(_) | Err(DnsError::NoRecords) => match resolver.addresses(domain).await {
            Ok(addresses) if !addresses.is_empty() => Verdict::Exists,
            Ok(_) | Err(DnsError::NoRecords | DnsError::NoSuchDomain) => Verdict::NotFound,
            Err(DnsError::Temporary(why)) => Verdict::Unknown(why),
        },
        Err(DnsError::NoSuchDomain) => Verdict::NotFound,
        Err(DnsError::Temporary(why)) => Verdict::Unknown(why),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;
    use crate::outbound::resolver::Mx;
    use crate::BoxFuture;

    /// Answers from tables; `slow.example` never answers.
    struct Table {
        mx: HashMap<&'static str, Result<Vec<Mx>, DnsError>>,
        a: HashMap<&'static str, Result<Vec<IpAddr>, DnsError>>,
    }

    impl Resolver for Table {
        fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, DnsError>> {
            Box::pin(async move {
                if domain == "slow.example" {
                    std::future::pending::<()>().await;
                }
                self.mx
                    .get(domain)
                    .cloned()
                    .unwrap_or(Err(DnsError::NoSuchDomain))
            })
        }
        fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
            Box::pin(async move {
                self.a
                    .get(host)
                    .cloned()
                    .unwrap_or(Err(DnsError::NoSuchDomain))
            })
        }
    }

    fn mx(exchange: &str) -> Vec<Mx> {
        vec![Mx {
            preference: 10,
            exchange: exchange.into(),
        }]
    }

    #[tokio::test]
    async fn verdicts() {
        let table = Table {
            mx: HashMap::from([
                ("mx.example", Ok(mx("mail.mx.example"))),
                ("a-only.example", Err(DnsError::NoRecords)),
                ("bare.example", Err(DnsError::NoRecords)),
                ("null.example", Ok(mx(""))),
                ("down.example", Err(DnsError::Temporary("SERVFAIL".into()))),
            ]),
            a: HashMap::from([
                ("a-only.example", Ok(vec!["192.0.2.1".parse().unwrap()])),
                ("bare.example", Err(DnsError::NoRecords)),
            ]),
        };
        let limit = Duration::from_millis(200);
        let v = |d: &'static str| verify(&table, d, limit);
        assert_eq!(v("mx.example").await, Verdict::Exists);
        assert_eq!(v("a-only.example").await, Verdict::Exists);
        assert_eq!(v("bare.example").await, Verdict::NotFound);
        assert_eq!(v("nx.example").await, Verdict::NotFound);
        assert_eq!(v("null.example").await, Verdict::NullMx);
        assert!(matches!(v("down.example").await, Verdict::Unknown(_)));
        assert!(matches!(v("slow.example").await, Verdict::Unknown(w) if w.contains("0.2s")));
        assert_eq!(Verdict::NotFound.refusal().unwrap().code, 550);
        assert_eq!(Verdict::NullMx.refusal().unwrap().code, 550);
        assert_eq!(Verdict::Unknown(String::new()).refusal().unwrap().code, 450);
    }

    #[test]
    fn who_is_not_looked_up() {
        let config = Config::parse(
            "hostname = \"mx.example.org\"\ndata_dir = \"/tmp/x\"\ndomains = [\"example.org\"]\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n[[user]]\nname = \"me\"\n\
             [mx]\nsender_domain_exempt = [\"partner.example\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let addr = |s: &str| Address::parse(s).unwrap();
        let d = |a: &Address| domain_to_verify(&config, Some(a)).map(str::to_string);
        assert_eq!(d(&addr("a@b.example")), Some("b.example".into()));
        assert_eq!(d(&addr("a@example.org")), None, "our own domain");
        assert_eq!(d(&addr("a@partner.example")), None, "exempt");
        assert_eq!(
            d(&addr("a@sub.partner.example")),
            None,
            "below an exempt domain"
        );
        assert_eq!(d(&addr("a@[192.0.2.1]")), None, "address literal");
        assert_eq!(domain_to_verify(&config, None), None, "the null sender");
    }
}
