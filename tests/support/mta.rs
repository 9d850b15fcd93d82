//! One tern in-process, for the tests of delivery onwards: the spool, the
//! scheduler with its agents and the bouncer, wired by the daemon's own
//! `tern::daemon::delivery`, on a clock the test chooses. Messages go
//! straight into the spool, as if they had been accepted.

use std::sync::Arc;
use std::time::Duration;

use tern::clock::Clock;
use tern::config::Config;
use tern::live::Live;
use tern::outbound::resolver::HickoryResolver;
use tern::queue::{Body, QueueId, Spool, SpoolOptions};
use tern::smtp::{Address, Envelope, Recipient, Route};
use tokio::sync::watch;

/// A running queue; it stops when dropped.
pub struct Mta {
    pub spool: Spool,
    pub config: Arc<Config>,
    stop: watch::Sender<bool>,
}

impl Mta {
    /// Opens the spool of `config` and starts delivering from it, with
    /// `concurrency` deliveries at a time. Needs a tokio runtime.
    pub fn start(config: Config, clock: Arc<dyn Clock>, concurrency: usize) -> Mta {
        let live = Arc::new(Live::new(config.clone()));
        let spool = Spool::open(&config.spool_dir(), clock, SpoolOptions::default()).unwrap();
        let resolver = HickoryResolver::new(&config.relay.nameservers).unwrap();
        let (scheduler, _) = tern::daemon::delivery(&spool, &live, Arc::new(resolver), concurrency);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(scheduler.run(stopped, Duration::from_secs(5)));
        Mta {
            spool,
            config: Arc::new(config),
            stop,
        }
    }

    /// Queues `content` (with `prepend` in front) from `sender` (`None`:
    /// the null sender) to remote recipients `to`.
    pub async fn queue(
        &self,
        sender: Option<&str>,
        to: &[&str],
        prepend: Vec<u8>,
        content: Vec<u8>,
        eight_bit: bool,
    ) -> QueueId {
        let envelope = Envelope {
            sender: sender.map(|s| Address::parse(s).unwrap()),
            recipients: to
                .iter()
                .map(|r| Recipient {
                    original: r.to_string(),
                    route: Route::Remote(Address::parse(r).unwrap()),
                })
                .collect(),
            eight_bit,
            smtputf8: to.iter().any(|r| !r.is_ascii()),
        };
        let id = self.spool.new_id();
        self.spool
            .enqueue(id, envelope, prepend, Body::from_bytes(content))
            .await
            .unwrap();
        id
    }
}

impl Drop for Mta {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
