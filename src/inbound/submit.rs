//! Local submission: what `sendmail` on this machine hands the daemon over
//! the control socket (root, group tern) or the submission socket (any local
//! user). Its uid goes into `Received:` and the log.
//!
//! A privileged [`Caller`] (root, the daemon's own user or group: whoever
//! may administer tern anyway) is trusted like an authenticated user: any
//! sender, any recipient, relaying allowed, DKIM-signed. Any other local
//! user is held to the sender rules (DESIGN invariant 7, [`super::senders`]):
//! its envelope sender and every From:/Sender: mailbox must be
//! `<login>@<hostname>` or mapped to its login in `[local_senders]`, only
//! mail whose From: is mapped is signed, it may name at most
//! `limits.recipients` recipients and queue at most
//! `limits.local_messages_per_hour` messages an hour. Recipients at our
//! domains must exist, for everyone. With `[spam] scan_authenticated`, the
//! spam filter sees every local submission too.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::live::Live;
use crate::queue::{Body, QueueId, Spool, SpoolError};
use crate::routing::{self, Relay};
use crate::smtp::{Address, Envelope, Recipient};

use super::accept::{accept, Checked, Origin};
use super::senders::{self, AuthorError, Sender};
use super::spam;

/// Why a local submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no such user here: {}", .0.join(", "))]
    NoSuchUser(Vec<String>),
    #[error("bad address {0:?}")]
    BadAddress(String),
    /// The envelope sender is not one the caller may use.
    #[error(
        "envelope sender <{sender}> is not one that Unix user {login} may send as: it may use \
         {login}@{hostname}, and what [local_senders] in tern.toml maps to {login}"
    )]
    SenderRefused {
        sender: String,
        login: String,
        hostname: String,
    },
    /// The caller's uid has no name: nothing can be mapped to it.
    #[error("uid {0} has no entry in /etc/passwd; it may not send mail")]
    UnknownUid(u32),
    /// From: or Sender: refused, or unreadable.
    #[error("{0}")]
    Author(#[from] AuthorError),
    #[error("{given} recipients; the limit is {limit} (limits.recipients)")]
    TooManyRecipients { given: usize, limit: usize },
    #[error(
        "Unix user {login} queued {limit} messages in the last hour \
         (limits.local_messages_per_hour); try again later"
    )]
    RateLimited { login: String, limit: usize },
    #[error("the message was not queued: {0}")]
    Spool(#[from] SpoolError),
    /// The spam filter refused it (`[spam] scan_authenticated`).
    #[error("refused by the spam filter: {0}")]
    Spam(String),
    /// The spam filter said later, or did not answer (`on_failure =
    /// "tempfail"`).
    #[error("deferred by the spam filter: {0}; try again later")]
    SpamDeferred(String),
}

/// Who handed a message over, as the socket tells (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// `None` only if the kernel would not say.
    pub uid: Option<u32>,
    /// Root, or the daemon's own user or group: no sender rules.
    pub privileged: bool,
}

/// How many messages each Unix user queued in the last hour, to hold it to
/// `limits.local_messages_per_hour`. Holds at most that many times per uid
/// that sent within the hour.
#[derive(Debug, Default)]
struct LocalRates {
    sent: HashMap<u32, VecDeque<SystemTime>>,
}

/// The window of [`LocalRates`].
const RATE_WINDOW: Duration = Duration::from_secs(3600);

impl LocalRates {
    /// Counts one message of `uid` at `now`, unless it already sent `limit`
    /// within the hour before (then false).
    fn take(&mut self, uid: u32, now: SystemTime, limit: usize) -> bool {
        let old = |t: &SystemTime| now.duration_since(*t).is_ok_and(|d| d >= RATE_WINDOW);
        self.sent.retain(|_, times| {
            while times.front().is_some_and(old) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = self.sent.entry(uid).or_default();
        if times.len() >= limit {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// Queues messages from local programs.
pub struct Submitter {
    live: Arc<Live>,
    spool: Spool,
    rates: Mutex<LocalRates>,
}

/// An address as sendmail users write it: `<a@b>` or `a@b`; a bare name is
/// put at `domain`.
fn address(text: &str, domain: &str) -> Result<Address, SubmitError> {
    let t = text.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    let full = if t.contains('@') {
        t.to_string()
    } else {
        format!("{t}@{domain}")
    };
    Address::parse(&full).map_err(|_| SubmitError::BadAddress(text.to_string()))
}

impl Submitter {
    pub fn new(live: Arc<Live>, spool: Spool) -> Submitter {
        Submitter {
            live,
            spool,
            rates: Mutex::new(LocalRates::default()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.config()
    }

    /// The largest message accepted.
    pub fn size_limit(&self) -> u64 {
        self.live.config().limits.message_size
    }

    /// Where a large body is spilled while it arrives.
    pub fn tmp_dir(&self) -> PathBuf {
        self.spool.tmp_dir()
    }

    /// Queues `body` (a whole message, CRLF line ends) from `caller`.
    pub async fn submit(
        &self,
        sender: &str,
        recipients: &[String],
        mut body: Body,
        caller: Caller,
    ) -> Result<QueueId, SubmitError> {
        let snapshot = self.live.get();
        let config = &snapshot.config;
        // The free-space reserve, as at MAIL on port 25: sendmail exits 75.
        if let Err(shortage) = self.spool.free_space().check(config.limits.free_space) {
            let full = std::io::Error::new(std::io::ErrorKind::StorageFull, shortage.to_string());
            return Err(SubmitError::Spool(SpoolError::Io(full)));
        }
        let uid = caller.uid.unwrap_or(u32::MAX);
        let user = senders::login_of(uid);
        // The login the sender rules apply to; `None` for a privileged caller.
        let restricted = match (&user, caller.privileged) {
            (_, true) => None,
            (Some(login), false) => Some(login.as_str()),
            (None, false) => return Err(SubmitError::UnknownUid(uid)),
        };
        let limit = config.limits.recipients;
        if restricted.is_some() && recipients.len() > limit {
            return Err(SubmitError::TooManyRecipients {
                given: recipients.len(),
                limit,
            });
        }
        // A bare sender is a login here, as the default `<login>@<hostname>`.
        let sender = match sender.trim() {
            "" | "<>" => None,
            s => Some(address(s, &config.hostname)?),
        };
        if let Some(login) = restricted {
            if !senders::may_use(config, Sender::Local(login), sender.as_ref()) {
                return Err(SubmitError::SenderRefused {
                    sender: sender.map(|s| s.to_string()).unwrap_or_default(),
                    login: login.to_string(),
                    hostname: config.hostname.clone(),
                });
            }
        }
        let routed = route(config, recipients)?;
        let sign = match restricted {
            None => true,
            Some(login) => {
                let from = senders::check_message(config, Sender::Local(login), &body).await?;
                self.count_message(config, uid, login)?;
                // Signed only when every author is mapped to this login:
                // `<login>@<hostname>` is not ours to vouch for.
                from.iter().all(|a| senders::local_mapped(config, login, a))
            }
        };
        let smtputf8 = !sender.as_ref().is_none_or(Address::is_ascii)
            || routed.iter().any(|r| !r.original.is_ascii());
        let envelope = Envelope {
            sender,
            recipients: routed,
            eight_bit: !body_is_ascii(&body),
            smtputf8,
        };
        let mut checked = Checked::default();
        if let Some(filter) = config.spam.as_ref().filter(|f| f.scan_authenticated) {
            let id = self.spool.new_id();
            let request = spam::local_request(&envelope, &config.hostname, id, user.as_deref());
            let peer = format!("local uid={uid}");
            let tmp_dir = self.spool.tmp_dir();
            let scanned;
            (body, scanned) = spam::scan(filter, request, body, id, &peer, &tmp_dir)
                .await
                .map_err(|reply| match reply.code {
                    500.. => SubmitError::Spam(reply.text.into_owned()),
                    _ => SubmitError::SpamDeferred(reply.text.into_owned()),
                })?;
            checked = Checked {
                header: scanned.header,
                folder: scanned.folder,
                id: Some(id),
            };
        }
        let origin = Origin::Local { uid, user };
        Ok(accept(
            &self.spool,
            &snapshot,
            envelope,
            origin,
            body,
            sign,
            checked,
        )
        .await?)
    }

    /// Counts a message against `limits.local_messages_per_hour`.
    fn count_message(&self, config: &Config, uid: u32, login: &str) -> Result<(), SubmitError> {
        let limit = config.limits.local_messages_per_hour;
        let now = self.spool.clock().now();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.take(uid, now, limit) {
            Ok(())
        } else {
            Err(SubmitError::RateLimited {
                login: login.to_string(),
                limit,
            })
        }
    }
}

/// The routes of `recipients`, deduplicated; every one at our domains must
/// exist. A bare name is a user or alias at our first domain, or else
/// system mail at the hostname (`root`, a login: cron writes to them).
fn route(config: &Config, recipients: &[String]) -> Result<Vec<Recipient>, SubmitError> {
    let first = config.domains[0].as_str();
    let mut routed: Vec<Recipient> = Vec::new();
    let mut unknown = Vec::new();
    for text in recipients {
        let to = address(text, first)?;
        // Programs on this machine may relay: the sender rules hold them.
        let mut found = routing::route(config, Some(&to), Relay::Allowed);
        if found.is_err() && !text.contains('@') {
            let system = address(text, &config.hostname)?;
            found = routing::route(config, Some(&system), Relay::Allowed);
        }
        match found {
            Ok(found) => routing::add(&mut routed, found),
            Err(_) => unknown.push(to.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(SubmitError::NoSuchUser(unknown));
    }
    if routed.is_empty() {
        return Err(SubmitError::BadAddress("(no recipients)".into()));
    }
    Ok(routed)
}

/// Whether a body is 7-bit (a spilled one is read back to check).
fn body_is_ascii(body: &Body) -> bool {
    use std::io::Read;
    let Ok(mut reader) = body.reader() else {
        return false;
    };
    let mut buf = [0u8; 64 << 10];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if buf[..n].is_ascii() => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_is_an_hour_per_uid() {
        let mut rates = LocalRates::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(rates.take(1000, at(0), 2));
        assert!(rates.take(1000, at(10), 2));
        assert!(!rates.take(1000, at(20), 2), "third within the hour");
        assert!(
            rates.take(1001, at(20), 2),
            "another uid has its own budget"
        );
        assert!(!rates.take(1000, at(3599), 2));
        assert!(
            rates.take(1000, at(3600), 2),
            "the first has left the window"
        );
        assert!(!rates.take(1000, at(3605), 2));
        // Nothing older than the window is kept.
        assert!(rates.take(1000, at(100_000), 2));
        assert_eq!(rates.sent.len(), 1);
        assert_eq!(rates.sent[&1000].len(), 1);
    }
}
