//! Certificates from an ACME CA (RFC 8555), kept fresh while the daemon
//! runs. One task ([`run`]): at start it puts the certificate from
//! `data_dir/acme` ([`files`]) in force; when there is none, when it does not
//! cover the names the config wants ([`Config::certificate_names`]), or when
//! a third of its lifetime is left, it orders one ([`order`]), answering
//! TLS-ALPN-01 through the certificate store or HTTP-01 through the http
//! listener, and installs it in the store: new TLS sessions on every
//! listener present it at once. A failure is logged with the CA's reason,
//! shown by `tern status`, and retried with backoff; the certificate in
//! force keeps serving. After a new certificate, `[acme] reload_command`
//! (e.g. `systemctl reload dovecot`) runs.

pub mod files;
pub mod order;
pub mod served;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::live::Live;
use crate::tls::store::CertStore;
use crate::web::Http01Tokens;

use files::{AcmeFiles, Issued};

/// The first retry after a failure; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait between two attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The longest one attempt (account, order, validation, download) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `reload_command` may run.
const RELOAD_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the ACME task shares with the daemon.
pub struct Acme {
    pub live: Arc<Live>,
    pub certs: Arc<CertStore>,
    pub tokens: Arc<Http01Tokens>,
    /// Notified on reload: the wanted names may have changed.
    pub wake: Arc<Notify>,
}

/// When a certificate valid from `not_before` to `not_after` (seconds since
/// the epoch) is due for renewal: when a third of its lifetime is left.
pub fn renewal_due(not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    not_after - lifetime / 3
}

/// The wait after `failures` failed attempts in a row (1, 2, 4 ... minutes,
/// at most six hours).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Does `issued` cover every name in `wanted`?
fn covers(issued: &Issued, wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| issued.leaf.names.iter().any(|n| n.eq_ignore_ascii_case(w)))
}

/// Runs until `stopped` turns true. Without `[acme]` in the config in force
/// it only waits for a reload that adds it.
pub async fn run(acme: Acme, mut stopped: watch::Receiver<bool>) {
    let mut current: Option<Issued> = None;
    let mut loaded_from_disk = false;
    let mut failures = 0u32;
    loop {
        let config = acme.live.config();
        let wait = match &config.acme {
            None => {
                if acme.certs.has_acme() {
                    log::info!("acme: [acme] is off now; the configured certificate serves again");
                    acme.certs.clear_acme();
                    served::link(&config);
                    current = None;
                    loaded_from_disk = false;
                }
                None
            }
            Some(_) => {
                let files = AcmeFiles::new(&config.data_dir);
                if !loaded_from_disk {
                    loaded_from_disk = true;
                    current = load(&files, &acme.certs);
                    served::link(&config);
                }
                // A stop does not wait for an order in progress (its
                // answers are taken down as the order is dropped).
                let attempt = step(&acme, &config, &files, &mut current, &mut failures);
                tokio::select! {
                    wait = attempt => Some(wait),
                    _ = stopped.changed() => return,
                }
            }
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = acme.wake.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The certificate on disk, put in force; `None` when there is none.
fn load(files: &AcmeFiles, certs: &CertStore) -> Option<Issued> {
    match files.load() {
        Ok(Some(issued)) => {
            log::info!(
                "acme: certificate for {} from {} in force, valid until {}",
                issued.leaf.names.join(", "),
                files.cert_path().display(),
                crate::date::ymd(issued.leaf.not_after)
            );
            certs.set_acme(issued.key.clone());
            crate::queue::activity::activity().acme(true, "certificate in force".into());
            Some(issued)
        }
        Ok(None) => None,
        Err(e) => {
            log::warn!(
                "acme: the stored certificate in {} is not usable ({e}); ordering a new one",
                files.cert_path().display()
            );
            None
        }
    }
}

/// Orders a certificate if one is due; returns how long to wait before
/// looking again.
async fn step(
    acme: &Acme,
    config: &Config,
    files: &AcmeFiles,
    current: &mut Option<Issued>,
    failures: &mut u32,
) -> Duration {
    let settings = config.acme.as_ref().expect("step runs with [acme]");
    let names = config.certificate_names();
    let now = now_secs();
    let why = match current.as_ref() {
        None => Some("there is none yet".to_string()),
        Some(c) if !covers(c, &names) => Some(format!(
            "it does not cover {}",
            names
                .iter()
                .filter(|n| !c.leaf.names.iter().any(|m| m.eq_ignore_ascii_case(n)))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(c) if now >= renewal_due(c.leaf.not_before, c.leaf.not_after) => Some(format!(
            "a third of its lifetime is left (valid until {})",
            crate::date::ymd(c.leaf.not_after)
        )),
        Some(c) => {
            let due = renewal_due(c.leaf.not_before, c.leaf.not_after);
            return Duration::from_secs((due - now).clamp(1, 86_400) as u64);
        }
    };
    let why = why.unwrap_or_default();
    log::info!(
        "acme: ordering a certificate for {} from {} ({}), because {why}",
        names.join(", "),
        settings.directory,
        settings.challenge.name()
    );
    let attempt = order::issue(settings, &names, files, &acme.certs, &acme.tokens);
    let result = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
    };
    match result.and_then(|()| {
        files
            .load()
            .and_then(|l| l.ok_or("the new files vanished".into()))
    }) {
        Ok(issued) => {
            *failures = 0;
            acme.certs.set_acme(issued.key.clone());
            served::link(config);
            let message = format!(
                "certificate for {} issued, valid until {}",
                issued.leaf.names.join(", "),
                crate::date::ymd(issued.leaf.not_after)
            );
            log::info!("acme: {message}; new TLS sessions present it");
            crate::queue::activity::activity().acme(true, message);
            *current = Some(issued);
            run_reload_command(&settings.reload_command).await;
            Duration::from_secs(1)
        }
        Err(reason) => {
            *failures += 1;
            let wait = backoff(*failures);
            let serving = match (current.as_ref(), acme.certs.has_acme()) {
                (Some(c), true) => format!(
                    "the certificate valid until {} keeps serving",
                    crate::date::ymd(c.leaf.not_after)
                ),
                _ => "the configured (or self-signed) certificate keeps serving".into(),
            };
            let message = format!(
                "certificate for {} NOT issued: {reason}; {serving}; retrying in {}s",
                names.join(", "),
                wait.as_secs()
            );
            log::error!("acme: {message}");
            crate::queue::activity::activity().acme(false, message);
            wait
        }
    }
}

/// Runs `[acme] reload_command` (no shell), bounded in time; its failure is
/// logged and changes nothing else.
async fn run_reload_command(argv: &[String]) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true);
    let shown = argv.join(" ");
    match tokio::time::timeout(RELOAD_COMMAND_TIMEOUT, command.status()).await {
        Ok(Ok(status)) if status.success() => log::info!("acme: ran `{shown}`"),
        Ok(Ok(status)) => log::warn!("acme: `{shown}` failed: {status}"),
        Ok(Err(e)) => log::warn!("acme: cannot run `{shown}`: {e}"),
        Err(_) => log::warn!("acme: `{shown}` took longer than {RELOAD_COMMAND_TIMEOUT:?}; killed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_a_third_of_the_lifetime_left() {
        // 90 days: renew 30 days before the end.
        let day = 86_400;
        assert_eq!(renewal_due(0, 90 * day), 60 * day);
        assert_eq!(renewal_due(100, 100), 100);
    }

    #[test]
    fn backoff_doubles_up_to_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
