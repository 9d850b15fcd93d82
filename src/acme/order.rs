//! One certificate order against the CA (RFC 8555 §7.4): the account
//! (stored, or created and stored), the order for the names, one challenge
//! answered per authorization (TLS-ALPN-01, RFC 8737, through the
//! certificate store; or HTTP-01, §8.3, through the http listener),
//! finalization with a fresh key, and the chain written to disk. Every
//! answer put up is taken down again, whatever the outcome.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Acme, Challenge};
use crate::tls::store::CertStore;
use crate::web::Http01Tokens;

use super::files::AcmeFiles;

/// How long the CA may take to validate, and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// The answers put up during one order, taken down when dropped.
struct Answers<'a> {
    certs: &'a CertStore,
    tokens: &'a Http01Tokens,
    names: Vec<String>,
    tokens_up: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            self.certs.remove_challenge(name);
        }
        for token in &self.tokens_up {
            self.tokens.remove(token);
        }
    }
}

/// Orders a certificate for `names` and stores it in `files`; the error is
/// the reason, in words (the CA's problem document when it gave one).
pub async fn issue(
    settings: &Acme,
    names: &[String],
    files: &AcmeFiles,
    certs: &Arc<CertStore>,
    tokens: &Arc<Http01Tokens>,
) -> Result<(), String> {
    let account = account(settings, files).await?;
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the CA refused the order: {e}"))?;
    let mut answers = Answers {
        certs,
        tokens,
        names: Vec::new(),
        tokens_up: Vec::new(),
    };
    let kind = match settings.challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(|e| format!("cannot fetch an authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(format!(
                    "the authorization for {} is {other:?}",
                    authz.identifier()
                ))
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
            format!(
                "the CA offers no {} challenge for {name}",
                settings.challenge.name()
            )
        })?;
        let key_authorization = challenge.key_authorization();
        match settings.challenge {
            Challenge::TlsAlpn01 => {
                let key = validation_certificate(&name, key_authorization.digest().as_ref())?;
                certs.add_challenge(&name, key);
                answers.names.push(name.clone());
            }
            Challenge::Http01 => {
                tokens.add(&challenge.token, key_authorization.as_str());
                answers.tokens_up.push(challenge.token.clone());
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("cannot start the validation of {name}: {e}"))?;
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("waiting for the validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(validation_errors(&mut order, status).await);
    }
    drop(answers);
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("the CA refused to finalize the order: {e}"))?;
    let chain_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("cannot download the certificate: {e}"))?;
    files
        .store_certificate(&key_pem, &chain_pem)
        .map_err(|e| format!("cannot write {}: {e}", files.cert_path().display()))
}

/// Why the order is not ready: each failed challenge's problem, as the CA
/// reported it.
async fn validation_errors(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{}: {problem}", state.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        format!("the order is {status:?}")
    } else {
        format!("validation failed: {}", reasons.join("; "))
    }
}

/// The stored account for the configured CA, or a new one (stored).
async fn account(settings: &Acme, files: &AcmeFiles) -> Result<Account, String> {
    let builder = || match &settings.ca_file {
        Some(ca) => Account::builder_with_root(ca)
            .map_err(|e| format!("cannot use acme.ca_file {}: {e}", ca.display())),
        None => Account::builder().map_err(|e| format!("no TLS roots for the CA: {e}")),
    };
    let stored = files
        .account(&settings.directory)
        .map_err(|e| format!("cannot read the ACME account: {e}"))?;
    if let Some(credentials) = stored {
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("cannot reach the CA at {}: {e}", settings.directory));
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("cannot create an account at {}: {e}", settings.directory))?;
    files
        .store_account(&settings.directory, credentials)
        .map_err(|e| format!("cannot store the ACME account: {e}"))?;
    log::info!("acme: account created at {}", settings.directory);
    Ok(account)
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737 §3): self-signed, the
/// name as its only subjectAltName, the critical acmeIdentifier extension
/// holding the SHA-256 digest of the key authorization.
fn validation_certificate(name: &str, digest: &[u8]) -> Result<rustls::sign::CertifiedKey, String> {
    let fail = |e: rcgen::Error| format!("cannot make the TLS-ALPN-01 certificate: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    // Not `certified_key`: its consistency check parses the certificate
    // with webpki, which refuses the critical acmeIdentifier extension.
    let signing = crate::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_for_a_public_ca_builds_with_ring_alone() {
        // Let's Encrypt's path: the platform's roots, the ring provider (no
        // network here; only that the HTTPS client can be made).
        assert!(Account::builder().is_ok());
    }

    #[test]
    fn the_validation_certificate_carries_the_digest() {
        let digest = [7u8; 32];
        let key = validation_certificate("mx.example.org", &digest).unwrap();
        let der = key.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 §6.1), critical,
        // an OCTET STRING of the digest.
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}
