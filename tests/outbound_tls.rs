//! Outbound TLS policy and smarthosts against a real tern as the remote
//! server: opportunistic STARTTLS, `tls = "required"` with a verified
//! certificate (and refusal when it cannot be verified), and a smarthost on
//! port 465 with AUTH.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::dns::DnsServer;
use support::mta::Mta;
use support::TestServer;
use tern::clock::SystemClock;
use tern::config::{Config, Credentials, DomainRoute, Smarthost, SmarthostTls, TlsPolicy};
use tern::queue::{Body, QueueId, Spool};
use tern::smtp::{Address, Envelope, Recipient, Route};

/// The remote side: a real tern named mx.remote.test on 127.0.0.8, with an MX
/// listener and an implicit-TLS submission listener, user `me` (password
/// "s3cret") at remote.test.
fn remote_tern() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hash = tern::inbound::auth::hash_password("s3cret").unwrap();
    let config = format!(
        r#"
hostname = "mx.remote.test"
data_dir = "{}"
domains = ["remote.test"]
[[listener]]
address = "127.0.0.8:0"
role = "mx"
[[listener]]
address = "127.0.0.8:0"
role = "submissions"
[[user]]
name = "me"
password = "{hash}"
[relay]
nameservers = ["127.0.0.1:9"]
# No DNS here: the sender check has its own tests (tests/sender_domain.rs).
[mx]
verify_sender_domain = false
"#,
        data.display()
    );
    TestServer::start_with_config(dir, &config)
}

/// An in-process tern sending for source.test ([`support::mta`]),
/// configured by `tweak`.
fn source(dns: &DnsServer, tweak: impl FnOnce(&mut Config)) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let text = "hostname = \"out.source.test\"\ndata_dir = \"data\"\ndomains = [\"source.test\"]\n\
                [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n[[user]]\nname = \"bob\"\n";
    let mut config = Config::parse(text, &dir.path().join("tern.toml")).unwrap();
    config.relay.nameservers = vec![dns.addr];
    config.relay.connect_timeout = Duration::from_secs(2);
    config.relay.command_timeout = Duration::from_secs(10);
    tweak(&mut config);
    let mta = Mta::start(config, Arc::new(SystemClock), 2);
    Source { mta, _dir: dir }
}

/// The sending tern; it stops before its directory goes.
struct Source {
    mta: Mta,
    _dir: tempfile::TempDir,
}

async fn send(spool: &Spool, from: &str, to: &str) -> QueueId {
    let envelope = Envelope {
        sender: Some(Address::parse(from).unwrap()),
        recipients: vec![Recipient {
            original: to.into(),
            route: Route::Remote(Address::parse(to).unwrap()),
        }],
        eight_bit: false,
        smtputf8: false,
    };
    let id = spool.new_id();
    let body = format!(
        "From: {from}\r\nSubject: tls test {:?}\r\n\r\nhello\r\n",
        SystemTime::now()
    );
    spool
        .enqueue(
            id,
            envelope,
            Vec::new(),
            Body::from_bytes(body.into_bytes()),
        )
        .await
        .unwrap();
    id
}

async fn settled(spool: &Spool, id: QueueId) -> Option<tern::queue::Entry> {
    for _ in 0..1500 {
        match spool.entry(id) {
            None => return None,
            Some(e) if e.attempts > 0 => return Some(e),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("message {id} neither delivered nor deferred");
}

fn remote_dns() -> DnsServer {
    let dns = DnsServer::start();
    dns.mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", "127.0.0.8");
    dns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_and_verified_tls_to_a_real_tern() {
    let remote = remote_tern();
    let dns = remote_dns();
    let port = remote.addr("mx").port();
    let cert = remote.data().join("tls/cert.pem");

    // Opportunistic (the default): STARTTLS with any certificate.
    let src = source(&dns, |c| c.relay.port = port);
    let id = send(&src.mta.spool, "bob@source.test", "me@remote.test").await;
    assert!(settled(&src.mta.spool, id).await.is_none(), "delivered");
    let got = remote.wait_for_messages("me", 1, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("with ESMTPS (TLSv1.3"), "{text}");

    // Required, trusting the remote's certificate: verified TLS, delivered.
    let src = source(&dns, |c| {
        c.relay.port = port;
        c.relay.ca_file = cert.clone();
        c.relay.routes = vec![DomainRoute {
            domain: "remote.test".into(),
            host: None,
            tls: Some(TlsPolicy::Required),
        }];
    });
    let id = send(&src.mta.spool, "bob@source.test", "me@remote.test").await;
    assert!(
        settled(&src.mta.spool, id).await.is_none(),
        "delivered with verified TLS"
    );
    remote.wait_for_messages("me", 2, Duration::from_secs(10));

    // Required, but the certificate is not trusted: deferred, never plaintext.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = tern::tls::ensure_self_signed(other.path(), "mx.remote.test").unwrap();
    let src = source(&dns, |c| {
        c.relay.port = port;
        c.relay.tls = TlsPolicy::Required;
        c.relay.ca_file = other_cert;
    });
    let id = send(&src.mta.spool, "bob@source.test", "me@remote.test").await;
    let deferred = settled(&src.mta.spool, id).await.expect("stays queued");
    let error = deferred.last_error().unwrap_or_default();
    assert!(error.contains("TLS handshake failed"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        remote.messages("me").len(),
        2,
        "nothing sent without verified TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_on_465_with_auth() {
    let remote = remote_tern();
    // With a smarthost no MX lookup happens at all.
    let dns = DnsServer::start();
    let smarthost = remote.addr("submissions");
    let cert = remote.data().join("tls/cert.pem");
    let with_password = |password: &str| {
        let password = password.to_string();
        let cert = cert.clone();
        move |c: &mut Config| {
            c.relay.ca_file = cert.clone();
            c.relay.smarthost = Some(Smarthost {
                host: "mx.remote.test".into(),
                port: smarthost.port(),
                tls: SmarthostTls::Implicit,
                auth: Some(Credentials {
                    user: "me".into(),
                    password,
                }),
            });
        }
    };
    // The smarthost resolves by name, and its certificate carries that name.
    dns.a("mx.remote.test", "127.0.0.8");
    let src = source(&dns, with_password("s3cret"));
    // Through the smarthost to a local user of it; the sender must be an
    // address the smarthost login owns.
    let id = send(&src.mta.spool, "me@remote.test", "me@remote.test").await;
    let outcome = settled(&src.mta.spool, id).await;
    assert!(
        outcome.is_none(),
        "delivered via the smarthost: {outcome:?}\n{}",
        remote.log()
    );
    let got = remote.wait_for_messages("me", 1, Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: tls test"));

    let src = source(&dns, with_password("wrong"));
    let id = send(&src.mta.spool, "me@remote.test", "me@remote.test").await;
    let e = settled(&src.mta.spool, id).await.expect("deferred");
    let error = e.last_error().unwrap_or_default();
    assert!(
        error.contains("refused our login as me") && error.contains("535"),
        "{error}"
    );
}
