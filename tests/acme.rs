//! ACME against Debian's pebble on loopback (scripts/pebble-instance), its
//! DNS pointed at a loopback DNS server and its validation ports at tern's
//! https and http listeners: certificates issued by TLS-ALPN-01 and by
//! HTTP-01 are presented by every listener (SMTP STARTTLS, 587, 465,
//! HTTPS) and verify against pebble's root; a renewal (at a third of the
//! lifetime left) and a reload that adds names are picked up without a
//! restart; a refused validation leaves the old certificate serving with a
//! clear log line. And the HTTPS listener itself: the MTA-STS policy, the
//! autoconfig XML (read by Python's XML parser), 404s, requests that are
//! too big or too slow, and the per-client connection limit.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::dns::DnsServer;
use support::pebble::*;
use support::*;

/// The names the test configs want certificates for.
const NAMES: [&str; 5] = [
    "mx.example.org",
    "mta-sts.example.org",
    "mta-sts.example.net",
    "autoconfig.example.org",
    "autoconfig.example.net",
];

fn wait_for_log_count(server: &TestServer, needle: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {count}x {needle:?} in the log within {timeout:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Setup {
    server: TestServer,
    pebble: Pebble,
    _dns: DnsServer,
    _pebble_dir: tempfile::TempDir,
}

/// DNS, pebble and a tern with mx, submission, submissions, https and http
/// listeners and `[acme]` (`challenge`), `[mta_sts]` and `[autoconfig]`.
/// `extra_acme`: more `[acme]` keys.
fn setup(challenge: &str, validity: Option<u64>, extra_acme: &str) -> Setup {
    let dns = DnsServer::start();
    for name in NAMES {
        dns.a(name, "127.0.0.1");
    }
    let (https, http) = (free_port(), free_port());
    let pebble_dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(pebble_dir.path(), dns.addr, http, https, validity);
    let extra = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
         [[listener]]\naddress = \"127.0.0.1:{https}\"\nrole = \"https\"\n\
         [[listener]]\naddress = \"127.0.0.1:{http}\"\nrole = \"http\"\n\
         [acme]\ndirectory = \"{}\"\nca_file = \"{}\"\nchallenge = \"{challenge}\"\n\
         contact = \"postmaster@example.org\"\n{extra_acme}\
         [mta_sts]\nmode = \"enforce\"\nmax_age = \"1d\"\n\
         [autoconfig]\nimap_port = 993\n",
        pebble.directory,
        pebble.ca_file.display()
    );
    let server = TestServer::start(&extra);
    Setup {
        server,
        pebble,
        _dns: dns,
        _pebble_dir: pebble_dir,
    }
}

/// Every TLS listener presents the same leaf, verified against `root` for
/// `mx.example.org`; returns it.
fn every_listener_presents_a_verified_chain(
    server: &TestServer,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Vec<u8> {
    let roots = [root.clone()];
    let name = "mx.example.org";
    let (https, response) = https_get(server.addr("https"), name, name, "/", &roots)
        .unwrap_or_else(|e| panic!("https: {e}\n{}", server.log()));
    assert_eq!(status_of(&response), 404, "{response}");
    let mx = starttls_leaf(server.mx(), name, &roots).expect("mx STARTTLS verifies");
    let submission =
        starttls_leaf(server.addr("submission"), name, &roots).expect("587 STARTTLS verifies");
    let submissions =
        implicit_tls_leaf(server.addr("submissions"), name, &roots).expect("465 verifies");
    assert_eq!(mx, https);
    assert_eq!(submission, https);
    assert_eq!(submissions, https);
    https
}

#[test]
fn tls_alpn_01_issues_serves_everywhere_adds_names_and_survives_a_refusal() {
    let mut s = setup("tls-alpn-01", None, "");
    wait_for_log_count(
        &s.server,
        "acme: certificate for",
        1,
        Duration::from_secs(90),
    );
    assert!(
        s.server.log().contains("issued, valid until"),
        "{}\n--- pebble\n{}",
        s.server.log(),
        s.pebble.log()
    );
    assert!(s
        .server
        .log()
        .contains("answered a TLS-ALPN-01 validation for mx.example.org"));
    let root = s.pebble.issuing_root();
    let first = every_listener_presents_a_verified_chain(&s.server, &root);
    // The self-signed certificate is not pebble's: a client trusting only
    // pebble's root would have failed before.
    let acme_dir = s.server.data().join("acme");
    use std::os::unix::fs::PermissionsExt;
    for file in ["cert.pem", "key.pem", "account.json"] {
        let mode = std::fs::metadata(acme_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    // The other names verify too (SNI mta-sts.example.net).
    let (_, response) = https_get(
        s.server.addr("https"),
        "mta-sts.example.net",
        "mta-sts.example.net",
        "/.well-known/mta-sts.txt",
        std::slice::from_ref(&root),
    )
    .unwrap();
    assert_eq!(
        body_of(&response),
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 86400\r\n"
    );

    // A name the CA cannot validate (no address in DNS): refused, and the
    // certificate in force keeps serving, without a restart.
    let pid = s.server.pid();
    let config = std::fs::read_to_string(&s.server.config_path).unwrap();
    let more = config.replace(
        "domains = [\"example.org\", \"example.net\"]",
        "domains = [\"example.org\", \"example.net\", \"example.com\"]",
    );
    assert_ne!(config, more);
    std::fs::write(&s.server.config_path, &more).unwrap();
    unsafe_kill(pid, "HUP");
    wait_for_log_count(&s.server, "NOT issued", 1, Duration::from_secs(90));
    let log = s.server.log();
    let line = log.lines().find(|l| l.contains("NOT issued")).unwrap();
    assert!(line.contains("mta-sts.example.com"), "{line}");
    assert!(line.contains("keeps serving"), "{line}");
    assert!(line.contains("retrying in 60s"), "{line}");
    assert_eq!(
        every_listener_presents_a_verified_chain(&s.server, &root),
        first
    );
    let status = run_tern(&s.server, &["status"]);
    assert!(
        status.contains("acme:") && status.contains("FAILED"),
        "{status}"
    );

    // Once DNS knows the name, the next attempt (a reload wakes it) covers it,
    // and every listener switches to the new certificate without a restart.
    s._dns.a("mta-sts.example.com", "127.0.0.1");
    s._dns.a("autoconfig.example.com", "127.0.0.1");
    unsafe_kill(pid, "HUP");
    wait_for_log_count(&s.server, "issued, valid until", 2, Duration::from_secs(90));
    let second = every_listener_presents_a_verified_chain(&s.server, &root);
    assert_ne!(second, first);
    assert_eq!(s.server.pid(), pid);
    let (_, response) = https_get(
        s.server.addr("https"),
        "autoconfig.example.com",
        "autoconfig.example.com",
        "/mail/config-v1.1.xml",
        std::slice::from_ref(&root),
    )
    .unwrap();
    assert_eq!(status_of(&response), 200);

    // A restart puts the stored certificate in force without a new order.
    s.server.stop();
    let orders = s
        .server
        .log()
        .matches("acme: ordering a certificate")
        .count();
    s.server.spawn();
    wait_for_log_count(
        &s.server,
        "/acme/cert.pem in force",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(
        every_listener_presents_a_verified_chain(&s.server, &root),
        second
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.server
            .log()
            .matches("acme: ordering a certificate")
            .count(),
        orders,
        "{}",
        s.server.log()
    );
    s.server.stop();
}

#[test]
fn http_01_issues_and_renews_at_a_third_of_the_lifetime() {
    // 30-second certificates: due for renewal 20 s after issue.
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("reloaded");
    // After each new certificate tern runs reload_command (here: a program
    // that leaves a mark; on the appliance, systemctl reload dovecot).
    let s = setup(
        "http-01",
        Some(30),
        &format!(
            "reload_command = [\"/usr/bin/touch\", \"{}\"]\n",
            mark.display()
        ),
    );
    wait_for_log_count(&s.server, "issued, valid until", 1, Duration::from_secs(90));
    assert!(s.server.log().contains("answered an HTTP-01 validation"));
    let root = s.pebble.issuing_root();
    let first = every_listener_presents_a_verified_chain(&s.server, &root);
    let issued_at = Instant::now();
    wait_for_log_count(
        &s.server,
        "acme: ran `/usr/bin/touch",
        1,
        Duration::from_secs(10),
    );
    assert!(mark.exists());

    // The http listener redirects the rest to https, and knows no other token.
    let http = s.server.addr("http");
    let response = raw_request(
        http,
        b"GET /mail/config-v1.1.xml?x=1 HTTP/1.1\r\nHost: autoconfig.example.org\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 301 "), "{response}");
    assert!(
        response
            .contains("\r\nLocation: https://autoconfig.example.org/mail/config-v1.1.xml?x=1\r\n"),
        "{response}"
    );
    let response = raw_request(
        http,
        b"GET /.well-known/acme-challenge/nonsense HTTP/1.1\r\nHost: mx.example.org\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");

    wait_for_log_count(&s.server, "issued, valid until", 2, Duration::from_secs(60));
    let renewed_after = issued_at.elapsed();
    assert!(
        s.server
            .log()
            .contains("because a third of its lifetime is left"),
        "{}",
        s.server.log()
    );
    // Not before a third of 30 s was left (give or take the test's clock).
    assert!(
        renewed_after >= Duration::from_secs(12),
        "{renewed_after:?}"
    );
    let second = every_listener_presents_a_verified_chain(&s.server, &root);
    assert_ne!(first, second);
}

/// One request over plain TCP; the whole response.
fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// `tern <args> --config <the server's config>`, its stdout.
fn run_tern(server: &TestServer, args: &[&str]) -> String {
    let out = std::process::Command::new(tern_bin())
        .args(args)
        .arg("--config")
        .arg(&server.config_path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The HTTPS listener on its own (no ACME: the self-signed certificate,
/// trusted here as the root).
#[test]
fn the_https_listener_serves_mta_sts_and_autoconfig_and_nothing_else() {
    let mut server = TestServer::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submission\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"https\"\n\
         [mta_sts]\nmode = \"testing\"\nmax_age = \"7d\"\n\
         [autoconfig]\nimap_port = 10993\n",
    );
    use rustls::pki_types::pem::PemObject;
    let cert = server.data().join("tls/cert.pem");
    let root = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap();
    let roots = [root];
    let https = server.addr("https");
    let get = |host: &str, path: &str| {
        https_get(https, "mx.example.org", host, path, &roots)
            .unwrap_or_else(|e| panic!("{e}"))
            .1
    };

    // RFC 8461 §3.2, exactly.
    let response = get("mta-sts.example.org", "/.well-known/mta-sts.txt");
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    assert_eq!(
        body_of(&response),
        "version: STSv1\r\nmode: testing\r\nmx: mx.example.org\r\nmax_age: 604800\r\n"
    );
    assert_eq!(
        status_of(&get("mx.example.org", "/.well-known/mta-sts.txt")),
        404
    );

    // Thunderbird's autoconfig, read by Python's XML parser.
    let (submission, submissions) = (
        server.addr("submission").port(),
        server.addr("submissions").port(),
    );
    for path in [
        "/mail/config-v1.1.xml?emailaddress=me%40example.net",
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=me%40example.net",
    ] {
        let response = get("autoconfig.example.net", path);
        assert_eq!(status_of(&response), 200, "{response}");
        let parsed = python(
            "import sys, xml.etree.ElementTree as ET\n\
             p = ET.fromstring(sys.stdin.read()).find('emailProvider')\n\
             print(p.get('id'))\n\
             for s in p.findall('incomingServer') + p.findall('outgoingServer'):\n\
             \x20   print(s.get('type'), s.findtext('hostname'), s.findtext('port'), s.findtext('socketType'))\n",
            &body_of(&response),
        );
        assert_eq!(
            parsed,
            format!(
                "example.net\nimap mx.example.org 10993 SSL\n\
                 smtp mx.example.org {submissions} SSL\n\
                 smtp mx.example.org {submission} STARTTLS\n"
            )
        );
    }

    // The Apple profile, read by Python's plistlib: no password in it.
    let response = get(
        "autoconfig.example.org",
        "/apple.mobileconfig?email=me%40example.org",
    );
    assert_eq!(status_of(&response), 200, "{response}");
    let parsed = python(
        "import sys, plistlib\n\
         p = plistlib.loads(sys.stdin.buffer.read())['PayloadContent'][0]\n\
         print(p['EmailAddress'], p['IncomingMailServerPortNumber'], p['OutgoingMailServerPortNumber'])\n\
         print(sorted(k for k in p if 'Password' in k and k != 'OutgoingPasswordSameAsIncomingPassword'))\n",
        &body_of(&response),
    );
    assert_eq!(parsed, format!("me@example.org 10993 {submissions}\n[]\n"));

    // Everything else: 404; other methods: 405; no files.
    for path in [
        "/",
        "/index.html",
        "/etc/passwd",
        "/../../etc/passwd",
        "/mail/",
    ] {
        assert_eq!(status_of(&get("mx.example.org", path)), 404, "{path}");
    }
    let mut tls = tls_client(https, &roots);
    tls.write_all(b"POST /mail/config-v1.1.xml HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_all(&mut tls).starts_with("HTTP/1.1 405 "));

    // An oversized request head: 431 and closed, before 16 KiB are read.
    let mut tls = tls_client(https, &roots);
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.resize(16 * 1024, b'a');
    let _ = tls.write_all(&big);
    assert!(read_all(&mut tls).starts_with("HTTP/1.1 431 "));

    // A slow request: cut off with 408 after the 10-second bound.
    let mut tls = tls_client(https, &roots);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let response = read_all(&mut tls);
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    server.stop();
}

fn tls_client(
    addr: SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn =
        rustls::ClientConnection::new(verifying(roots), "mx.example.org".try_into().unwrap())
            .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn read_all(stream: &mut impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `code` with Debian's Python, `input` on stdin; its stdout.
fn python(code: &str, input: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new(support::peers::PYTHON)
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3: apt-get install -y python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What one client can hold on the web listeners is bounded by `[limits]`:
/// past `connections_per_ip`, a connection is closed at once.
#[test]
fn the_web_listeners_count_connections_per_client() {
    let server = TestServer::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"http\"\n\
         [limits]\nconnections = 10\nconnections_per_ip = 2\n",
    );
    let http = server.addr("http");
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(http).unwrap()).collect();
    // Let the server accept both before the third arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(http).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = third.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed, not served");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(server
        .log()
        .contains("refused (http): too many connections"));
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let response = raw_request(http, b"GET / HTTP/1.1\r\nHost: mx.example.org\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 301 "), "{response}");
}

/// A CA that never answers holds neither the start nor the stop: tern
/// serves with its own certificate meanwhile and stops at once on SIGTERM.
#[test]
fn a_silent_ca_delays_neither_start_nor_stop() {
    // Accepts connections (the kernel's backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut server = TestServer::start(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"https\"\n\
         [acme]\ndirectory = \"https://{}/dir\"\n",
        silent.local_addr().unwrap()
    ));
    wait_for_log_count(
        &server,
        "acme: ordering a certificate",
        1,
        Duration::from_secs(10),
    );
    // The self-signed certificate serves meanwhile.
    let mut c = server.connect("mx");
    assert!(c.command("EHLO client.example").contains("STARTTLS"));
    let started = Instant::now();
    let status = server.stop().expect("it was running");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
