//! Issue 20: on the mx listener the sender's domain must exist, asked of a
//! real DNS server on loopback through tern's resolver: MX, or A/AAAA
//! without MX, is fine; NXDOMAIN and a null MX get 550 5.1.8; a server that
//! never answers costs at most `[mx] dns_timeout` and gets 450 4.1.8, without
//! holding up other sessions; exempt domains and `<>` are not looked up.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::dns::DnsServer;
use support::*;

fn dns() -> DnsServer {
    let dns = DnsServer::start();
    dns.mx("mx.example", 10, "mail.mx.example");
    dns.a("mail.mx.example", "192.0.2.25");
    dns.a("a-only.example", "192.0.2.26");
    dns.aaaa("aaaa-only.example", "2001:db8::26");
    dns.mx("null.example", 0, ".");
    dns.servfail("broken.example");
    dns
}

fn server(nameserver: &str, extra: &str) -> TestServer {
    TestServer::start(&format!(
        "[relay]\nnameservers = [\"{nameserver}\"]\n[mx]\ndns_timeout = \"2s\"\n\
         sender_domain_exempt = [\"partner.example\"]\n{extra}"
    ))
}

fn mail_from(server: &TestServer, sender: &str) -> String {
    let mut c = Client::connect(server.mx());
    c.command("EHLO client.example");
    c.command(&format!("MAIL FROM:<{sender}>"))
}

#[test]
fn sender_domains_are_looked_up() {
    let dns = dns();
    let server = server(&dns.addr.to_string(), "");
    for sender in [
        "a@mx.example",
        "a@a-only.example",
        "a@aaaa-only.example",
        "a@partner.example",
        "a@example.org",
        "",
    ] {
        let reply = mail_from(&server, sender);
        assert!(reply.starts_with("250 2.1.0"), "<{sender}>: {reply}");
    }
    assert_eq!(
        mail_from(&server, "a@nowhere.example"),
        "550 5.1.8 Sender address rejected: domain not found"
    );
    assert_eq!(
        mail_from(&server, "a@null.example"),
        "550 5.1.8 Sender address rejected: domain does not accept mail"
    );
    let reply = mail_from(&server, "a@broken.example");
    assert!(reply.starts_with("450 4.1.8"), "SERVFAIL: {reply}");

    // The existence check asks MX, A and AAAA; SPF (TXT) and iprev (PTR),
    // which start once a sender is accepted, check exempt senders too.
    let asked: Vec<String> = dns
        .queries
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, kind)| ["MX", "A", "AAAA"].contains(&kind.to_string().as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    let everything: Vec<String> = dns
        .queries
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        !asked
            .iter()
            .any(|n| n.contains("partner.example") || n.contains("example.org")),
        "exempt and local domains are not looked up: {asked:?}"
    );
    assert_eq!(
        everything
            .iter()
            .filter(|n| n.contains("nowhere.example"))
            .count(),
        1,
        "an invented domain costs one query, SPF included: {everything:?}"
    );
    let log = server.log();
    assert!(
        log.contains(
            "sender <a@nowhere.example> refused (550 5.1.8): domain nowhere.example not found"
        ),
        "the refusal is logged with its reason:\n{log}"
    );
    assert!(log.contains("peer=127.0.0.1"), "{log}");
}

#[test]
fn a_dns_server_that_never_answers_costs_the_bound_and_blocks_no_one() {
    // A nameserver that reads every question and answers none.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = server(&silent.local_addr().unwrap().to_string(), "");
    let waiting = std::thread::spawn({
        let addr = server.mx();
        move || {
            let mut c = Client::connect(addr);
            c.command("EHLO client.example");
            let started = Instant::now();
            let reply = c.command("MAIL FROM:<a@silent.example>");
            (reply, started.elapsed())
        }
    });
    // Meanwhile another session is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let reply = mail_from(&server, "");
    let other = started.elapsed();
    assert!(reply.starts_with("250"), "{reply}");
    let (reply, took) = waiting.join().unwrap();
    eprintln!("silent DNS: {reply:?} after {took:?}; the other session's MAIL took {other:?}");
    assert!(reply.starts_with("450 4.1.8"), "{reply}");
    assert!(
        took >= Duration::from_millis(1900),
        "answered before the bound: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "the bound is 2s, took {took:?}"
    );
    assert!(
        other < Duration::from_secs(1),
        "another session waited {other:?}"
    );
    drop(silent);
}

#[test]
fn verification_can_be_turned_off() {
    let dns = dns();
    let server = TestServer::start(&format!(
        "[relay]\nnameservers = [\"{}\"]\n[mx]\nverify_sender_domain = false\n",
        dns.addr
    ));
    let reply = mail_from(&server, "a@nowhere.example");
    assert!(reply.starts_with("250"), "{reply}");
    assert!(dns.queries.lock().unwrap().is_empty());
}
