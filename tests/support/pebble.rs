//! A private pebble ACME server (scripts/pebble-instance) and the TLS
//! clients the ACME tests check tern with: an HTTPS GET, SMTP STARTTLS and
//! implicit TLS, each verifying the presented chain against given roots
//! (pebble's) and returning the leaf it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A running pebble; stopped (by its PID, through the script) when dropped.
pub struct Pebble {
    pub dir: PathBuf,
    pub directory: String,
    pub management: String,
    pub ca_file: PathBuf,
}

impl Pebble {
    /// Starts pebble asking `dns` and validating on tern's `http_port` and
    /// `tls_port`; `validity`: the certificates' lifetime in seconds.
    pub fn start(
        dir: &Path,
        dns: SocketAddr,
        http_port: u16,
        tls_port: u16,
        validity: Option<u64>,
    ) -> Pebble {
        assert!(
            Path::new("/usr/bin/pebble").exists(),
            "pebble is not installed: apt-get install -y pebble"
        );
        let mut cmd = Command::new(super::tools::script("pebble-instance"));
        cmd.arg("start")
            .arg(dir)
            .args(["--dns", &dns.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--tls-port", &tls_port.to_string()]);
        if let Some(v) = validity {
            cmd.args(["--validity", &v.to_string()]);
        }
        let out = cmd.output().expect("run scripts/pebble-instance");
        assert!(
            out.status.success(),
            "pebble-instance start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .to_string()
        };
        Pebble {
            dir: dir.to_path_buf(),
            directory: value("directory"),
            management: value("management"),
            ca_file: value("ca_file").into(),
        }
    }

    /// The root of the certificates pebble issues (its management API's
    /// /roots/0, fetched over HTTPS trusting pebble's own CA).
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        let own = CertificateDer::pem_file_iter(&self.ca_file)
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        let addr: SocketAddr = self
            .management
            .strip_prefix("https://")
            .unwrap()
            .parse()
            .unwrap();
        let (_, response) = https_get(addr, "127.0.0.1", "127.0.0.1", "/roots/0", &own)
            .expect("pebble's management API answers");
        let body = body_of(&response);
        CertificateDer::from_pem_slice(body.as_bytes()).expect("a PEM root")
    }

    /// pebble's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = Command::new(super::tools::script("pebble-instance"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// A client config trusting only `roots`.
pub fn verifying(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    Arc::new(config)
}

fn tls_over(
    tcp: TcpStream,
    name: &str,
    roots: &[CertificateDer<'static>],
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn =
        rustls::ClientConnection::new(verifying(roots), server_name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(stream)
}

fn leaf(stream: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    tcp
}

/// GET `path` with SNI `sni` and Host `host`, verifying against `roots`;
/// the presented leaf and the whole response.
pub fn https_get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
    roots: &[CertificateDer<'static>],
) -> Result<(Vec<u8>, String), String> {
    let mut stream = tls_over(connect(addr), sni, roots)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A close without close_notify is fine here: the length is in the head.
    let _ = stream.read_to_end(&mut response);
    Ok((
        leaf(&stream),
        String::from_utf8_lossy(&response).into_owned(),
    ))
}

/// The body of an HTTP response.
pub fn body_of(response: &str) -> String {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The status code of an HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn smtp_reply(reader: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

/// SMTP with STARTTLS as `name`, verifying against `roots`; the leaf.
pub fn starttls_leaf(
    addr: SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
) -> Result<Vec<u8>, String> {
    let tcp = connect(addr);
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp.try_clone().unwrap();
    assert!(smtp_reply(&mut reader).starts_with("220"));
    w.write_all(b"EHLO client.example\r\n").unwrap();
    let ehlo = smtp_reply(&mut reader);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    w.write_all(b"STARTTLS\r\n").unwrap();
    assert!(smtp_reply(&mut reader).starts_with("220"));
    let mut tls = tls_over(tcp, name, roots)?;
    tls.write_all(b"EHLO client.example\r\n").unwrap();
    let reply = smtp_reply(&mut BufReader::new(&mut tls));
    assert!(reply.starts_with("250"), "{reply}");
    Ok(leaf(&tls))
}

/// SMTP over implicit TLS (port 465) as `name`; the leaf.
pub fn implicit_tls_leaf(
    addr: SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
) -> Result<Vec<u8>, String> {
    let mut tls = tls_over(connect(addr), name, roots)?;
    let banner = smtp_reply(&mut BufReader::new(&mut tls));
    assert!(banner.starts_with("220"), "{banner}");
    Ok(leaf(&tls))
}
