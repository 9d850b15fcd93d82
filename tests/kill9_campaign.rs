//! The kill -9 campaign (issue 14; DESIGN invariants 1 and 2): concurrent
//! load on the real server — MX sessions with DATA and BDAT to local users,
//! submissions on 587 (STARTTLS, AUTH PLAIN, DKIM-signed at acceptance) to
//! local users and to a remote domain whose MX (a loopback DNS server,
//! tests/support/dns.rs) is a sink on loopback (tests/support/sink.rs) —
//! while the daemon is killed with SIGKILL at random moments, at least 50
//! times, and restarted each time.
//!
//! At the end:
//! - every message that got its 250 is delivered to every recipient
//!   (Maildir or sink), byte for byte what was sent after our trace and
//!   DKIM-Signature header fields, and each submitted copy carries a
//!   DKIM-Signature;
//! - no message is delivered that did not get its 250, unless the client
//!   saw the connection die after its final dot (or BDAT LAST chunk);
//! - duplicates (a copy delivered twice: a kill between a delivery and its
//!   record in the spool) are counted and reported, not failed.
//!
//! Kill points and message mix come from a seeded PRNG: the seed is printed
//! and `TERN_CRASH_SEED=<seed>` replays the same kill delays. Bounded: the
//! kills take about a minute, the settling at most 120 s more.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::burst::Target;
use support::dns::DnsServer;
use support::rng::Rng;
use support::sink::{Sink, SinkOptions};
use support::submitter::{Login, Outcome, Submitter, Transfer};
use support::TestServer;

/// Concurrent client sessions: MX ones and submission ones.
const MX_SESSIONS: usize = 16;
const SUBMISSION_SESSIONS: usize = 8;
/// SIGKILLs, each followed by a restart.
const KILLS: usize = 55;
/// No client sends more than this many messages.
const MAX_PER_SESSION: usize = 2_000;
/// How long the last deliveries may take after the last restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// `tern user passwd` output for the password "secret" (as in the
/// transcripts): argon2 is slow by design, so it is not made here.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$wokOib1BF390itcBH23CEw$O2MbFR5QH5YegzHF2596K8stSDo7ouw4Xtttt07jhnk";
const REMOTE_DOMAIN: &str = "remote.test";
const SINK_IP: &str = "127.0.0.23";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Mx,
    Submission,
}

/// One message: who sends it how, to whom, and its bytes (all derived from
/// its token, so the audit can rebuild them).
#[derive(Debug, Clone)]
struct Plan {
    via: Via,
    transfer: Transfer,
    from: String,
    /// RCPT TO addresses.
    to: Vec<String>,
    /// Where the copies land: a local user's name or a remote address.
    copies: Vec<String>,
}

fn hash(s: &str) -> u64 {
    // FNV-1a
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn plan(token: &str) -> Plan {
    let h = hash(token);
    let via = if token.starts_with('s') {
        Via::Submission
    } else {
        Via::Mx
    };
    let transfer = if h % 3 == 0 {
        Transfer::Bdat(4096 + (h % 60_000) as usize)
    } else {
        Transfer::Data
    };
    let (from, mut to, mut copies) = match via {
        Via::Mx => (
            "campaign@client.example".to_string(),
            vec!["me@example.org".to_string()],
            vec!["me".to_string()],
        ),
        Via::Submission => (
            "sub@example.org".to_string(),
            vec![format!("r{}@{REMOTE_DOMAIN}", h % 3)],
            vec![format!("r{}@{REMOTE_DOMAIN}", h % 3)],
        ),
    };
    if h % 4 == 1 {
        to.push("bob@example.net".into());
        copies.push("bob".into());
    }
    if via == Via::Submission && h % 2 == 0 {
        to.push("me@example.org".into());
        copies.push("me".into());
    }
    Plan {
        via,
        transfer,
        from,
        to,
        copies,
    }
}

/// The message of `token`: 1 KiB to 1 MiB (mostly small: 70% up to 8 KiB,
/// 25% up to 128 KiB, 5% up to 1 MiB), lines starting with dots included.
fn message(token: &str) -> Vec<u8> {
    let h = hash(token);
    let p = plan(token);
    let size = match h % 20 {
        0 => (128 << 10) + (h >> 8) % (896 << 10),
        1..=5 => (8 << 10) + (h >> 8) % (120 << 10),
        _ => 1024 + (h >> 8) % (7 << 10),
    } as usize;
    let mut m = format!(
        "From: {}\r\nTo: {}\r\nSubject: campaign {token}\r\n\
         Message-ID: <{token}.{h:016x}@client.example>\r\nX-Token: {token}\r\n\r\n",
        p.from,
        p.to.join(", ")
    )
    .into_bytes();
    let mut n = 0u64;
    while m.len() < size {
        n += 1;
        let line = match n % 17 {
            0 => ".".to_string(),
            7 => format!(".{token} line {n} starts with a dot"),
            _ => format!("{token} line {n} {:016x} and some text to fill it", h ^ n),
        };
        m.extend_from_slice(line.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// One message a client tried to send, and what it heard.
#[derive(Debug, Clone)]
struct Attempt {
    token: String,
    generation: u64,
    outcome: Outcome,
}

/// Where a client connects: one target per listener role.
struct Targets {
    mx: Arc<Target>,
    submission: Arc<Target>,
}

fn connect(target: &Target, login: Option<&Login>) -> (u64, Submitter) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (generation, addr) = target.current();
        match Submitter::connect(addr, login) {
            // Only if that server is still the current one.
            Ok(s) if target.current().0 == generation => return (generation, s),
            Ok(_) => {}
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn client(
    name: String,
    target: Arc<Target>,
    login: Option<Login>,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut conn: Option<(u64, Submitter, usize)> = None;
    for seq in 0..MAX_PER_SESSION {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let token = format!("{name}-m{seq:04}");
        let p = plan(&token);
        let data = message(&token);
        let (generation, mut s, used) = match conn.take() {
            Some((g, s, used)) if g == target.current().0 => (g, s, used),
            _ => {
                let (g, s) = connect(&target, login.as_ref());
                (g, s, 0)
            }
        };
        let outcome = s.send(&p.from, &p.to, &data, p.transfer);
        let ok = matches!(outcome, Outcome::Acked(_));
        attempts.push(Attempt {
            token,
            generation,
            outcome,
        });
        if ok && used < 5 {
            conn = Some((generation, s, used + 1));
        } else if ok {
            s.quit();
        }
    }
    if let Some((_, s, _)) = conn {
        s.quit();
    }
    attempts
}

/// The copies found, by (token, local user or remote address), and the
/// problems: foreign or damaged files, submitted copies without DKIM.
#[derive(Debug, Default)]
struct Found {
    copies: BTreeMap<(String, String), usize>,
    bad: Vec<String>,
}

impl Found {
    fn add(&mut self, token: &str, copy: &str, bytes: &[u8], what: &str) {
        let sent = message(token);
        let (trace, rest) = split_trace(bytes);
        if rest != sent.as_slice() {
            self.bad.push(format!(
                "{what}: {token} for {copy}: {} bytes after the trace, {} sent",
                rest.len(),
                sent.len()
            ));
            return;
        }
        if plan(token).via == Via::Submission
            && !String::from_utf8_lossy(trace).contains("DKIM-Signature:")
        {
            self.bad.push(format!(
                "{what}: {token} for {copy}: submitted but not signed"
            ));
        }
        *self
            .copies
            .entry((token.to_string(), copy.to_string()))
            .or_default() += 1;
    }
}

/// Splits a delivered message into the header fields we add in front of
/// what the client sent (Return-Path, Delivered-To, Received,
/// DKIM-Signature, with their folded lines) and the rest.
fn split_trace(message: &[u8]) -> (&[u8], &[u8]) {
    const OURS: [&[u8]; 4] = [
        b"Return-Path:",
        b"Delivered-To:",
        b"Received:",
        b"DKIM-Signature:",
    ];
    let mut pos = 0;
    while OURS.iter().any(|p| message[pos..].starts_with(p)) {
        // The field and its continuation lines.
        loop {
            let Some(nl) = message[pos..].iter().position(|&b| b == b'\n') else {
                return (&message[..pos], &message[pos..]);
            };
            pos += nl + 1;
            if !matches!(message.get(pos), Some(b' ' | b'\t')) {
                break;
            }
        }
    }
    (&message[..pos], &message[pos..])
}

fn token_of(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(8192)];
    let at = head.windows(9).position(|w| w == b"X-Token: ")? + 9;
    let end = head[at..].iter().position(|&b| b == b'\r')? + at;
    Some(String::from_utf8_lossy(&head[at..end]).into_owned())
}

/// Every copy in the Maildirs of `users` and in the sink.
fn audit(mail: &Path, users: &[&str], sink: &Sink) -> Found {
    let mut found = Found::default();
    for user in users {
        let dir = mail.join(user).join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match std::fs::read(&path) {
                Ok(bytes) => match token_of(&bytes) {
                    Some(token) => found.add(&token, user, &bytes, &path.display().to_string()),
                    None => found.bad.push(format!("{}: no X-Token", path.display())),
                },
                Err(e) => found.bad.push(format!("{}: {e}", path.display())),
            }
        }
    }
    let accepted = sink.accepted.lock().unwrap();
    for (i, m) in accepted.iter().enumerate() {
        let Some(token) = token_of(&m.data) else {
            found.bad.push(format!("sink message {i}: no X-Token"));
            continue;
        };
        for rcpt in &m.rcpts {
            found.add(&token, &rcpt.to_ascii_lowercase(), &m.data, "sink");
        }
    }
    found
}

/// The verdict over all attempts.
#[derive(Debug, Default)]
struct Verdict {
    /// (token, copy, outcome) acknowledged and not delivered.
    lost: Vec<String>,
    /// Delivered without a 250 though the client never sent the end.
    phantom: Vec<String>,
    duplicated: Vec<String>,
    acked: usize,
    acked_copies: usize,
    delivered_copies: usize,
    /// Copies of messages whose final reply the kill cut off.
    delivered_unacked: usize,
    died_after_end: usize,
    died_before_end: usize,
    refused: usize,
}

fn verdict(attempts: &[Attempt], found: &Found) -> Verdict {
    let mut v = Verdict::default();
    for a in attempts {
        match a.outcome {
            Outcome::Acked(_) => v.acked += 1,
            Outcome::DiedAfter(_) => v.died_after_end += 1,
            Outcome::DiedBefore(_) => v.died_before_end += 1,
            Outcome::Refused(_) => v.refused += 1,
        }
        for copy in plan(&a.token).copies {
            let n = found
                .copies
                .get(&(a.token.clone(), copy.clone()))
                .copied()
                .unwrap_or(0);
            v.delivered_copies += n;
            let what = format!(
                "{} for {copy} (server #{}): {:?}",
                a.token, a.generation, a.outcome
            );
            match (&a.outcome, n) {
                (Outcome::Acked(_), 0) => v.lost.push(what.clone()),
                (Outcome::Acked(_), _) => v.acked_copies += 1,
                (Outcome::DiedAfter(_), n) if n > 0 => v.delivered_unacked += 1,
                (Outcome::DiedBefore(_) | Outcome::Refused(_), n) if n > 0 => {
                    v.phantom.push(what.clone())
                }
                _ => {}
            }
            if n > 1 {
                v.duplicated.push(format!("{what}: {n} copies"));
            }
        }
    }
    v
}

fn config(data: &Path, dns: &DnsServer, sink: &Sink) -> String {
    format!(
        r#"hostname = "mx.example.org"
data_dir = "{data}"
domains = ["example.org", "example.net"]

[[listener]]
address = "127.0.0.1:0"
role = "mx"

[[listener]]
address = "127.0.0.1:0"
role = "submission"

[[user]]
name = "me"

[[user]]
name = "bob"

[[user]]
name = "sub"
password = "{PASSWORD_HASH}"

[limits]
connections = 200
connections_per_ip = 100

# The checks on incoming mail have their own tests (sender_domain.rs,
# authentication.rs); here they would only add DNS waits and a header.
[mx]
verify_sender_domain = false
authenticate = false

[relay]
{}
port = {}
connect_timeout = "2s"
command_timeout = "10s"

[queue]
retry_first = "1s"
retry_max = "2s"
"#,
        dns.nameservers_toml(),
        sink.addr.port(),
        data = data.display(),
    )
}

fn tls_config(data: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(data.join("tls/cert.pem")).expect("the server's certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM certificate")).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(tern::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn kill9_campaign_loses_no_acknowledged_message() {
    let (mut rng, seed) = Rng::from_env("TERN_CRASH_SEED");
    let started = Instant::now();
    let sink = Sink::start(&format!("{SINK_IP}:0"), SinkOptions::default());
    let dns = DnsServer::start();
    dns.mx(REMOTE_DOMAIN, 10, &format!("mx.{REMOTE_DOMAIN}"))
        .a(&format!("mx.{REMOTE_DOMAIN}"), SINK_IP);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // DKIM keys for example.org under the default selector: mail our users
    // submit is signed with them.
    tern::dkim::keys::keygen(
        &data.join("dkim"),
        "example.org",
        tern::config::DEFAULT_DKIM_SELECTOR,
        false,
    )
    .expect("DKIM keys");
    let config = config(&data, &dns, &sink);
    let mut server = TestServer::start_with_config(dir, &config);
    let login = Login {
        tls: tls_config(&server.data()),
        server_name: "mx.example.org".into(),
        user: "sub".into(),
        password: "secret".into(),
    };
    let targets = Targets {
        mx: Arc::new(Target::default()),
        submission: Arc::new(Target::default()),
    };
    let publish = |server: &TestServer, generation: u64| {
        targets.mx.publish(generation, server.mx());
        targets
            .submission
            .publish(generation, server.addr("submission"));
    };
    let mut generation = 0;
    publish(&server, generation);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<JoinHandle<Vec<Attempt>>> = Vec::new();
    for i in 0..MX_SESSIONS + SUBMISSION_SESSIONS {
        let (name, target, login) = if i < MX_SESSIONS {
            (format!("x{i:02}"), targets.mx.clone(), None)
        } else {
            (
                format!("s{i:02}"),
                targets.submission.clone(),
                Some(login.clone()),
            )
        };
        let stop = stop.clone();
        clients.push(std::thread::spawn(move || {
            client(name, target, login, stop)
        }));
    }
    let mut up_times = Vec::new();
    for round in 1..=KILLS {
        let delay = Duration::from_millis(rng.range(100, 1500));
        std::thread::sleep(delay);
        assert!(
            !clients.iter().any(|c| c.is_finished()),
            "a client stopped early (panicked, or sent {MAX_PER_SESSION} messages)"
        );
        targets.mx.withdraw();
        targets.submission.withdraw();
        server.kill9();
        let restart = Instant::now();
        server.spawn();
        up_times.push(restart.elapsed());
        generation += 1;
        publish(&server, generation);
        if round % 10 == 0 {
            eprintln!(
                "round {round}: SIGKILL {delay:?} after server #{}'s start",
                generation - 1
            );
        }
    }
    let kills_done = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let attempts: Vec<Attempt> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread panicked"))
        .collect();
    // One more kill with the last messages in the queue.
    server.kill9();
    server.spawn();
    let wanted: usize = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .map(|a| plan(&a.token).copies.len())
        .sum();
    let users = ["me", "bob", "sub"];
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut found = audit(&server.data().join("mail"), &users, &sink);
    loop {
        let v = verdict(&attempts, &found);
        if v.lost.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        found = audit(&server.data().join("mail"), &users, &sink);
    }
    // Let stragglers (messages whose 250 the kill cut off) arrive too.
    std::thread::sleep(Duration::from_secs(2));
    let status = server.stop().expect("running");
    assert!(status.success(), "SIGTERM exit status {status}");
    let found = audit(&server.data().join("mail"), &users, &sink);
    let v = verdict(&attempts, &found);
    let log = server.log();
    let max_up = up_times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "kill -9 campaign (seed {seed}): {KILLS} SIGKILLs + 1 final in {kills_done:.1?} \
         (restart to listening: max {max_up:?}); {} sessions ({MX_SESSIONS} MX, \
         {SUBMISSION_SESSIONS} submission); messages sent {}, acknowledged {}, \
         refused {}, connection died before the end {}, after the end {}; copies: \
         acknowledged {wanted}, delivered {} of them, {} for messages whose 250 \
         was cut off, duplicates {}, lost {}, phantom {}, damaged {}; sink got {} \
         message(s); total {:.1?}",
        MX_SESSIONS + SUBMISSION_SESSIONS,
        attempts.len(),
        v.acked,
        v.refused,
        v.died_before_end,
        v.died_after_end,
        v.acked_copies,
        v.delivered_unacked,
        v.duplicated.len(),
        v.lost.len(),
        v.phantom.len(),
        found.bad.len(),
        sink.accepted.lock().unwrap().len(),
        started.elapsed(),
    );
    for d in &v.duplicated {
        eprintln!("duplicate: {d}");
    }
    assert!(
        !log.contains("panicked"),
        "the server panicked; log:\n{log}"
    );
    assert!(found.bad.is_empty(), "damaged copies: {:#?}", found.bad);
    assert!(v.lost.is_empty(), "LOST acknowledged copies: {:#?}", v.lost);
    assert!(
        v.phantom.is_empty(),
        "delivered without a 250 though the end was never sent: {:#?}",
        v.phantom
    );
    assert!(
        v.acked > 200,
        "too few messages acknowledged ({}) to prove anything",
        v.acked
    );
    assert!(
        attempts.iter().any(
            |a| plan(&a.token).via == Via::Submission && matches!(a.outcome, Outcome::Acked(_))
        ),
        "no submission was acknowledged"
    );
}
