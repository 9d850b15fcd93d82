//! The outbound relay: delivers queued mail for other domains, server to
//! server. [`Outbound`] is the queue's [`Agent`] for remote routes: it groups
//! a message's remote recipients by domain (one transaction per domain, RFC 5321 §5.1) and
//! runs [`deliver::Attempt`]s with a per-destination concurrency limit.
//!
//! - [`resolver`]: DNS (the injected `Resolver` trait, hickory) and MX choice.
//! - [`client`]: the SMTP client.
//! - [`plan`]: where mail for a domain goes (route, smarthost, MX) and its
//!   TLS rule.
//! - [`deliver`]: one attempt at one domain: hosts in turn, TLS, outcomes.
//! - [`pool`]: idle connections kept for the next message to a server.

pub mod client;
pub mod deliver;
pub mod plan;
pub mod pool;
pub mod resolver;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::live::Live;
use crate::queue::{Agent, Diagnostic, Loaded, Outcome};
use crate::smtp::{Domain, EnhancedCode, Route};
use crate::BoxFuture;

use deliver::{Attempt, TlsClients};
use plan::Resolved;
use pool::Pool;
use resolver::Resolver;

/// The remote delivery agent.
pub struct Outbound {
    live: Arc<Live>,
    resolver: Arc<dyn Resolver>,
    tls: TlsClients,
    /// One semaphore per destination domain.
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    pool: Arc<Pool>,
}

impl Outbound {
    /// An agent using `resolver` for DNS; TLS trust comes from the config's
    /// `relay.ca_file`.
    pub fn new(live: Arc<Live>, resolver: Arc<dyn Resolver>) -> Outbound {
        let ca_file = live.config().relay.ca_file.clone();
        let verified = crate::tls::client_verified(&ca_file).map_err(|e| e.to_string());
        if let Err(e) = &verified {
            log::warn!("verified TLS for outgoing mail is unavailable: {e}");
        }
        Outbound {
            live,
            resolver,
            tls: TlsClients {
                opportunistic: crate::tls::client_opportunistic(),
                verified,
            },
            destinations: Mutex::new(HashMap::new()),
            pool: Pool::start(),
        }
    }

    fn slot(&self, domain: &str, limit: usize) -> Arc<Semaphore> {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle destinations so the map does not grow without bound.
        if map.len() > 10_000 {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.entry(domain.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1))))
            .clone()
    }

    async fn deliver_domain(
        &self,
        loaded: &Loaded,
        domain: &Domain,
        indices: &[usize],
    ) -> Vec<(usize, Outcome)> {
        let config = self.live.config();
        let all = |o: Outcome| indices.iter().map(|&i| (i, o.clone())).collect::<Vec<_>>();
        if domain.name().is_some_and(|d| config.is_local_domain(d)) {
            // The domain became local by a reload after the message was
            // accepted; local domains never go out.
            return all(Outcome::Failed(Diagnostic::reply(
                550,
                EnhancedCode(5, 1, 1),
                format!("{domain} is now a local domain; recipient must be sent again"),
            )));
        }
        let slot = self.slot(domain.as_str(), config.relay.concurrency_per_destination);
        let Ok(_permit) = slot.acquire_owned().await else {
            // RFC 3463 X.3.2: system not accepting network messages.
            return all(Outcome::Deferred(Diagnostic::note(
                EnhancedCode(4, 3, 2),
                "shutting down",
            )));
        };
        let plan = match plan::resolve(&config, self.resolver.as_ref(), domain).await {
            Resolved::Plan(plan) => plan,
            Resolved::All(outcome) => return all(outcome),
        };
        let srs = self.live.get().srs.clone();
        Attempt {
            config: &config,
            srs: srs.as_deref(),
            resolver: self.resolver.as_ref(),
            tls: &self.tls,
            loaded,
            indices,
            pool: &self.pool,
        }
        .run(&plan)
        .await
    }
}

impl Agent for Outbound {
    fn deliver<'a>(
        &'a self,
        loaded: Arc<Loaded>,
        indices: Vec<usize>,
    ) -> BoxFuture<'a, Vec<(usize, Outcome)>> {
        Box::pin(async move {
            let loaded = loaded.as_ref();
            let mut by_domain: BTreeMap<Domain, Vec<usize>> = BTreeMap::new();
            for i in indices {
                if let Route::Remote(addr) = &loaded.entry.message.envelope.recipients[i].route {
                    by_domain.entry(addr.domain.clone()).or_default().push(i);
                }
            }
            let mut outcomes = Vec::new();
            for (domain, idx) in by_domain {
                outcomes.extend(self.deliver_domain(loaded, &domain, &idx).await);
            }
            outcomes
        })
    }
}
