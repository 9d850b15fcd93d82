//! tern's own small web server, for what mail needs from HTTPS: the
//! `https` listener (443) answers ACME TLS-ALPN-01 (through the certificate
//! store), the MTA-STS policy and mail-client autoconfiguration
//! ([`pages`]); the `http` listener (80) answers ACME HTTP-01 and redirects
//! everything else to https. One request per connection, bounded in size
//! and time ([`http`]); connections counted against the `[limits]` budget.
//! Nothing is ever served from disk.

pub mod http;
pub mod pages;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Role;
use crate::inbound::limits::ConnectionLimits;
use crate::inbound::next_client;
use crate::live::Live;
use crate::tls::store::{CertStore, ACME_TLS_ALPN};

use http::{Request, Response};
pub use pages::MailPorts;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The path prefix of HTTP-01 (RFC 8555 §8.3).
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The HTTP-01 answers being validated: token → key authorization.
#[derive(Debug, Default)]
pub struct Http01Tokens {
    tokens: Mutex<HashMap<String, String>>,
}

impl Http01Tokens {
    /// Answers `token` with `key_authorization` until removed.
    pub fn add(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_string(), key_authorization.to_string());
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bound https and http listeners.
pub struct WebServer {
    listeners: Vec<(TcpListener, Role)>,
    shared: Arc<Shared>,
}

struct Shared {
    live: Arc<Live>,
    /// The https listener's TLS: the shared certificates, ALPN http/1.1
    /// and acme-tls/1.
    tls: TlsAcceptor,
    tokens: Arc<Http01Tokens>,
    ports: MailPorts,
    limits: Arc<ConnectionLimits>,
}

impl WebServer {
    /// Binds the https and http listeners of the config in force (none:
    /// an empty server). `ports`: the submission ports the pages name.
    pub async fn bind(
        live: Arc<Live>,
        certs: &Arc<CertStore>,
        tokens: Arc<Http01Tokens>,
        ports: MailPorts,
    ) -> io::Result<WebServer> {
        let config = live.config();
        let mut listeners = Vec::new();
        for l in config.listeners.iter().filter(|l| !l.role.is_smtp()) {
            let listener = TcpListener::bind(l.address).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.address))
            })?;
            listeners.push((listener, l.role));
        }
        let tls = crate::tls::store::server_config(certs, &[b"http/1.1", ACME_TLS_ALPN])
            .map_err(io::Error::other)?;
        Ok(WebServer {
            listeners,
            shared: Arc::new(Shared {
                live,
                tls: TlsAcceptor::from(tls),
                tokens,
                ports,
                limits: Arc::new(ConnectionLimits::default()),
            }),
        })
    }

    /// The addresses bound, with their roles.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Role)> {
        self.listeners
            .iter()
            .filter_map(|(l, role)| l.local_addr().ok().map(|a| (a, *role)))
            .collect()
    }

    /// Serves until `shutdown` turns true; open requests are cut off (each
    /// is short and idempotent).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut accepts = JoinSet::new();
        for (listener, role) in self.listeners {
            accepts.spawn(accept_loop(
                listener,
                role,
                self.shared.clone(),
                shutdown.clone(),
            ));
        }
        while accepts.join_next().await.is_some() {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    while let Some((stream, peer)) =
        next_client(&listener, role, &mut shutdown, &mut connections).await
    {
        let budget = shared.live.config().limits.budget(role);
        let Ok(guard) = shared.limits.try_acquire(peer.ip(), budget) else {
            log::info!(
                "peer={peer} refused ({}): too many connections",
                role.name()
            );
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            match role {
                Role::Https => serve_https(&shared, stream, peer).await,
                _ => serve_http(&shared, stream, peer).await,
            }
            drop(guard);
        });
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_https(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.tls.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::debug!("peer={peer} https: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            log::debug!("peer={peer} https: TLS handshake timed out");
            return;
        }
    };
    let conn = tls.get_ref().1;
    if conn.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // RFC 8737 §3: the handshake itself was the answer.
        log::info!(
            "peer={peer} acme: answered a TLS-ALPN-01 validation for {}",
            conn.server_name().unwrap_or("?")
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncWriteExt::shutdown(&mut tls),
        )
        .await;
        return;
    }
    let config = shared.live.config();
    let (response, head_only) = match http::read_request(&mut tls).await {
        Ok(request) => (
            pages::respond(&config, shared.ports, &request),
            request_log(peer, "https", &request),
        ),
        Err(e) => match e.response() {
            Some(r) => {
                log::info!("peer={peer} https: {e}");
                (r, false)
            }
            None => return,
        },
    };
    http::write_response(&mut tls, &response, head_only).await;
}

async fn serve_http(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr) {
    let config = shared.live.config();
    let (response, head_only) = match http::read_request(&mut tcp).await {
        Ok(request) => {
            let head_only = request_log(peer, "http", &request);
            let response = match request.path.strip_prefix(HTTP01_PREFIX) {
                Some(token) => match shared.tokens.get(token) {
                    Some(answer) => {
                        log::info!("peer={peer} acme: answered an HTTP-01 validation");
                        Response::with(200, "application/octet-stream", answer.into_bytes())
                    }
                    None => Response::not_found(),
                },
                None => Response::redirect(https_location(&config.hostname, &request)),
            };
            (response, head_only)
        }
        Err(e) => match e.response() {
            Some(r) => {
                log::info!("peer={peer} http: {e}");
                (r, false)
            }
            None => return,
        },
    };
    http::write_response(&mut tcp, &response, head_only).await;
}

/// Logs a request (debug) and says whether it was HEAD.
fn request_log(peer: SocketAddr, listener: &str, request: &Request) -> bool {
    log::debug!(
        "peer={peer} {listener}: {} {} host={}",
        if request.head_only { "HEAD" } else { "GET" },
        request.path,
        request.host
    );
    request.head_only
}

/// `https://<host><path>`: the request's Host when it is a plain DNS name,
/// else our hostname.
fn https_location(hostname: &str, request: &Request) -> String {
    let host = if !request.host.is_empty()
        && request.host.len() <= 253
        && request
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        request.host.as_str()
    } else {
        hostname
    };
    match &request.query {
        Some(q) => format!("https://{host}{}?{q}", request.path),
        None => format!("https://{host}{}", request.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_a_sane_host_only() {
        let r =
            http::parse(b"GET /a?b=c HTTP/1.1\r\nHost: autoconfig.example.org\r\n\r\n").unwrap();
        assert_eq!(
            https_location("mx.example.org", &r),
            "https://autoconfig.example.org/a?b=c"
        );
        let r = http::parse(b"GET / HTTP/1.1\r\nHost: evil\"x\r\n\r\n").unwrap();
        assert_eq!(
            https_location("mx.example.org", &r),
            "https://mx.example.org/"
        );
    }
}
