//! The inbound SMTP server: binds the configured listeners, enforces the
//! connection limits, and runs one [`connection`] driver per client.
//!
//! - [`connection`]: the tokio driver of one `smtp::Session`.
//! - [`policy`]: answers to the session's sender and recipient checks (the
//!   relay rule itself is [`crate::routing`]'s).
//! - [`limits`]: connection counting, one budget per listener role.
//! - [`auth`]: password checks; [`passwd`]: `tern user passwd`.
//! - [`throttle`]: failed logins per client and per login; the cap on
//!   password checks running at once.
//! - [`accept`]: queueing an accepted message (Received:, DKIM, spool), for
//!   SMTP and local sendmail alike.
//! - [`submit`]: local sendmail submissions (from the control socket).
//! - [`sender_domain`]: does the sender's domain exist (mx listeners)?
//! - [`verify`]: SPF, DKIM, DMARC and iprev of mail from other servers, the
//!   Authentication-Results field and the `[mx]` policy;
//!   [`auth_results`]: forged Authentication-Results fields removed.
//! - [`spam`]: the spam filter's verdict on a message (rspamd, through
//!   the small HTTP client [`rspamd`]): refused, Junk or inbox.
//! - [`senders`]: the sender rules, who may send as which address (MAIL
//!   FROM, From:, Sender:), for logins and local Unix users alike.

pub mod accept;
pub mod auth;
pub mod auth_results;
pub mod connection;
pub mod limits;
pub mod passwd;
pub mod policy;
pub mod rspamd;
pub mod sender_domain;
pub mod senders;
pub mod spam;
pub mod submit;
pub mod throttle;
pub mod verify;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Role;
use crate::live::Live;
use crate::outbound::resolver::Resolver;
use crate::queue::Spool;
use crate::smtp::Reply;

use connection::Context;
use limits::RoleLimits;

/// The running listeners and what they share.
pub struct Server {
    listeners: Vec<(TcpListener, Role)>,
    shared: Arc<Shared>,
}

/// State shared by all connections.
struct Shared {
    /// Config, certificate and DKIM signer in force (a reload replaces it).
    live: Arc<Live>,
    spool: Spool,
    /// Open connections, counted per listener role.
    limits: Arc<RoleLimits>,
    throttle: Arc<throttle::Throttle>,
    /// DNS for the checks on incoming mail.
    resolver: Arc<dyn Resolver>,
}

impl Server {
    /// Binds every SMTP listener of the config in force (the https and http
    /// ones are [`crate::web`]'s); each connection takes
    /// the snapshot in force when it arrives. `resolver` answers the checks
    /// on mail from other servers.
    pub async fn bind(
        live: Arc<Live>,
        spool: Spool,
        resolver: Arc<dyn Resolver>,
    ) -> io::Result<Server> {
        let config = live.config();
        let mut listeners = Vec::new();
        for l in config.listeners.iter().filter(|l| l.role.is_smtp()) {
            let listener = TcpListener::bind(l.address).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.address))
            })?;
            listeners.push((listener, l.role));
        }
        Ok(Server {
            listeners,
            shared: Arc::new(Shared {
                live,
                spool,
                limits: Arc::new(RoleLimits::default()),
                throttle: Arc::new(throttle::Throttle::default()),
                resolver,
            }),
        })
    }

    /// The addresses actually bound (port 0 in the config becomes a real port),
    /// with their roles, in config order.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Role)> {
        self.listeners
            .iter()
            .filter_map(|(l, role)| l.local_addr().ok().map(|a| (a, *role)))
            .collect()
    }

    /// Accepts connections until `shutdown` turns true; then lets sessions in
    /// DATA finish, up to `grace`.
    pub async fn run(self, shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut accepts = JoinSet::new();
        for (listener, role) in self.listeners {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            accepts.spawn(accept_loop(listener, role, shared, shutdown, grace));
        }
        while accepts.join_next().await.is_some() {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    while let Some((stream, peer)) =
        next_client(&listener, role, &mut shutdown, &mut connections).await
    {
        let snapshot = shared.live.get();
        let budget = snapshot.config.limits.budget(role);
        let guard = match shared.limits.of(role).try_acquire(peer.ip(), budget) {
            Ok(g) => g,
            Err(reply) => {
                log::info!("peer={peer} refused ({}): {}", role.name(), reply.text);
                connections.spawn(refuse(stream, reply));
                continue;
            }
        };
        let ctx = Context {
            snapshot,
            role,
            spool: shared.spool.clone(),
            throttle: shared.throttle.clone(),
            resolver: shared.resolver.clone(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(async move {
            log::debug!("peer={peer} connected ({})", role.name());
            connection::serve(ctx, stream, peer).await;
            log::debug!("peer={peer} disconnected");
            drop(guard);
        });
    }
    // Sessions see the shutdown too: idle ones say 421 and close at once,
    // ones in DATA finish their message first, for up to `grace`.
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "{} session(s) still open after {grace:?}; closing them",
            connections.len()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The next client of `listener` and its address, or `None` once
/// `shutdown` turns true; for every listener (SMTP here, https/http in
/// `crate::web`). Finished tasks in `connections` are reaped first, so the
/// set does not grow. A failed accept (EMFILE and friends) is logged and
/// tried again after a short pause rather than spun on. A dual-stack
/// "[::]" listener sees IPv4 clients as ::ffff:a.b.c.d: they are IPv4
/// clients (SPF ip4:, Received:, logs, limits).
pub async fn next_client<T: 'static>(
    listener: &TcpListener,
    role: Role,
    shutdown: &mut watch::Receiver<bool>,
    connections: &mut JoinSet<T>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return None,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                return Some((
                    stream,
                    SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                ))
            }
            Err(e) => {
                log::warn!("accept on {} listener failed: {e}", role.name());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Says why the connection is refused (421, RFC 5321 §3.8), then closes.
async fn refuse(mut stream: TcpStream, reply: Reply) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply.to_bytes())).await;
    let _ = stream.shutdown().await;
}
