//! The outbound relay in-process, with an injected clock so retry, delay
//! notices and expiry run in milliseconds: a real spool on disk, the real
//! scheduler and SMTP client, a real DNS server on loopback, and a
//! programmable remote server (tests/support/sink.rs) on loopback.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::dns::DnsServer;
use support::sink::{Sink, SinkOptions};
use tern::clock::{Clock, ManualClock};
use tern::config::Config;
use tern::queue::{Body, QueueId, RcptStatus, Spool};
use tern::smtp::{Address, EnhancedCode, Envelope, Recipient, Route};

const CONFIG: &str = r#"
hostname = "mx.example.org"
data_dir = "data"
domains = ["example.org"]
[[listener]]
address = "127.0.0.1:0"
role = "mx"
[[user]]
name = "bob"
"#;

/// One in-process tern ([`support::mta`]) on a clock the test moves.
struct Mta {
    _dir: tempfile::TempDir,
    queue: support::mta::Mta,
    spool: Spool,
    clock: Arc<ManualClock>,
    config: Arc<Config>,
}

impl Mta {
    fn start(dns: &DnsServer, port: u16) -> Mta {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(CONFIG, &dir.path().join("tern.toml")).unwrap();
        config.relay.nameservers = vec![dns.addr];
        config.relay.port = port;
        config.relay.connect_timeout = Duration::from_secs(2);
        config.relay.command_timeout = Duration::from_secs(10);
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let queue = support::mta::Mta::start(config, clock.clone(), 4);
        Mta {
            _dir: dir,
            spool: queue.spool.clone(),
            config: queue.config.clone(),
            queue,
            clock,
        }
    }

    async fn send(&self, from: &str, to: &[&str], content: &str) -> QueueId {
        let content = content.as_bytes().to_vec();
        self.queue
            .queue(Some(from), to, Vec::new(), content, false)
            .await
    }

    /// Moves the clock and lets the scheduler see it.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.spool.wake();
    }

    /// Waits until `check` holds for the queue entry of `id` (or its absence).
    async fn wait_until(&self, what: &str, check: impl Fn(&Spool) -> bool) {
        for _ in 0..500 {
            if check(&self.spool) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    fn bob_mail(&self) -> Vec<String> {
        let dir = self.config.data_dir.join("mail/bob/new");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    async fn wait_for_bob(&self, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let mail = self.bob_mail();
            if mail.len() >= n {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("bob has {} message(s), expected {n}", self.bob_mail().len());
    }
}

fn status(spool: &Spool, id: QueueId, i: usize) -> Option<RcptStatus> {
    spool.entry(id).map(|e| e.message.statuses[i].clone())
}

fn remote_dns(sink_ip: &str) -> DnsServer {
    let dns = DnsServer::start();
    dns.mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", sink_ip);
    dns
}

const MESSAGE: &str =
    "From: bob@example.org\r\nTo: x@remote.test\r\nSubject: out\r\n\r\n.leading dot\r\nbody\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_retry_delay_notice_and_expiry() {
    let sink = Sink::start("127.0.0.2:0", SinkOptions::default());
    let dns = remote_dns("127.0.0.2");
    let mta = Mta::start(&dns, sink.addr.port());
    let id = mta
        .send(
            "bob@example.org",
            &[
                "ok@remote.test",
                "tempfail@remote.test",
                "reject@remote.test",
            ],
            MESSAGE,
        )
        .await;

    // First attempt: one transaction for all three; one delivered, one bounced
    // at once, one deferred.
    let got = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpts, vec!["ok@remote.test"]);
    assert_eq!(got[0].mail_from, "bob@example.org");
    assert_eq!(
        got[0].data,
        MESSAGE.as_bytes(),
        "content must arrive byte for byte"
    );
    mta.wait_until("first attempt recorded", |s| {
        s.entry(id).is_some_and(|e| e.attempts == 1)
    })
    .await;
    assert!(
        matches!(status(&mta.spool, id, 0), Some(RcptStatus::Delivered(d))
            if d.code == Some(250) && d.enhanced == Some(EnhancedCode(2, 0, 0)))
    );
    assert!(
        matches!(status(&mta.spool, id, 2), Some(RcptStatus::Failed(r))
            if r.code == Some(550) && r.enhanced == Some(EnhancedCode(5, 1, 1))
                && r.remote.as_ref().is_some_and(|m| m.host == "mx.remote.test"))
    );
    assert_eq!(status(&mta.spool, id, 1), Some(RcptStatus::Pending));
    let bounce = &mta.wait_for_bob(1).await[0];
    assert!(
        bounce.contains("Undelivered Mail Returned to Sender"),
        "{bounce}"
    );
    assert!(bounce.contains("Final-Recipient: rfc822; reject@remote.test"));
    assert!(bounce.contains("Status: 5.1.1"));
    assert!(bounce.contains("Remote-MTA: dns; mx.remote.test\r\n"));
    assert!(bounce.contains("Diagnostic-Code: smtp; mx.remote.test[127.0.0.2] said: 550 5.1.1"));
    assert!(
        bounce.contains("Return-Path: <>"),
        "bounces come from the null sender"
    );
    assert!(
        !bounce.contains("tempfail@remote.test"),
        "deferred recipients are not bounced"
    );

    // Backoff: nothing happens before the next attempt is due...
    let attempts = sink.transactions.load(std::sync::atomic::Ordering::Relaxed);
    let next = mta.spool.entry(id).unwrap().next_attempt;
    let now_ms = tern::queue::spool::millis(mta.clock.now());
    let wait = Duration::from_millis(next - now_ms);
    assert!(
        wait >= Duration::from_secs(4 * 60) && wait <= Duration::from_secs(5 * 60),
        "first retry in {wait:?}"
    );
    mta.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.transactions.load(std::sync::atomic::Ordering::Relaxed),
        attempts
    );
    // ...and then it is retried.
    mta.advance(Duration::from_secs(5 * 60));
    mta.wait_until("second attempt", |s| {
        s.entry(id).is_some_and(|e| e.attempts == 2)
    })
    .await;
    assert!(sink.transactions.load(std::sync::atomic::Ordering::Relaxed) > attempts);

    // After 4 hours the sender is told, once.
    mta.advance(Duration::from_secs(4 * 3600));
    mta.wait_until("delay notice", |s| {
        s.entry(id).is_some_and(|e| e.delay_notified)
    })
    .await;
    let mail = mta.wait_for_bob(2).await;
    assert!(mail[1].contains("Delayed Mail"), "{}", mail[1]);
    assert!(mail[1].contains("Action: delayed"));
    assert!(mail[1].contains("Final-Recipient: rfc822; tempfail@remote.test"));

    // After the queue lifetime, it bounces and leaves the queue.
    mta.advance(Duration::from_secs(5 * 86_400));
    mta.wait_until("expiry", |s| s.entry(id).is_none()).await;
    let mail = mta.wait_for_bob(3).await;
    assert!(mail[2].contains("delivery time expired"), "{}", mail[2]);
    assert!(mail[2].contains("Final-Recipient: rfc822; tempfail@remote.test"));
    assert_eq!(
        mta.bob_mail().len(),
        3,
        "exactly one delay notice and two bounces"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_and_data_failures_defer_or_bounce() {
    let sink = Sink::start("127.0.0.3:0", SinkOptions::default());
    let dns = remote_dns("127.0.0.3");
    let mta = Mta::start(&dns, sink.addr.port());
    let dropped = mta
        .send("bob@example.org", &["drop@remote.test"], MESSAGE)
        .await;
    let tempfail = mta
        .send("bob@example.org", &["datafail@remote.test"], MESSAGE)
        .await;
    let rejected = mta
        .send("bob@example.org", &["datareject@remote.test"], MESSAGE)
        .await;
    let slow = mta
        .send("bob@example.org", &["slow@remote.test"], MESSAGE)
        .await;
    mta.wait_until("dropped deferred", |s| {
        s.entry(dropped).is_some_and(|e| e.attempts == 1)
    })
    .await;
    let e = mta.spool.entry(dropped).unwrap();
    assert!(
        e.last_error()
            .as_deref()
            .unwrap_or("")
            .contains("connection lost"),
        "{:?}",
        e.last_error()
    );
    mta.wait_until("datafail deferred", |s| {
        s.entry(tempfail).is_some_and(|e| e.attempts == 1)
    })
    .await;
    assert!(mta
        .spool
        .entry(tempfail)
        .unwrap()
        .last_error()
        .unwrap()
        .contains("451 4.3.0"));
    mta.wait_until("datareject bounced", |s| s.entry(rejected).is_none())
        .await;
    mta.wait_until("slow delivered", |s| s.entry(slow).is_none())
        .await;
    let mail = mta.wait_for_bob(1).await;
    assert!(mail[0].contains("554 5.6.0"), "{}", mail[0]);
    assert_eq!(sink.messages().len(), 1, "only the slow one is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_outcomes() {
    let sink = Sink::start("127.0.0.4:0", SinkOptions::default());
    let dns = DnsServer::start();
    dns.mx("null.test", 0, ".");
    dns.servfail("broken.test");
    // No MX: the domain's own address is the host (RFC 5321 §5.1).
    dns.a("nomx.test", "127.0.0.4");
    // Two MX: the preferred one refuses service (554 greeting), the next takes it.
    let refuser = Sink::start(
        &format!("127.0.0.5:{}", sink.addr.port()),
        SinkOptions {
            greeting: 554,
            ..SinkOptions::default()
        },
    );
    dns.mx("two.test", 10, "mx1.two.test")
        .mx("two.test", 20, "mx2.two.test");
    dns.a("mx1.two.test", "127.0.0.5")
        .a("mx2.two.test", "127.0.0.4");
    let mta = Mta::start(&dns, sink.addr.port());
    let null = mta.send("bob@example.org", &["x@null.test"], MESSAGE).await;
    let missing = mta
        .send("bob@example.org", &["x@missing.test"], MESSAGE)
        .await;
    let broken = mta
        .send("bob@example.org", &["x@broken.test"], MESSAGE)
        .await;
    let nomx = mta.send("bob@example.org", &["x@nomx.test"], MESSAGE).await;
    let two = mta.send("bob@example.org", &["x@two.test"], MESSAGE).await;
    mta.wait_until("null MX bounced", |s| s.entry(null).is_none())
        .await;
    mta.wait_until("NXDOMAIN bounced", |s| s.entry(missing).is_none())
        .await;
    mta.wait_until("SERVFAIL deferred", |s| {
        s.entry(broken).is_some_and(|e| e.attempts == 1)
    })
    .await;
    mta.wait_until("implicit MX delivered", |s| s.entry(nomx).is_none())
        .await;
    mta.wait_until("second MX delivered", |s| s.entry(two).is_none())
        .await;
    assert_eq!(sink.messages().len(), 2);
    assert!(
        refuser
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    let bounces = mta.wait_for_bob(2).await;
    let all = bounces.join("\n");
    assert!(all.contains("556 5.1.10"), "null MX bounce: {all}");
    assert!(all.contains("550 5.1.2"), "NXDOMAIN bounce: {all}");
    assert!(mta
        .spool
        .entry(broken)
        .unwrap()
        .last_error()
        .unwrap()
        .contains("MX lookup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_and_size_are_permanent_failures_with_clear_reasons() {
    let sink = Sink::start(
        "127.0.0.6:0",
        SinkOptions {
            smtputf8: false,
            size: Some(200),
            ..SinkOptions::default()
        },
    );
    let dns = remote_dns("127.0.0.6");
    let mta = Mta::start(&dns, sink.addr.port());
    let utf8 = mta
        .send("bob@example.org", &["jürgen@remote.test"], MESSAGE)
        .await;
    let big = mta
        .send("bob@example.org", &["ok@remote.test"], &"x".repeat(300))
        .await;
    mta.wait_until("both bounced", |s| {
        s.entry(utf8).is_none() && s.entry(big).is_none()
    })
    .await;
    let all = mta.wait_for_bob(2).await.join("\n");
    assert!(
        all.contains("553 5.6.7") && all.contains("SMTPUTF8"),
        "{all}"
    );
    assert!(all.contains("552 5.3.4"), "{all}");
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_is_never_bounced() {
    let sink = Sink::start("127.0.0.7:0", SinkOptions::default());
    let dns = remote_dns("127.0.0.7");
    let mta = Mta::start(&dns, sink.addr.port());
    // A message from the null sender (itself a bounce) fails permanently.
    let envelope = Envelope {
        sender: None,
        recipients: vec![Recipient {
            original: "reject@remote.test".into(),
            route: Route::Remote(Address::parse("reject@remote.test").unwrap()),
        }],
        eight_bit: false,
        smtputf8: false,
    };
    let id = mta.spool.new_id();
    mta.spool
        .enqueue(
            id,
            envelope,
            Vec::new(),
            Body::from_bytes(MESSAGE.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    mta.wait_until("failed and removed", |s| s.entry(id).is_none())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mta.spool.is_empty(), "no bounce was queued");
    assert!(mta.bob_mail().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_one_server_share_a_kept_connection() {
    use std::sync::atomic::Ordering::Relaxed;
    let sink = Sink::start("127.0.0.11:0", SinkOptions::default());
    let dns = remote_dns("127.0.0.11");
    let mta = Mta::start(&dns, sink.addr.port());

    // One after another: the second and third go over the first connection.
    for (n, rcpt) in ["a@remote.test", "b@remote.test", "c@remote.test"]
        .iter()
        .enumerate()
    {
        let id = mta.send("bob@example.org", &[rcpt], MESSAGE).await;
        mta.wait_until("delivered", |s| s.entry(id).is_none()).await;
        assert_eq!(sink.messages().len(), n + 1);
    }
    assert_eq!(sink.transactions.load(Relaxed), 3);
    assert_eq!(
        sink.connections.load(Relaxed),
        1,
        "one connection for three messages"
    );

    // The server closes a kept connection: the next message notices (RSET
    // fails), connects again and is delivered, not deferred.
    let id = mta
        .send("bob@example.org", &["hangup@remote.test"], MESSAGE)
        .await;
    mta.wait_until("delivered", |s| s.entry(id).is_none()).await;
    let id = mta
        .send("bob@example.org", &["d@remote.test"], MESSAGE)
        .await;
    mta.wait_until("delivered", |s| s.entry(id).is_none()).await;
    let got = sink.messages();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].rcpts, vec!["d@remote.test"]);
    assert_eq!(got[4].data, MESSAGE.as_bytes());
    assert_eq!(sink.connections.load(Relaxed), 2);
    assert!(mta.bob_mail().is_empty(), "no bounce, no delay notice");
}
