//! `tern serve`: start-up, reload and shutdown of the whole server. Claims
//! the control socket (so a second daemon stops before it touches the spool),
//! opens (and recovers) the spool, loads certificates and DKIM keys, binds the listeners
//! (SMTP, and https/http), starts the scheduler, the ACME task and the control server, tells systemd it is ready
//! (READY=1 only after all that), pings the watchdog; on SIGHUP or `tern
//! reload` re-reads tern.toml, the certificates and the DKIM keys (a bad new
//! config is refused and the old one keeps serving); on SIGTERM/SIGINT stops accepting, lets sessions in DATA and
//! deliveries in progress finish (bounded), and exits with nothing lost.

use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};

use crate::clock::SystemClock;
use crate::config::{Config, Role, Source};
use crate::control::{self, ControlListener, Failure, FailureKind, Peer};
use crate::dkim::{self, Signer};
use crate::inbound::senders::AuthorError;
use crate::inbound::submit::{Caller, SubmitError, Submitter};
use crate::inbound::Server;
use crate::live::{Live, Snapshot};
use crate::local::Maildirs;
use crate::outbound::resolver::{HickoryResolver, Resolver};
use crate::outbound::Outbound;
use crate::queue::admin::Admin;
use crate::queue::dsn::Notifier;
use crate::queue::scheduler::{Agents, Scheduler};
use crate::queue::{Body, QueueId, Spool, SpoolOptions};
use crate::systemd;
use crate::tls::store::CertStore;
use crate::web::{Http01Tokens, WebServer};

/// How long sessions in DATA and running deliveries get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Messages in delivery at the same time (their contents together within
/// the scheduler's `LOADED_BYTES`): a delivery to another server mostly
/// waits on the network, so many destinations go at once.
const DELIVERY_CONCURRENCY: usize = 32;

/// `tern serve`: logging, the runtime, then [`run`] with the config from
/// `source` until SIGTERM or SIGINT.
pub fn serve(source: &Source) -> ExitCode {
    systemd::init_logging();
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(config, source.path().map(Path::to_path_buf))),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server until a stop signal. `path` is where `config` came from
/// (re-read on SIGHUP); `None` for the embedded default.
pub async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    // Starts the uptime of `tern status`.
    let activity = crate::queue::activity::activity();
    // A missing or broken DKIM key stops the start, as a config error.
    let signer = Signer::from_config(&config)?;
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
    // One certificate store for every listener: a reload or an ACME
    // renewal swaps what it holds, and new TLS sessions present that.
    let certs = Arc::new(CertStore::new(
        crate::tls::configured_key(&config).context("TLS setup failed")?,
    ));
    let tls = crate::tls::store::server_config(&certs, &[]).context("TLS setup failed")?;
    dkim::log_domains(signer.as_ref());
    write_dovecot_users(&config);
    crate::acme::served::link(&config);
    let srs = crate::routing::srs::Srs::load_or_create(&config.data_dir)
        .context("cannot read or make the SRS secret in the data directory")?;
    let live = Arc::new(Live::new(
        Snapshot::new(config, Some(tls), signer).with_srs(srs),
    ));
    // One resolver for the checks on incoming mail and for delivery.
    let resolver: Arc<dyn Resolver> = Arc::new(
        HickoryResolver::new(&live.config().relay.nameservers).map_err(anyhow::Error::msg)?,
    );
    let server = Server::bind(live.clone(), spool.clone(), resolver.clone()).await?;
    // The https/http listeners name the submission ports as bound.
    let mut ports = crate::web::MailPorts::default();
    for (addr, role) in server.local_addrs() {
        match role {
            Role::Submission => ports.submission = ports.submission.or(Some(addr.port())),
            Role::Submissions => ports.submissions = ports.submissions.or(Some(addr.port())),
            _ => {}
        }
    }
    let tokens = Arc::new(Http01Tokens::default());
    let web = WebServer::bind(live.clone(), &certs, tokens.clone(), ports).await?;
    let mut bound = server.local_addrs();
    bound.extend(web.local_addrs());
    activity.listening(bound.clone());
    let journal = systemd::logging_to_journal();
    for (addr, role) in bound {
        // Tests and scripts read this line to find ports bound as 0; under
        // systemd stdout is the journal too, so it would only repeat the log.
        if !journal {
            println!("tern: listening on {addr} ({})", role.name());
        }
        log::info!("listening on {addr} ({})", role.name());
    }
    let (stop, stopped) = watch::channel(false);
    let (scheduler, notifier) = delivery(&spool, &live, resolver, DELIVERY_CONCURRENCY);
    let scheduler = tokio::spawn(scheduler.run(stopped.clone(), SHUTDOWN_GRACE));
    log::info!("control socket on {}", control.path().display());
    let admin = Arc::new(Admin::new(spool.clone(), notifier));
    // Without [acme] the ACME task only waits for a reload that adds it.
    let acme_wake = Arc::new(Notify::new());
    let reloader = Arc::new(Reloader {
        path: path.clone(),
        live: live.clone(),
        certs: certs.clone(),
        acme_wake: acme_wake.clone(),
    });
    let wired = Arc::new(Wired {
        submitter: Submitter::new(live.clone(), spool.clone()),
        reloader: reloader.clone(),
    });
    let local_submit = submit_listener()?.map(|listener| {
        log::info!(
            "submission socket for local users on {}",
            listener.path().display()
        );
        tokio::spawn(listener.serve(admin.clone(), wired.clone(), stopped.clone()))
    });
    let control = tokio::spawn(control.serve(admin, wired, stopped.clone()));
    let web = tokio::spawn(web.run(stopped.clone()));
    let acme = tokio::spawn(crate::acme::run(
        crate::acme::Acme {
            live: live.clone(),
            certs: certs.clone(),
            tokens,
            wake: acme_wake.clone(),
        },
        stopped.clone(),
    ));
    let server = tokio::spawn(server.run(stopped, SHUTDOWN_GRACE));
    tokio::spawn(housekeeping(spool.clone()));
    if let Some(every) = systemd::watchdog_interval() {
        tokio::spawn(watchdog(every, spool.clone()));
    }
    // A config still holding the documentation names (the appliance's
    // placeholder) serves, but says what to edit in `systemctl status`.
    match path
        .as_deref()
        .and_then(|p| live.config().placeholder_notice(p))
    {
        Some(notice) => {
            log::warn!("{notice}");
            systemd::notify(&format!("READY=1\nSTATUS={notice}"));
        }
        None => systemd::notify("READY=1"),
    }
    log::info!("ready: {} message(s) in the queue", spool.len());

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { log::info!("SIGINT: shutting down"); break }
            _ = hup.recv() => {
                let reloader = reloader.clone();
                tokio::task::spawn_blocking(move || reloader.reload());
            }
        }
    }
    systemd::notify("STOPPING=1");
    let _ = stop.send(true);
    let _ = server.await;
    let _ = web.await;
    let _ = acme.await;
    let _ = scheduler.await;
    let _ = control.await;
    if let Some(local_submit) = local_submit {
        let _ = local_submit.await;
    }
    log::info!(
        "stopped: {} message(s) stay queued for the next start",
        spool.len()
    );
    Ok(())
}

/// The queue's delivery side, wired: the scheduler with its two agents
/// (Maildirs for local routes, the outbound relay for remote ones) and the
/// notifier for bounces and delay notices, which routes to senders by the
/// recipient directory. The notifier is returned too, for `tern queue delete
/// --bounce`. (Tests that run deliveries in-process build it here as well.)
pub fn delivery(
    spool: &Spool,
    live: &Arc<Live>,
    resolver: Arc<dyn Resolver>,
    concurrency: usize,
) -> (Scheduler, Arc<Notifier>) {
    let agents = Agents {
        local: Arc::new(Maildirs::new(live.clone())),
        remote: Arc::new(Outbound::new(live.clone(), resolver)),
    };
    let notifier = Arc::new(Notifier::new(
        spool.clone(),
        live.clone(),
        Arc::new(crate::routing::route_of),
    ));
    let scheduler = Scheduler::new(
        spool.clone(),
        live.clone(),
        agents,
        notifier.clone(),
        concurrency,
    );
    (scheduler, notifier)
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

/// The submission socket for every local user, when systemd gave us a
/// runtime directory (`$RUNTIME_DIRECTORY`, from `RuntimeDirectory=tern`).
fn submit_listener() -> anyhow::Result<Option<ControlListener>> {
    let Some(dirs) = std::env::var_os("RUNTIME_DIRECTORY") else {
        return Ok(None);
    };
    let dirs = dirs.to_string_lossy().into_owned();
    let Some(dir) = dirs.split(':').next().filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = Path::new(dir).join(control::SUBMIT_SOCKET_NAME);
    let listener = ControlListener::bind_submit(&path)
        .context("cannot start the submission socket for local users")?;
    Ok(Some(listener))
}

/// SIGHUP and `tern reload`: re-reads the config file at `path`, the
/// certificates and the DKIM keys, and puts them in force together as one
/// [`Snapshot`]; the new config's summary, or the mistake. Sessions already
/// open keep the snapshot they started with; new ones get the new one. A
/// config that does not validate (or certificates or keys that do not load)
/// changes nothing, and its mistake becomes the unit's status line
/// (`systemctl status tern`). One reload at a time.
fn reload(path: Option<&Path>, live: &Live, certs: &Arc<CertStore>) -> Result<String, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = path else {
        let why = "running on the embedded default config; there is no file to reload";
        log::warn!("reload: {why}");
        return Err(why.to_string());
    };
    systemd::notify_reloading();
    let outcome = Config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|config| Snapshot::load(config, certs).map_err(|e| e.to_string()));
    match outcome {
        Ok(snapshot) => {
            let (old, config) = (live.config(), &snapshot.config);
            for (what, changed) in [
                ("listeners", old.listeners != config.listeners),
                ("data_dir", old.data_dir != config.data_dir),
                (
                    "relay.nameservers",
                    old.relay.nameservers != config.relay.nameservers,
                ),
            ] {
                if changed {
                    log::warn!(
                        "reload: {what} changed; that takes a restart (systemctl restart tern)"
                    );
                }
            }
            let summary = config.summary(path);
            let status = match config.placeholder_notice(path) {
                Some(notice) => {
                    log::warn!("{notice}");
                    notice
                }
                None => format!("reloaded {}", path.display()),
            };
            write_dovecot_users(config);
            crate::acme::served::link(config);
            live.replace(snapshot);
            log::info!("reloaded: {summary}");
            crate::queue::activity::activity().reloaded(Ok(summary.clone()));
            systemd::notify(&format!("READY=1\nSTATUS={status}"));
            Ok(summary)
        }
        Err(e) => {
            log::error!("reload refused, the running configuration stays in force: {e}");
            crate::queue::activity::activity().reloaded(Err(e.clone()));
            // The status line systemctl shows: one line, whatever the text.
            let line: String = e
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            systemd::notify(&format!(
                "READY=1\nSTATUS=reload refused, the previous configuration stays in force: {line}"
            ));
            Err(e)
        }
    }
}

/// The running daemon as the control sockets see it ([`control::Daemon`]):
/// the inbound side's [`Submitter`] for `sendmail`, and [`reload`].
struct Wired {
    submitter: Submitter,
    reloader: Arc<Reloader>,
}

/// What a reload needs, for SIGHUP and `tern reload` alike.
struct Reloader {
    /// The config file in force (`None`: the embedded default).
    path: Option<PathBuf>,
    live: Arc<Live>,
    certs: Arc<CertStore>,
    /// Told after every reload: the names a certificate must cover may
    /// have changed.
    acme_wake: Arc<Notify>,
}

impl Reloader {
    /// [`reload`], then a word to the ACME task. Blocking: file reads and
    /// key parsing.
    fn reload(&self) -> Result<String, String> {
        let outcome = reload(self.path.as_deref(), &self.live, &self.certs);
        self.acme_wake.notify_one();
        outcome
    }
}

impl control::Daemon for Wired {
    fn config(&self) -> Arc<Config> {
        self.reloader.live.config()
    }

    fn tmp_dir(&self) -> PathBuf {
        self.submitter.tmp_dir()
    }

    fn submit(
        &self,
        sender: String,
        recipients: Vec<String>,
        body: Body,
        peer: Peer,
    ) -> impl Future<Output = Result<QueueId, Failure>> + Send {
        let caller = Caller {
            uid: peer.uid,
            privileged: peer.privileged,
        };
        async move {
            self.submitter
                .submit(&sender, &recipients, body, caller)
                .await
                .map_err(|e| failure_of(&e))
        }
    }

    fn reload(&self) -> impl Future<Output = Result<String, String>> + Send {
        let reloader = self.reloader.clone();
        async move {
            tokio::task::spawn_blocking(move || reloader.reload())
                .await
                .unwrap_or_else(|e| Err(format!("the reload failed inside the daemon: {e}")))
        }
    }
}

/// Which answer on the control socket each refusal of a submission earns
/// (`sendmail` turns the kind into its exit code).
fn failure_of(e: &SubmitError) -> Failure {
    let kind = match e {
        SubmitError::NoSuchUser(_) => FailureKind::NoSuchUser,
        SubmitError::BadAddress(_) => FailureKind::BadAddress,
        SubmitError::SenderRefused { .. }
        | SubmitError::UnknownUid(_)
        | SubmitError::Author(AuthorError::NotAllowed { .. }) => FailureKind::SenderRefused,
        SubmitError::Author(AuthorError::Io(_)) | SubmitError::Spool(_) => FailureKind::Io,
        SubmitError::Author(_) => FailureKind::BadMessage,
        SubmitError::TooManyRecipients { .. } => FailureKind::TooManyRecipients,
        SubmitError::RateLimited { .. } => FailureKind::RateLimited,
        SubmitError::Spam(_) => FailureKind::Spam,
        SubmitError::SpamDeferred(_) => FailureKind::SpamDeferred,
    };
    Failure::new(kind, e.to_string())
}

/// Writes Dovecot's user database (`[dovecot]`); a failure is logged, and
/// the logins Dovecot knew stay as they were.
fn write_dovecot_users(config: &Config) {
    match crate::dovecot::write_users(config) {
        Ok(()) => {
            if let Some(d) = &config.dovecot {
                log::info!("dovecot users written to {}", d.users_file.display());
            }
        }
        Err(e) => log::error!("dovecot users not written: {e}"),
    }
}

/// Tells systemd we are alive, as long as the runtime runs and the spool
/// answers.
async fn watchdog(every: Duration, spool: Spool) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let _ = spool.len();
        systemd::notify("WATCHDOG=1");
    }
}
