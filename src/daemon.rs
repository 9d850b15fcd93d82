//! `tern serve`: start-up and shutdown of the whole server. Opens (and
//! recovers) the spool, loads certificates and DKIM keys, binds the
//! listeners, starts the scheduler, tells systemd it is ready, and on
//! SIGTERM/SIGINT stops accepting, lets sessions in DATA and deliveries in
//! progress finish (bounded), and exits with nothing lost.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::config::{Config, Live};
use crate::dkim::keys::KeyKind;
use crate::dkim::Signer;
use crate::inbound::Server;
use crate::outbound::resolver::HickoryResolver;
use crate::outbound::Outbound;
use crate::queue::dsn::Notifier;
use crate::queue::scheduler::Scheduler;
use crate::queue::{Spool, SpoolOptions};
use crate::systemd;

/// How long sessions in DATA and running deliveries get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Messages delivered at the same time.
const DELIVERY_CONCURRENCY: usize = 8;

/// Runs the server until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // A missing or broken DKIM key stops the start, as a config error.
    let signer = Signer::from_config(&config)?.map(Arc::new);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let spool_dir = config.spool_dir();
    let spool = Spool::open(&spool_dir, Arc::new(SystemClock), SpoolOptions::default())
        .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?;
    let tls = crate::tls::server_config(&config).context("TLS setup failed")?;
    for keys in signer.iter().flat_map(|s| s.domains()) {
        log::info!(
            "dkim: signing mail from {} (selectors {}, {})",
            keys.domain,
            KeyKind::Rsa.selector(&keys.selector),
            KeyKind::Ed25519.selector(&keys.selector)
        );
    }
    let live = Arc::new(Live::new(config));
    let server = Server::bind(live.clone(), spool.clone(), Some(tls), signer).await?;
    for (addr, role) in server.local_addrs() {
        // Tests and scripts read this line to find ports bound as 0.
        println!("tern: listening on {addr} ({})", role.name());
        log::info!("listening on {addr} ({})", role.name());
    }
    let (stop, stopped) = watch::channel(false);
    let resolver =
        HickoryResolver::new(&live.get().relay.nameservers).map_err(anyhow::Error::msg)?;
    let outbound = Outbound::new(live.clone(), Arc::new(resolver));
    let notifier = Notifier::new(spool.clone(), live.clone());
    let scheduler = Scheduler::new(spool.clone(), live.clone(), DELIVERY_CONCURRENCY)
        .with_remote(Arc::new(outbound))
        .with_bouncer(Arc::new(notifier));
    let scheduler = tokio::spawn(scheduler.run(stopped.clone(), SHUTDOWN_GRACE));
    let server = tokio::spawn(server.run(stopped, SHUTDOWN_GRACE));
    tokio::spawn(housekeeping(spool.clone()));
    systemd::notify("READY=1");
    log::info!("ready: {} message(s) in the queue", spool.len());

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
        _ = int.recv() => log::info!("SIGINT: shutting down"),
    }
    systemd::notify("STOPPING=1");
    let _ = stop.send(true);
    let _ = server.await;
    let _ = scheduler.await;
    log::info!(
        "stopped: {} message(s) stay queued for the next start",
        spool.len()
    );
    Ok(())
}

/// Every minute: copy long-queued messages out of old spool segments so the
/// segments can be deleted.
async fn housekeeping(spool: Spool) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.housekeeping(1000)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => log::info!("spool: moved {n} long-queued message(s) out of old segments"),
            Ok(Err(e)) => log::error!("spool housekeeping failed: {e}"),
            Err(e) => log::error!("spool housekeeping task failed: {e}"),
        }
    }
}
