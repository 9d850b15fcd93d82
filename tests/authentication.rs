//! Issue 13: mail arriving on the mx listener is checked (SPF of HELO and
//! MAIL FROM, DKIM, DMARC, iprev) against records published on a real DNS
//! server on loopback, and tern says what it found in an
//! Authentication-Results field: messages signed by dkimpy pass; a tampered
//! body fails DKIM; p=reject with an SPF fail and no aligned signature is
//! refused with 550; p=quarantine lands in .Junk/new; a forged
//! Authentication-Results claiming our name is removed; a DNS server that
//! never answers costs at most `[mx] dns_timeout` and the message is still
//! accepted.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::dkimpy::{dkimpy_sign, rsa_test_key};
use support::dns::DnsServer;
use support::*;

/// Our authserv-id: the test config's hostname.
const US: &str = "mx.example.org";

/// bank.example: SPF allows loopback, DKIM key `sel`, DMARC p=reject.
/// forged.example: SPF -all, p=reject. spam.example: SPF -all,
/// p=quarantine. Loopback's PTR is client.example, which points back.
fn zone(dkim_txt: &str) -> DnsServer {
    let dns = DnsServer::start();
    for domain in ["bank.example", "forged.example", "spam.example"] {
        dns.mx(domain, 10, &format!("mail.{domain}"));
        dns.a(&format!("mail.{domain}"), "192.0.2.10");
    }
    dns.txt("bank.example", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("sel._domainkey.bank.example", dkim_txt);
    dns.txt("_dmarc.bank.example", "v=DMARC1; p=reject");
    dns.txt("forged.example", "v=spf1 -all");
    dns.txt("_dmarc.forged.example", "v=DMARC1; p=reject");
    dns.txt("spam.example", "v=spf1 -all");
    dns.txt("_dmarc.spam.example", "v=DMARC1; p=quarantine");
    dns.ptr("127.0.0.1", "client.example");
    dns.a("client.example", "127.0.0.1");
    dns.a("helo.bank.example", "127.0.0.1");
    dns.txt("helo.bank.example", "v=spf1 a -all");
    dns
}

fn server(nameserver: &str, mx: &str) -> TestServer {
    TestServer::start(&format!(
        "[relay]\nnameservers = [\"{nameserver}\"]\n[mx]\ndns_timeout = \"2s\"\n{mx}"
    ))
}

fn message(from: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: <{from}>\r\nTo: <me@example.org>\r\nSubject: quarterly\r\n\
         Date: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <q1@bank.example>\r\n\r\n\
         The figures are attached.\r\n"
    )
    .into_bytes()
}

fn send(server: &TestServer, helo: &str, from: &str, data: &[u8]) -> String {
    let mut c = Client::connect(server.mx());
    c.command(&format!("EHLO {helo}"));
    c.send_mail(from, &["me@example.org"], data)
}

/// The Authentication-Results fields of a delivered message, unfolded.
fn auth_results(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = header.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .filter_map(|l| l.strip_prefix("Authentication-Results:"))
        .map(|v| v.trim().to_string())
        .collect()
}

/// One `method=result props...` of our field, by method (and a property
/// that must be in it, to pick one of the two `spf=`).
fn result<'a>(field: &'a str, method: &str, with: &str) -> &'a str {
    field
        .split(';')
        .map(str::trim)
        .find(|part| part.starts_with(&format!("{method}=")) && part.contains(with))
        .unwrap_or_else(|| panic!("no {method}= with {with:?} in {field}"))
}

fn ours(message: &[u8]) -> String {
    let fields: Vec<String> = auth_results(message)
        .into_iter()
        .filter(|f| f.starts_with(&format!("{US};")))
        .collect();
    assert_eq!(fields.len(), 1, "exactly one field of ours: {fields:?}");
    fields[0].clone()
}

#[test]
fn signed_mail_passes_dkim_and_dmarc_and_forged_verdicts_are_removed() {
    let keys = tempfile::tempdir().unwrap();
    let (key, txt) = rsa_test_key(keys.path());
    let dns = zone(&txt);
    let server = server(&dns.addr.to_string(), "");
    // Two fields claiming to be ours (one before signing, one added after),
    // and one of another server, which stays.
    let unsigned = message(
        "ceo@bank.example",
        "Authentication-Results: mx.example.org; dkim=pass header.d=paypal.example\r\n\
         Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=x@y.example\r\n",
    );
    let mut signed = b"Authentication-Results: MX.EXAMPLE.ORG;\r\n\tdmarc=pass\r\n".to_vec();
    signed.extend(dkimpy_sign(&unsigned, &key, "bank.example", "sel"));
    let reply = send(&server, "helo.bank.example", "ceo@bank.example", &signed);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let delivered = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let got = &delivered[0];
    let text = String::from_utf8_lossy(got);

    // Ours is above our Received:, right after the delivery headers.
    let order: Vec<&str> = text
        .lines()
        .take(3)
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        ["Return-Path", "Delivered-To", "Authentication-Results"],
        "{text}"
    );
    let received = text.find("\r\nReceived:").expect("our Received:");
    assert!(text.find(&format!("Authentication-Results: {US}")).unwrap() < received);

    let field = ours(got);
    let iprev = result(&field, "iprev", "");
    assert!(iprev.starts_with("iprev=pass"), "{field}");
    assert!(iprev.contains("policy.iprev=127.0.0.1"), "{iprev}");
    let helo = result(&field, "spf", "smtp.helo=");
    assert!(helo.starts_with("spf=pass"), "{helo}");
    assert!(helo.ends_with("smtp.helo=helo.bank.example"), "{helo}");
    let spf = result(&field, "spf", "smtp.mailfrom=");
    assert!(spf.starts_with("spf=pass"), "{spf}");
    assert!(spf.ends_with("smtp.mailfrom=ceo@bank.example"), "{spf}");
    let dkim = result(&field, "dkim", "");
    assert!(dkim.starts_with("dkim=pass"), "{dkim}");
    assert!(dkim.contains("header.i=@bank.example"), "{dkim}");
    assert!(dkim.contains("header.s=sel"), "{dkim}");
    assert!(dkim.contains("header.b="), "{dkim}");
    let dmarc = result(&field, "dmarc", "");
    assert!(dmarc.starts_with("dmarc=pass"), "{dmarc}");
    assert!(dmarc.contains("header.from=bank.example"), "{dmarc}");
    assert!(dmarc.contains("policy.dmarc=reject"), "{dmarc}");

    // RFC 8601 §5: the forged ones are gone, the other server's stays.
    let all = auth_results(got);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().any(|f| f.starts_with("relay.other.example;")));
    assert!(!text.contains("paypal.example"), "{text}");
    // Logged with the queue id, one field per method.
    let log = server.log();
    assert!(
        log.contains("spf=pass dkim=pass dmarc=pass iprev=pass"),
        "{log}"
    );
    assert!(log.contains("removed 2 Authentication-Results"), "{log}");
}

#[test]
fn a_tampered_body_fails_dkim() {
    let keys = tempfile::tempdir().unwrap();
    let (key, txt) = rsa_test_key(keys.path());
    let dns = zone(&txt);
    let server = server(&dns.addr.to_string(), "");
    let signed = dkimpy_sign(
        &message("ceo@bank.example", ""),
        &key,
        "bank.example",
        "sel",
    );
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("The figures", "Wire 10,000 EUR, the figures")
        .into_bytes();
    let reply = send(&server, "client.example", "ceo@bank.example", &tampered);
    // SPF still passes, aligned: DMARC passes, the message is delivered.
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let delivered = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let field = ours(&delivered[0]);
    let dkim = result(&field, "dkim", "");
    assert!(dkim.starts_with("dkim=fail"), "{field}");
    assert!(dkim.contains("header.s=sel"), "{dkim}");
    assert!(
        result(&field, "dmarc", "").starts_with("dmarc=pass"),
        "{field}"
    );
}

#[test]
fn p_reject_with_an_spf_fail_and_no_aligned_signature_is_refused() {
    let dns = zone("v=DKIM1; k=rsa; p=");
    let server = server(&dns.addr.to_string(), "");
    let reply = send(
        &server,
        "client.example",
        "boss@forged.example",
        &message("boss@forged.example", ""),
    );
    assert!(reply.starts_with("550 5.7.1 "), "{reply}");
    assert!(
        reply.contains("policy of forged.example is reject"),
        "the reply names the domain's policy: {reply}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.messages("me").is_empty());
    let log = server.log();
    assert!(
        log.contains("message refused (550 5.7.1): spf=fail"),
        "{log}"
    );
    assert!(log.contains("dmarc=fail"), "{log}");
}

#[test]
fn p_reject_failures_go_to_junk_when_refusing_is_off_and_quarantine_always() {
    let dns = zone("v=DKIM1; k=rsa; p=");
    let server = server(&dns.addr.to_string(), "dmarc_reject = false\n");
    for from in ["boss@forged.example", "deals@spam.example"] {
        let reply = send(&server, "client.example", from, &message(from, ""));
        assert!(reply.starts_with("250 2.0.0"), "{from}: {reply}");
    }
    let junk = server.data().join("mail/me/.Junk");
    let got = read_maildir(&junk.join("new"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = got;
    while got.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        got = read_maildir(&junk.join("new"));
    }
    assert_eq!(got.len(), 2, "both in .Junk/new; log:\n{}", server.log());
    assert!(junk.join("maildirfolder").exists(), "a Maildir++ folder");
    assert!(server.messages("me").is_empty(), "nothing in INBOX");
    let policies: Vec<String> = got
        .iter()
        .map(|m| result(&ours(m), "dmarc", "").to_string())
        .collect();
    assert!(
        policies
            .iter()
            .any(|d| d.contains("policy.dmarc=quarantine")),
        "{policies:?}"
    );
    assert!(
        policies
            .iter()
            .all(|d| d.starts_with("dmarc=fail") && d.contains("header.from=")),
        "{policies:?}"
    );
}

#[test]
fn a_dns_server_that_never_answers_costs_the_bound_and_the_message_is_accepted() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The sender's domain is exempt from the existence check, so only SPF,
    // iprev, DKIM and DMARC wait for the silent server.
    let server = server(
        &silent.local_addr().unwrap().to_string(),
        "sender_domain_exempt = [\"bank.example\"]\n",
    );
    let slow = std::thread::spawn({
        let addr = server.mx();
        move || {
            let mut c = Client::connect(addr);
            c.command("EHLO client.example");
            let started = Instant::now();
            let reply = c.send_mail(
                "ceo@bank.example",
                &["me@example.org"],
                &message("ceo@bank.example", ""),
            );
            (reply, started.elapsed())
        }
    });
    // Meanwhile another session is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut other = Client::connect(server.mx());
    let ehlo = other.command("EHLO other.example");
    let other_took = started.elapsed();
    assert!(ehlo.starts_with("250"), "{ehlo}");
    assert!(
        other_took < Duration::from_secs(1),
        "another session waited {other_took:?}"
    );
    let (reply, took) = slow.join().unwrap();
    eprintln!("silent DNS: {reply:?} after {took:?}");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    // SPF runs out 2s after MAIL; DKIM and DMARC 2s after the data at most.
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    let delivered = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let field = ours(&delivered[0]);
    assert!(
        result(&field, "spf", "smtp.mailfrom=").starts_with("spf=temperror"),
        "{field}"
    );
    assert!(
        result(&field, "iprev", "").starts_with("iprev=temperror"),
        "{field}"
    );
    drop(silent);
}

#[test]
fn tern_queue_show_shows_the_verdict_of_queued_mail() {
    let keys = tempfile::tempdir().unwrap();
    let (key, txt) = rsa_test_key(keys.path());
    let dns = zone(&txt);
    // The forwarded copy's destination accepts no connection for now.
    dns.mx("elsewhere.example", 10, "mail.elsewhere.example");
    dns.a("mail.elsewhere.example", "127.0.0.1");
    let server = TestServer::start(&format!(
        "[relay]\nnameservers = [\"{}\"]\nport = 1\n[mx]\ndns_timeout = \"2s\"\n\
         [aliases]\n\"fwd@example.org\" = \"friend@elsewhere.example\"\n",
        dns.addr
    ));
    let signed = dkimpy_sign(
        &message("ceo@bank.example", ""),
        &key,
        "bank.example",
        "sel",
    );
    let mut c = Client::connect(server.mx());
    c.command("EHLO client.example");
    let reply = c.send_mail("ceo@bank.example", &["fwd@example.org"], &signed);
    let id = queued_id(&reply);
    let shown = server.tern_queue(&["show", &id]).ok().stdout;
    assert!(
        shown.contains(&format!("Authentication-Results: {US};")),
        "{shown}"
    );
    assert!(shown.contains("dkim=pass"), "{shown}");
    assert!(shown.contains("dmarc=pass"), "{shown}");
}

#[test]
fn a_message_over_dkim_max_size_is_not_verified_and_not_refused() {
    let dns = zone("v=DKIM1; k=rsa; p=");
    let server = server(&dns.addr.to_string(), "dkim_max_size = \"64K\"\n");
    let mut big = message("boss@forged.example", "");
    big.extend(
        b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(1500),
    );
    let reply = send(&server, "client.example", "boss@forged.example", &big);
    // It fails DMARC under p=reject, but its signatures were never checked:
    // Junk, not 550.
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let junk = server.data().join("mail/me/.Junk/new");
    wait_until(Duration::from_secs(10), "delivery to .Junk", || {
        read_maildir(&junk).len() == 1
    });
    let field = ours(&read_maildir(&junk)[0]);
    assert!(
        field.contains("dkim=none (not verified: message larger than dkim_max_size)"),
        "{field}"
    );
    assert!(
        result(&field, "dmarc", "").starts_with("dmarc=fail"),
        "{field}"
    );
}

#[test]
fn the_sender_domain_check_and_spf_share_answers() {
    // Issue 20 point 4: SPF's `mx` mechanism asks the MX the existence
    // check already asked; the shared resolver answers it from its cache.
    let dns = zone("v=DKIM1; k=rsa; p=");
    dns.mx("shared.example", 10, "mail.shared.example");
    dns.a("mail.shared.example", "127.0.0.1");
    dns.txt("shared.example", "v=spf1 mx -all");
    let server = server(&dns.addr.to_string(), "");
    let from = "news@shared.example";
    let reply = send(&server, "client.example", from, &message(from, ""));
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let delivered = server.wait_for_messages("me", 1, Duration::from_secs(10));
    let field = ours(&delivered[0]);
    assert!(
        result(&field, "spf", "smtp.mailfrom=").starts_with("spf=pass"),
        "{field}"
    );
    let mx_queries = dns
        .queries
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, kind)| name == "shared.example" && kind.to_string() == "MX")
        .count();
    assert_eq!(mx_queries, 1, "the MX was asked once");
}
