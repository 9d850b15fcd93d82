//! `tern serve`: start-up and shutdown of the whole server. Claims the control
//! socket (so a second daemon stops before it touches the spool), opens (and
//! recovers) the spool, loads certificates, binds the listeners, starts the
//! scheduler and the control server, tells systemd it is ready, and on
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
use crate::control::{self, ControlListener};
use crate::inbound::Server;
use crate::outbound::resolver::HickoryResolver;
use crate::outbound::Outbound;
use crate::queue::admin::Admin;
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
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Before the spool: if another daemon answers here, it owns the spool.
    let control_path = control::socket_path(&config.data_dir);
    let control =
        ControlListener::bind(&control_path).context("cannot start the control server")?;
    let spool_dir = config.spool_dir();
    let spool = Spool::open(&spool_dir, Arc::new(SystemClock), SpoolOptions::default())
        .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?;
    let tls = crate::tls::server_config(&config).context("TLS setup failed")?;
    let live = Arc::new(Live::new(config));
    let server = Server::bind(live.clone(), spool.clone(), Some(tls)).await?;
    for (addr, role) in server.local_addrs() {
        // Tests and scripts read this line to find ports bound as 0.
        println!("tern: listening on {addr} ({})", role.name());
        log::info!("listening on {addr} ({})", role.name());
    }
    let (stop, stopped) = watch::channel(false);
    let resolver =
        HickoryResolver::new(&live.get().relay.nameservers).map_err(anyhow::Error::msg)?;
    let outbound = Outbound::new(live.clone(), Arc::new(resolver));
    let notifier = Arc::new(Notifier::new(spool.clone(), live.clone()));
    let scheduler = Scheduler::new(spool.clone(), live.clone(), DELIVERY_CONCURRENCY)
        .with_remote(Arc::new(outbound))
        .with_bouncer(notifier.clone());
    let scheduler = tokio::spawn(scheduler.run(stopped.clone(), SHUTDOWN_GRACE));
    log::info!("control socket on {}", control.path().display());
    let admin = Arc::new(Admin::new(spool.clone(), notifier));
    let control = tokio::spawn(control.serve(admin, stopped.clone()));
    let server = tokio::spawn(server.run(stopped, SHUTDOWN_GRACE));
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
    let _ = control.await;
    log::info!(
        "stopped: {} message(s) stay queued for the next start",
        spool.len()
    );
    Ok(())
}
