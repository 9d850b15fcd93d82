//! `tern check` and `tern dns` as the owner runs them: the real binary,
//! looking up a zone served by the loopback DNS test server (never any
//! other: `[relay] nameservers` names it). A correct zone passes every
//! check; each broken zone (one mistake each) fails exactly the check that
//! finds that mistake, with the record that fixes it, and nothing else.
//!
//! The zone: example.org, mail to mx.example.org at 192.0.2.25 and
//! 2001:db8::25, PTRs back, SPF by address plus one include, both DKIM keys
//! (made by `tern dkim keygen` for the test), DMARC; the blocklist bl.test
//! does not list us. The certificate is signed by a test CA made here with
//! rcgen and trusted through `[relay] ca_file`. MTA-STS is not served by
//! tern yet: it and TLS-RPT are reported as skipped.

mod support;

use std::path::Path;

use serde_json::Value;
use support::dns::DnsServer;
use support::{run_program, tern_bin, Run};

const HOST: &str = "mx.example.org";
const V4: &str = "192.0.2.25";
const V6: &str = "2001:db8::25";

/// One record of the test zone.
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Mx(&'static str, &'static str),
    A(&'static str, &'static str),
    Aaaa(&'static str, &'static str),
    Txt(String, String),
    Ptr(&'static str, &'static str),
}

/// The files of one test installation: DKIM keys, certificate, CA.
struct Setup {
    dir: tempfile::TempDir,
    /// The DKIM records `tern dkim dns` prints: (name without dot, value).
    dkim: Vec<(String, String)>,
    /// Another RSA key's record value (for "the key differs").
    other_rsa: String,
}

/// The (name, value) of each TXT line `tern dkim dns` printed.
fn dkim_records(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(" IN TXT ")?;
            let value: String = rest.split('"').skip(1).step_by(2).collect();
            Some((name.trim_end_matches('.').to_string(), value))
        })
        .collect()
}

fn tern(args: &[&str]) -> Run {
    run_program(Path::new(tern_bin()), args)
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("dkim");
        let keys_s = keys.to_str().unwrap();
        tern(&["dkim", "keygen", "--domain", "example.org", "--dir", keys_s]).ok();
        let other = dir.path().join("other");
        let made = tern(&[
            "dkim",
            "keygen",
            "--domain",
            "example.org",
            "--dir",
            other.to_str().unwrap(),
        ])
        .ok();
        let other_rsa = dkim_records(&made.stdout)[0].1.clone();
        // A certificate authority and the server's certificate from it.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "tern test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![HOST.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let mut setup = Setup {
            dir,
            dkim: Vec::new(),
            other_rsa,
        };
        // What tern itself says to publish.
        let dns = DnsServer::start();
        setup.dkim = dkim_records(
            &tern(&["dkim", "dns", "--config", &setup.config(&dns)])
                .ok()
                .stdout,
        );
        assert_eq!(setup.dkim.len(), 2, "{:?}", setup.dkim);
        setup
    }

    /// Writes the config pointing at `dns`; returns its path.
    fn config(&self, dns: &DnsServer) -> String {
        let d = self.dir.path().display();
        let text = format!(
            r#"hostname = "{HOST}"
data_dir = "{d}/data"
domains = ["example.org"]
public_addresses = ["{V4}", "{V6}"]

[[listener]]
address = "127.0.0.1:0"
role = "mx"

[[user]]
name = "me"

[tls]
cert = "{d}/cert.pem"
key = "{d}/key.pem"

[relay]
{}
ca_file = "{d}/ca.pem"

[dkim]
keys = "{d}/dkim"

[check]
blocklists = ["bl.test"]
"#,
            dns.nameservers_toml()
        );
        let path = self.dir.path().join("tern.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The correct zone.
    fn zone(&self) -> Vec<Rec> {
        let mut zone = vec![
            Rec::Mx("example.org", HOST),
            Rec::A(HOST, V4),
            Rec::Aaaa(HOST, V6),
            Rec::Ptr(V4, HOST),
            Rec::Ptr(V6, HOST),
            Rec::Txt(
                "example.org".into(),
                format!("v=spf1 ip4:{V4} ip6:{V6} include:_spf.example.net -all"),
            ),
            Rec::Txt("example.org".into(), "google-site-verification=abc".into()),
            Rec::Txt(
                "_spf.example.net".into(),
                "v=spf1 ip4:198.51.100.0/24 -all".into(),
            ),
            Rec::Txt(
                "_dmarc.example.org".into(),
                "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org".into(),
            ),
        ];
        for (name, value) in &self.dkim {
            zone.push(Rec::Txt(name.clone(), value.clone()));
        }
        zone
    }

    /// Serves `zone` and runs `tern check --json` against it.
    fn check(&self, zone: &[Rec]) -> (Run, Value) {
        let (dns, config) = self.serve(zone);
        let run = tern(&["check", "--config", &config, "--json"]);
        drop(dns);
        let json: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"));
        (run, json)
    }

    /// Serves `zone` and runs `tern check` (the table) against it.
    fn table(&self, zone: &[Rec]) -> Run {
        let (_dns, config) = self.serve(zone);
        tern(&["check", "--config", &config])
    }

    /// A DNS server serving `zone`, and the config that asks it.
    fn serve(&self, zone: &[Rec]) -> (DnsServer, String) {
        let dns = DnsServer::start();
        for rec in zone {
            match rec {
                Rec::Mx(n, x) => dns.mx(n, 10, x),
                Rec::A(n, ip) => dns.a(n, ip),
                Rec::Aaaa(n, ip) => dns.aaaa(n, ip),
                Rec::Txt(n, t) => dns.txt(n, t),
                Rec::Ptr(ip, n) => dns.ptr(ip, n),
            };
        }
        let config = self.config(&dns);
        (dns, config)
    }
}

/// (check, subject, status) of every check not ok.
fn not_ok(json: &Value) -> Vec<(String, String, String)> {
    json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["subject"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The two checks MTA-STS and TLS-RPT, "not configured".
fn skipped() -> Vec<(String, String, String)> {
    ["mta-sts", "tls-rpt"]
        .iter()
        .map(|c| (c.to_string(), "example.org".into(), "skipped".into()))
        .collect()
}

/// The one failed check of kind `check`: its found and fix.
fn failure<'a>(json: &'a Value, check: &str) -> (&'a str, &'a str) {
    let c = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check && c["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed {check}: {json:#}"));
    (
        c["found"].as_str().unwrap(),
        c["fix"].as_str().unwrap_or(""),
    )
}

#[test]
fn a_correct_zone_passes_every_check_and_broken_ones_fail_exactly_their_check() {
    let setup = Setup::new();
    let (run, json) = setup.check(&setup.zone());
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(json["ok"], true);
    assert_eq!(not_ok(&json), skipped(), "{json:#}");
    let kinds: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for kind in [
        "mx",
        "address",
        "ptr",
        "spf",
        "spf-lookups",
        "dkim",
        "dmarc",
        "mta-sts",
        "tls-rpt",
        "blocklist",
        "tls-expiry",
        "tls-name",
        "tls-chain",
        "queue",
    ] {
        assert!(kinds.contains(&kind), "no {kind} check: {kinds:?}");
    }
    let table = setup.table(&setup.zone());
    assert_eq!(table.code, Some(0), "{table:#?}");
    println!("{}", table.stdout);
    let row = |status: &str, check: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([status, check]))
            .unwrap_or_else(|| panic!("no {status} {check} row in:\n{}", table.stdout))
            .to_string()
    };
    assert!(row("ok", "mx").ends_with(" 10 mx.example.org"));
    assert!(row("skipped", "mta-sts")
        .ends_with(" not configured: tern does not serve an MTA-STS policy ([mta_sts] is off)"));
    assert!(
        table
            .stdout
            .ends_with(" ok, 0 warning(s), 0 failed, 2 skipped\n"),
        "{}",
        table.stdout
    );

    // One mistake at a time: (what, the zone edit, the failed check, its
    // subject, text its found holds, text its fix holds).
    type Edit = Box<dyn Fn(&mut Vec<Rec>)>;
    let spf_at = |value: String| {
        move |z: &mut Vec<Rec>| {
            z.retain(
                |r| !matches!(r, Rec::Txt(n, t) if n == "example.org" && t.starts_with("v=spf1")),
            );
            z.push(Rec::Txt("example.org".into(), value.clone()));
        }
    };
    let rsa_name = setup.dkim[0].0.clone();
    let ed_name = setup.dkim[1].0.clone();
    let rsa_record = format!("{rsa_name}. IN TXT \"");
    let ed_record = format!("{ed_name}. IN TXT \"{}\"", setup.dkim[1].1);
    let other_rsa = setup.other_rsa.clone();
    let rsa_for_edit = rsa_name.clone();
    let ed_for_edit = ed_name.clone();
    let over_limit: String = (1..=11)
        .map(|i| format!(" include:s{i}.example.org"))
        .collect();
    let cases: Vec<(&str, Edit, &str, String, &str, String)> = vec![
        (
            "MX to another host",
            Box::new(|z| {
                z.retain(|r| !matches!(r, Rec::Mx(..)));
                z.push(Rec::Mx("example.org", "mx.elsewhere.example"));
            }),
            "mx",
            "example.org".into(),
            "MX points to 10 mx.elsewhere.example, not to mx.example.org",
            "example.org. IN MX 10 mx.example.org.".into(),
        ),
        (
            "missing PTR",
            Box::new(|z| z.retain(|r| *r != Rec::Ptr(V4, HOST))),
            "ptr",
            V4.into(),
            "no PTR record",
            "ask your hosting provider (who gave you 192.0.2.25) to set: \
             25.2.0.192.in-addr.arpa. IN PTR mx.example.org."
                .into(),
        ),
        (
            "PTR not confirming",
            Box::new(|z| {
                z.retain(|r| *r != Rec::Ptr(V6, HOST));
                z.push(Rec::Ptr(V6, "host-25.provider.example"));
            }),
            "ptr",
            V6.into(),
            "PTR names host-25.provider.example, which does not resolve back to 2001:db8::25",
            "IN PTR mx.example.org.".into(),
        ),
        (
            "SPF without our address",
            Box::new(spf_at("v=spf1 ip4:198.51.100.7 -all".into())),
            "spf",
            "example.org".into(),
            "does not pass for 192.0.2.25: fail, 2001:db8::25: fail",
            "example.org. IN TXT \"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 ip4:198.51.100.7 -all\""
                .into(),
        ),
        (
            "SPF over 10 lookups",
            Box::new(move |z: &mut Vec<Rec>| {
                spf_at(format!("v=spf1 ip4:{V4} ip6:{V6}{over_limit} -all"))(z);
                for i in 1..=11 {
                    z.push(Rec::Txt(format!("s{i}.example.org"), "v=spf1 -all".into()));
                }
            }),
            "spf-lookups",
            "example.org".into(),
            "11 DNS lookups, more than 10",
            "example.org. IN TXT \"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all\"".into(),
        ),
        (
            "DKIM key differs",
            Box::new(move |z: &mut Vec<Rec>| {
                z.retain(|r| !matches!(r, Rec::Txt(n, _) if *n == rsa_for_edit));
                z.push(Rec::Txt(rsa_for_edit.clone(), other_rsa.clone()));
            }),
            "dkim",
            rsa_name.clone(),
            "is not the local key",
            rsa_record.clone(),
        ),
        (
            "DKIM missing",
            Box::new(move |z: &mut Vec<Rec>| {
                z.retain(|r| !matches!(r, Rec::Txt(n, _) if *n == ed_for_edit))
            }),
            "dkim",
            ed_name.clone(),
            "no DKIM record",
            ed_record.clone(),
        ),
        (
            "no DMARC",
            Box::new(|z| z.retain(|r| !matches!(r, Rec::Txt(n, _) if n == "_dmarc.example.org"))),
            "dmarc",
            "example.org".into(),
            "no DMARC record at _dmarc.example.org",
            "_dmarc.example.org. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.org\""
                .into(),
        ),
        (
            "listed in a blocklist",
            Box::new(|z| {
                z.push(Rec::A("25.2.0.192.bl.test", "127.0.0.2"));
                z.push(Rec::Txt(
                    "25.2.0.192.bl.test".into(),
                    "listed: see https://bl.test/lookup".into(),
                ));
            }),
            "blocklist",
            "192.0.2.25 in bl.test".into(),
            "listed (127.0.0.2) listed: see https://bl.test/lookup",
            "follow bl.test's removal procedure".into(),
        ),
    ];
    for (what, edit, check, subject, found, fix) in cases {
        let mut zone = setup.zone();
        edit(&mut zone);
        let (run, json) = setup.check(&zone);
        assert_eq!(run.code, Some(1), "{what}: {run:#?}");
        assert_eq!(json["ok"], false, "{what}");
        let mut expected = vec![(check.to_string(), subject.clone(), "failed".to_string())];
        expected.extend(skipped());
        let mut got = not_ok(&json);
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{what}: {json:#}");
        let (f, x) = failure(&json, check);
        assert!(f.contains(found), "{what}: found {f:?}, expected {found:?}");
        assert!(x.contains(&fix), "{what}: fix {x:?}, expected {fix:?}");
        if what == "SPF without our address" {
            let table = setup.table(&zone);
            assert_eq!(table.code, Some(1));
            println!("{}", table.stdout);
        }
    }
}

#[test]
fn tern_dns_prints_every_record_the_checks_look_for() {
    let setup = Setup::new();
    let dns = DnsServer::start();
    let printed = tern(&["dns", "--config", &setup.config(&dns)]).ok().stdout;
    for line in [
        "example.org. IN MX 10 mx.example.org.".to_string(),
        "example.org. IN TXT \"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all\"".to_string(),
        "_dmarc.example.org. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.org\""
            .to_string(),
        "mx.example.org. IN A 192.0.2.25".to_string(),
        "mx.example.org. IN AAAA 2001:db8::25".to_string(),
        "25.2.0.192.in-addr.arpa. IN PTR mx.example.org.".to_string(),
        format!("{}. IN TXT \"{}\"", setup.dkim[1].0, setup.dkim[1].1),
        format!("{}. IN TXT \"", setup.dkim[0].0),
    ] {
        assert!(printed.contains(&line), "no {line:?} in:\n{printed}");
    }
    assert!(
        printed.contains("; MTA-STS and TLS-RPT: none yet"),
        "{printed}"
    );
    // The zone tern dns prints passes tern check (the RSA record's two
    // strings joined, as DNS joins them).
    let mut zone = vec![Rec::Ptr(V4, HOST), Rec::Ptr(V6, HOST)];
    for line in printed
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
    {
        let mut parts = line.splitn(4, ' ');
        let (name, _, kind, value) = (
            parts.next().unwrap().trim_end_matches('.').to_string(),
            parts.next(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        match kind {
            "MX" => zone.push(Rec::Mx(leak(name), HOST)),
            "A" => zone.push(Rec::A(leak(name), leak(value.into()))),
            "AAAA" => zone.push(Rec::Aaaa(leak(name), leak(value.into()))),
            "TXT" => zone.push(Rec::Txt(
                name,
                value.split('"').skip(1).step_by(2).collect(),
            )),
            "PTR" => {}
            other => panic!("unexpected record type {other}"),
        }
    }
    let (run, json) = setup.check(&zone);
    assert_eq!(run.code, Some(0), "{run:#?}");
    // p=none is shown as the policy, not a failure.
    assert_eq!(not_ok(&json), skipped(), "{json:#}");
}

/// With `[mta_sts]`, `tern dns` prints the `_mta-sts` record of the policy
/// tern serves (and TLS-RPT), and `tern check` wants exactly that id.
#[test]
fn mta_sts_wants_the_id_of_the_policy_tern_serves() {
    let setup = Setup::new();
    let with_sts = |dns: &DnsServer| {
        let path = setup.config(dns);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(
            "\n[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"https\"\n\
             [mta_sts]\nmode = \"enforce\"\n",
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let dns = DnsServer::start();
    let printed = tern(&["dns", "--config", &with_sts(&dns)]).ok().stdout;
    let record = |prefix: &str| {
        dkim_records(&printed)
            .into_iter()
            .find(|(name, _)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} record in:\n{printed}"))
    };
    let (sts_name, sts_value) = record("_mta-sts.example.org");
    assert!(sts_value.starts_with("v=STSv1; id="), "{sts_value}");
    let (_, rpt) = record("_smtp._tls.example.org");
    assert_eq!(rpt, "v=TLSRPTv1; rua=mailto:postmaster@example.org");
    assert!(printed.contains("mta-sts.example.org. IN CNAME mx.example.org."));

    let check = |sts: &str| {
        let mut zone = setup.zone();
        zone.push(Rec::Txt(sts_name.clone(), sts.to_string()));
        zone.push(Rec::Txt("_smtp._tls.example.org".into(), rpt.clone()));
        let (dns, _) = setup.serve(&zone);
        let config = with_sts(&dns);
        let run = tern(&["check", "--config", &config, "--json"]);
        let json: Value = serde_json::from_str(&run.stdout).unwrap();
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "mta-sts")
            .unwrap()
            .clone()
    };
    let good = check(&sts_value);
    assert_eq!(good["status"], "ok", "{good:#}");
    let stale = check("v=STSv1; id=20200101");
    assert_eq!(stale["status"], "failed", "{stale:#}");
    assert!(
        stale["fix"].as_str().unwrap().contains(&sts_value),
        "{stale:#}"
    );
}
