//! One delivery attempt of one message to the recipients at one domain: try
//! the [`Plan`]'s hosts and their addresses in order, apply its TLS rule, run
//! the transaction, and turn every reply into an [`Outcome`] per recipient:
//! 2xx delivered, 4xx deferred, 5xx failed (RFC 5321 §4.2.1).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::ServerName;

use crate::config::Config;
use crate::queue::{Diagnostic, Loaded, Outcome};
use crate::routing::srs::{self, Srs};
use crate::smtp::{Address, Domain, EnhancedCode, Route};

use super::client::{connector, ClientError, Connection, RemoteReply, TransactionReplies};
use super::plan::{Plan, Tls};
use super::pool::{Key, Pool};
use super::resolver::{interleave, DnsError, Resolver};

/// The TLS client settings an attempt can use.
pub struct TlsClients {
    pub opportunistic: Arc<rustls::ClientConfig>,
    /// `Err` holds why verified TLS is unavailable (CA bundle unreadable).
    pub verified: Result<Arc<rustls::ClientConfig>, String>,
}

/// Everything one attempt needs.
pub struct Attempt<'a> {
    pub config: &'a Config,
    /// Rewrites the sender of forwarded mail.
    pub srs: Option<&'a Srs>,
    pub resolver: &'a dyn Resolver,
    pub tls: &'a TlsClients,
    pub loaded: &'a Loaded,
    /// Indices of the recipients (all at one domain).
    pub indices: &'a [usize],
    /// Idle connections from earlier messages.
    pub pool: &'a Pool,
}

/// Why one address did not take the message; the next one is tried.
enum NextHost {
    /// It failed (connection, greeting, EHLO, required TLS, a lost link).
    Failed(Diagnostic),
    /// Opportunistic TLS failed: the same address is tried without TLS.
    OpportunisticTls(Diagnostic),
}

/// RFC 3463 X.4.1: no answer from host (or no useful one); X.4.3: the
/// directory server (DNS) failed; X.4.2: bad connection.
const NO_ANSWER: EnhancedCode = EnhancedCode(4, 4, 1);
const DNS_FAILED: EnhancedCode = EnhancedCode(4, 4, 3);
const BAD_CONNECTION: EnhancedCode = EnhancedCode(4, 4, 2);

/// What server `host` at `ip` said, as a diagnostic.
fn said(host: &str, ip: IpAddr, r: &RemoteReply) -> Diagnostic {
    Diagnostic::from_remote(host, ip, r.code, r.enhanced(), r.text())
}

impl Attempt<'_> {
    /// Tries the plan's hosts until one gives a verdict for the recipients.
    pub async fn run(&self, plan: &Plan) -> Vec<(usize, Outcome)> {
        let mut last = Diagnostic::note(NO_ANSWER, "no host to try");
        for (host, port) in &plan.hosts {
            let addrs = match self.resolver.addresses(host).await {
                Ok(a) => interleave(a),
                Err(DnsError::Temporary(e)) => {
                    last = Diagnostic::note(DNS_FAILED, format!("cannot resolve {host}: {e}"));
                    continue;
                }
                Err(e) => {
                    last = Diagnostic::note(NO_ANSWER, format!("host {host} has no address: {e}"));
                    continue;
                }
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, *port);
                match self.at_address(plan, host, addr, false).await {
                    Ok(outcomes) => return outcomes,
                    Err(NextHost::OpportunisticTls(why)) => {
                        // The handshake failed: RFC 7435 prefers plaintext over nothing.
                        log::info!("{why}; retrying {host}[{ip}] without TLS");
                        match self.at_address(plan, host, addr, true).await {
                            Ok(outcomes) => return outcomes,
                            Err(NextHost::Failed(why) | NextHost::OpportunisticTls(why)) => {
                                last = why
                            }
                        }
                    }
                    Err(NextHost::Failed(why)) => last = why,
                }
            }
        }
        self.all(Outcome::Deferred(last))
    }

    fn all(&self, outcome: Outcome) -> Vec<(usize, Outcome)> {
        self.indices.iter().map(|&i| (i, outcome.clone())).collect()
    }

    async fn at_address(
        &self,
        plan: &Plan,
        host: &str,
        addr: SocketAddr,
        no_tls: bool,
    ) -> Result<Vec<(usize, Outcome)>, NextHost> {
        let key = Key {
            addr,
            host: host.to_string(),
            tls: plan.tls,
            plaintext_fallback: no_tls,
            login: plan.auth.as_ref().map(|(user, _)| user.clone()),
        };
        if let Some(outcome) = self.reuse(&key).await {
            return outcome;
        }
        let relay = &self.config.relay;
        let at = |e: &dyn std::fmt::Display| {
            NextHost::Failed(
                Diagnostic::note(NO_ANSWER, format!("{host}[{}]: {e}", addr.ip()))
                    .at(host, addr.ip()),
            )
        };
        let server_name = ServerName::try_from(host.to_string())
            .or_else(|_| ServerName::try_from(addr.ip().to_string()))
            .map_err(|e| at(&e))?;
        let (mut conn, greeting) = if plan.tls == Tls::Implicit {
            let verified = self.tls.verified.clone().map_err(|e| at(&e))?;
            Connection::connect_implicit_tls(
                addr,
                connector(verified),
                server_name.clone(),
                relay.connect_timeout,
                relay.command_timeout,
            )
            .await
            .map_err(|e| at(&e))?
        } else {
            Connection::connect(addr, relay.connect_timeout, relay.command_timeout)
                .await
                .map_err(|e| at(&e))?
        };
        // RFC 5321 §3.1: a 554 greeting (or any non-220) means try another host.
        if greeting.code != 220 {
            conn.quit().await;
            return Err(at(&format!("greeting {}", greeting.one_line())));
        }
        let hello = conn
            .hello(&self.config.hostname)
            .await
            .map_err(|e| at(&e))?;
        if !hello.is_positive() {
            conn.quit().await;
            return Err(at(&format!("EHLO refused: {}", hello.one_line())));
        }
        match plan.tls {
            Tls::RequiredStartTls => {
                if !conn.extensions.starttls {
                    conn.quit().await;
                    return Err(at(
                        &"TLS is required but the server does not offer STARTTLS",
                    ));
                }
                let verified = self.tls.verified.clone().map_err(|e| at(&e))?;
                self.start_tls(&mut conn, connector(verified), server_name)
                    .await
                    .map_err(|e| at(&e))?;
            }
            Tls::Opportunistic if conn.extensions.starttls && !no_tls => {
                let c = connector(self.tls.opportunistic.clone());
                if let Err(e) = self.start_tls(&mut conn, c, server_name).await {
                    return Err(NextHost::OpportunisticTls(
                        Diagnostic::note(
                            BAD_CONNECTION,
                            format!("opportunistic TLS with {host}[{}] failed: {e}", addr.ip()),
                        )
                        .at(host, addr.ip()),
                    ));
                }
            }
            _ => {}
        }
        crate::queue::activity::activity().sent_over(conn.tls.is_some());
        if let Some((user, password)) = &plan.auth {
            let reply = conn
                .authenticate(user, password)
                .await
                .map_err(|e| at(&e))?;
            if reply.code != 235 {
                conn.quit().await;
                // RFC 3463 X.7.0: other security status; tried again later.
                return Ok(self.all(Outcome::Deferred(
                    Diagnostic::note(
                        EnhancedCode(4, 7, 0),
                        format!(
                            "{host}[{}] refused our login as {user}: {}",
                            addr.ip(),
                            reply.one_line()
                        ),
                    )
                    .at(host, addr.ip()),
                )));
            }
        }
        let outcomes = self
            .transaction(&mut conn, host, addr)
            .await
            .map_err(|e| at(&e))?;
        self.keep(key, conn, 1).await;
        Ok(outcomes)
    }

    /// Sends the message over a kept connection made for `key`, if there is
    /// one and it still answers RSET; `None` means: connect anew. A failure
    /// after that is the attempt's outcome like any other (the server may
    /// have the message already, so it is not sent again at once).
    async fn reuse(&self, key: &Key) -> Option<Result<Vec<(usize, Outcome)>, NextHost>> {
        let (mut conn, used) = self.pool.take(key)?;
        let (host, ip) = (key.host.as_str(), key.addr.ip());
        match conn.command("RSET", "RSET reply").await {
            Ok(reply) if reply.code == 250 => {}
            Ok(reply) => {
                log::debug!(
                    "{host}[{ip}]: kept connection refused RSET: {}",
                    reply.one_line()
                );
                conn.quit().await;
                return None;
            }
            Err(e) => {
                log::debug!("{host}[{ip}]: kept connection is gone: {e}");
                return None;
            }
        }
        let outcomes = self.transaction(&mut conn, host, key.addr).await;
        Some(match outcomes {
            Ok(outcomes) => {
                self.keep(key.clone(), conn, used + 1).await;
                Ok(outcomes)
            }
            Err(e) => Err(NextHost::Failed(
                Diagnostic::note(BAD_CONNECTION, format!("{host}[{ip}]: {e}")).at(host, ip),
            )),
        })
    }

    /// Keeps `conn` for the next message to the same server, or closes it.
    async fn keep(&self, key: Key, conn: Connection, used: u32) {
        if let Some(conn) = self.pool.put(key, conn, used) {
            conn.quit().await;
        }
    }

    async fn start_tls(
        &self,
        conn: &mut Connection,
        c: tokio_rustls::TlsConnector,
        name: ServerName<'static>,
    ) -> Result<(), ClientError> {
        let reply = conn.starttls(c, name).await?;
        if reply.code != 220 {
            return Err(ClientError::Protocol(format!(
                "STARTTLS refused: {}",
                reply.one_line()
            )));
        }
        let hello = conn.hello(&self.config.hostname).await?;
        if !hello.is_positive() {
            return Err(ClientError::Protocol(format!(
                "EHLO after STARTTLS refused: {}",
                hello.one_line()
            )));
        }
        Ok(())
    }

    /// MAIL FROM for this attempt. A sender at another domain means mail
    /// from outside that an alias forwards (our users and local programs
    /// send only from our domains, DESIGN invariant 7): it leaves rewritten
    /// by SRS at our first domain, so SPF passes at the destination and a
    /// bounce comes back to us, to be sent on to the original sender.
    fn envelope_sender(&self, sender: Option<&Address>) -> String {
        let Some(sender) = sender else {
            return String::new();
        };
        let foreign = match &sender.domain {
            Domain::Name(name) => !self.config.is_local_domain(name),
            Domain::Literal(_) => false,
        };
        let rewritten = match (foreign, self.srs, self.config.domains.first()) {
            (true, Some(srs), Some(ours)) => {
                srs.forward(sender, ours, srs::today(std::time::SystemTime::now()))
            }
            _ => None,
        };
        rewritten.as_ref().unwrap_or(sender).to_string()
    }

    /// Checks the message fits the server's extensions, then sends it.
    async fn transaction(
        &self,
        conn: &mut Connection,
        host: &str,
        addr: SocketAddr,
    ) -> Result<Vec<(usize, Outcome)>, ClientError> {
        let message = &self.loaded.entry.message;
        let envelope = &message.envelope;
        let content = &self.loaded.content;
        let recipients: Vec<String> = self
            .indices
            .iter()
            .map(|&i| match &envelope.recipients[i].route {
                Route::Remote(a) => a.to_string(),
                Route::Local(u) => u.clone(),
            })
            .collect();
        let sender = self.envelope_sender(envelope.sender.as_ref());
        let needs_utf8 =
            envelope.smtputf8 || !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        let eight_bit = envelope.eight_bit || !content.is_ascii();
        let ext = conn.extensions.clone();
        // RFC 6531 §3.4: no downgrade of internationalized addresses.
        if needs_utf8 && !ext.smtputf8 {
            return Ok(self.all(Outcome::Failed(Diagnostic::reply(
                553,
                EnhancedCode(5, 6, 7),
                format!("{host} does not support SMTPUTF8, which this message needs"),
            ))));
        }
        // RFC 6152 §3: 8-bit content only to servers that take it.
        if eight_bit && !ext.eight_bit {
            return Ok(self.all(Outcome::Failed(Diagnostic::reply(
                554,
                EnhancedCode(5, 6, 3),
                format!(
                    "{host} does not accept 8-bit content (no 8BITMIME), and this message has it"
                ),
            ))));
        }
        if let Some(max) = ext.size.filter(|&m| m > 0) {
            if content.len() as u64 > max {
                return Ok(self.all(Outcome::Failed(Diagnostic::reply(
                    552,
                    EnhancedCode(5, 3, 4),
                    format!(
                        "Message of {} bytes exceeds the {max} bytes {host} accepts",
                        content.len()
                    ),
                ))));
            }
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", content.len()));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let replies = conn.transaction(&mail, &recipients, content).await?;
        Ok(self.classify(replies, host, addr.ip()))
    }

    /// Per-recipient outcomes from the replies of one transaction.
    fn classify(
        &self,
        replies: TransactionReplies,
        host: &str,
        ip: IpAddr,
    ) -> Vec<(usize, Outcome)> {
        let verdict = |r: &RemoteReply| {
            let d = said(host, ip, r);
            if r.is_positive() {
                Outcome::Delivered(d)
            } else if r.is_transient() {
                Outcome::Deferred(d)
            } else {
                Outcome::Failed(d)
            }
        };
        if !replies.mail.is_positive() {
            return self.all(verdict(&replies.mail));
        }
        self.indices
            .iter()
            .zip(replies.rcpts)
            .map(|(&i, rcpt)| {
                let outcome = match (rcpt, &replies.data) {
                    (Some(r), _) if !r.is_positive() => verdict(&r),
                    (Some(_), Some(data)) => verdict(data),
                    // Accepted, but DATA never ran (should not happen).
                    _ => Outcome::Deferred(
                        Diagnostic::note(NO_ANSWER, format!("{host}[{ip}]: no reply to DATA"))
                            .at(host, ip),
                    ),
                };
                (i, outcome)
            })
            .collect()
    }
}
