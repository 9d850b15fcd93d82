//! The one certificate every tern TLS listener presents, swappable while
//! the daemon runs: [`CertStore`] holds the configured certificate (the
//! owner's files or the self-signed one), the ACME certificate once there is
//! one, and the short-lived TLS-ALPN-01 answers (RFC 8737). Every rustls
//! `ServerConfig` resolves through it ([`CertStore::resolver`]), so a renewed
//! or reloaded certificate is used by each new TLS session without a
//! restart; sessions already open keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificates in force, shared by every listener.
#[derive(Debug)]
pub struct CertStore {
    /// From the config: the owner's files or the self-signed pair.
    configured: RwLock<Arc<CertifiedKey>>,
    /// Issued by ACME; when present it wins over `configured`.
    acme: RwLock<Option<Arc<CertifiedKey>>>,
    /// TLS-ALPN-01 answers by (lower-case) name, while a validation runs.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    /// A store presenting `configured` until an ACME certificate arrives.
    pub fn new(configured: CertifiedKey) -> CertStore {
        CertStore {
            configured: RwLock::new(Arc::new(configured)),
            acme: RwLock::new(None),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate new sessions get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        if let Some(acme) = read(&self.acme).clone() {
            return acme;
        }
        read(&self.configured).clone()
    }

    /// Replaces the configured certificate (a reload).
    pub fn set_configured(&self, key: CertifiedKey) {
        *self.configured.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }

    /// Puts an ACME certificate in force (it outranks the configured one).
    pub fn set_acme(&self, key: CertifiedKey) {
        *self.acme.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
    }

    /// Withdraws the ACME certificate (`[acme]` was turned off): the
    /// configured one serves again.
    pub fn clear_acme(&self) {
        *self.acme.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Is an ACME certificate in force?
    pub fn has_acme(&self) -> bool {
        read(&self.acme).is_some()
    }

    /// Answers TLS-ALPN-01 for `name` with `key` until [`Self::remove_challenge`].
    pub fn add_challenge(&self, name: &str, key: CertifiedKey) {
        lock(&self.challenges).insert(name.to_ascii_lowercase(), Arc::new(key));
    }

    /// Stops answering TLS-ALPN-01 for `name`.
    pub fn remove_challenge(&self, name: &str) {
        lock(&self.challenges).remove(&name.to_ascii_lowercase());
    }

    /// The rustls resolver over this store. `answer_challenges`: a client
    /// asking for `acme-tls/1` gets the validation certificate (only the
    /// HTTPS listener, which also offers that ALPN protocol).
    pub fn resolver(self: &Arc<Self>, answer_challenges: bool) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver {
            store: self.clone(),
            answer_challenges,
        })
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// One listener's view of the store.
#[derive(Debug)]
struct Resolver {
    store: Arc<CertStore>,
    answer_challenges: bool,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: only the validation certificate, only for a name
            // being validated; anything else fails the handshake.
            if !self.answer_challenges {
                return None;
            }
            let name = hello.server_name()?.to_ascii_lowercase();
            return lock(&self.store.challenges).get(&name).cloned();
        }
        Some(self.store.current())
    }
}

/// A certified key from a PEM chain and key.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let key = CertifiedKey::from_der(chain, key, &super::provider())?;
    Ok(key)
}

/// The server configuration of a listener resolving through `store`;
/// `alpn`: the protocols it offers (none for SMTP).
pub fn server_config(
    store: &Arc<CertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let answer_challenges = alpn.contains(&ACME_TLS_ALPN);
    let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store.resolver(answer_challenges));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn generated(name: &str) -> (CertifiedKey, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let der = made.cert.der().clone();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        (certified_key(vec![der.clone()], key).unwrap(), der)
    }

    /// The end-entity certificate a real handshake presents.
    fn presented(config: Arc<rustls::ServerConfig>, alpn: &[&[u8]]) -> Option<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            let mut s = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf);
        });
        let mut client = (*crate::tls::client_opportunistic()).clone();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(client), "mx.example.org".try_into().unwrap())
                .unwrap();
        let mut tcp = TcpStream::connect(addr).unwrap();
        let mut s = rustls::Stream::new(&mut conn, &mut tcp);
        let ok = s.write_all(b"x").and_then(|_| s.flush()).is_ok();
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        drop(tcp);
        let _ = server.join();
        if ok {
            cert
        } else {
            None
        }
    }

    #[test]
    fn a_swapped_certificate_is_presented_by_new_sessions() {
        let (first, first_der) = generated("mx.example.org");
        let store = Arc::new(CertStore::new(first));
        let config = server_config(&store, &[]).unwrap();
        assert_eq!(presented(config.clone(), &[]), Some(first_der.to_vec()));

        // ACME outranks the configured certificate, through the same config.
        let (acme, acme_der) = generated("mx.example.org");
        store.set_acme(acme);
        assert!(store.has_acme());
        assert_eq!(presented(config.clone(), &[]), Some(acme_der.to_vec()));

        // A reload's new configured certificate waits behind the ACME one.
        let (reloaded, reloaded_der) = generated("mx.example.org");
        store.set_configured(reloaded);
        assert_eq!(presented(config.clone(), &[]), Some(acme_der.to_vec()));
        // [acme] turned off: the configured certificate again.
        store.clear_acme();
        assert_eq!(presented(config, &[]), Some(reloaded_der.to_vec()));
    }

    #[test]
    fn acme_tls_alpn_gets_only_the_validation_certificate() {
        let (base, base_der) = generated("mx.example.org");
        let store = Arc::new(CertStore::new(base));
        let https = server_config(&store, &[b"http/1.1", ACME_TLS_ALPN]).unwrap();
        let smtp = server_config(&store, &[]).unwrap();
        // No challenge pending: the handshake fails rather than showing the
        // ordinary certificate.
        assert_eq!(presented(https.clone(), &[ACME_TLS_ALPN]), None);
        let (answer, answer_der) = generated("mx.example.org");
        store.add_challenge("MX.example.org", answer);
        assert_eq!(
            presented(https.clone(), &[ACME_TLS_ALPN]),
            Some(answer_der.to_vec())
        );
        // Ordinary HTTPS clients and the SMTP listeners never see it.
        assert_eq!(
            presented(https.clone(), &[b"http/1.1"]),
            Some(base_der.to_vec())
        );
        assert_eq!(presented(smtp, &[ACME_TLS_ALPN]), None);
        store.remove_challenge("mx.example.org");
        assert_eq!(presented(https, &[ACME_TLS_ALPN]), None);
    }
}
