//! Local submission: what `sendmail` on this machine hands the daemon over
//! the control socket (root, group tern) or the submission socket (any local
//! user). A local caller is trusted like an authenticated user: any sender,
//! any recipient, relaying allowed, DKIM-signed; its uid goes into
//! `Received:` and the log. Recipients at our domains must exist.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Live;
use crate::dkim::LiveSigner;
use crate::local::directory::{self, Resolution};
use crate::queue::{Body, QueueId, Spool, SpoolError};
use crate::smtp::{Address, Envelope, Recipient, Route};

use super::accept::{accept, Origin};

/// Why a local submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no such user here: {}", .0.join(", "))]
    NoSuchUser(Vec<String>),
    #[error("bad address {0:?}")]
    BadAddress(String),
    #[error("the message was not queued: {0}")]
    Spool(#[from] SpoolError),
}

/// Queues messages from local programs.
pub struct Submitter {
    live: Arc<Live>,
    spool: Spool,
    signer: Arc<LiveSigner>,
}

/// An address as sendmail users write it: `<a@b>` or `a@b`; a bare name is
/// a local user at our first domain.
fn address(text: &str, first_domain: &str) -> Result<Address, SubmitError> {
    let t = text.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    let full = if t.contains('@') {
        t.to_string()
    } else {
        format!("{t}@{first_domain}")
    };
    Address::parse(&full).map_err(|_| SubmitError::BadAddress(text.to_string()))
}

impl Submitter {
    pub fn new(live: Arc<Live>, spool: Spool, signer: Arc<LiveSigner>) -> Submitter {
        Submitter {
            live,
            spool,
            signer,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.live.get()
    }

    /// The largest message accepted.
    pub fn size_limit(&self) -> u64 {
        self.live.get().limits.message_size
    }

    /// Where a large body is spilled while it arrives.
    pub fn tmp_dir(&self) -> PathBuf {
        self.spool.tmp_dir()
    }

    /// Queues `body` (a whole message, CRLF line ends) from Unix user `uid`.
    pub async fn submit(
        &self,
        sender: &str,
        recipients: &[String],
        body: Body,
        uid: Option<u32>,
    ) -> Result<QueueId, SubmitError> {
        let config = self.live.get();
        // The free-space reserve, as at MAIL on port 25: sendmail exits 75.
        if let Err(shortage) = self.spool.free_space().check(config.limits.free_space) {
            let full = std::io::Error::new(std::io::ErrorKind::StorageFull, shortage.to_string());
            return Err(SubmitError::Spool(SpoolError::Io(full)));
        }
        let first = config.domains[0].as_str();
        let sender = match sender.trim() {
            "" | "<>" => None,
            s => Some(address(s, first)?),
        };
        let mut routed: Vec<Recipient> = Vec::new();
        let mut unknown = Vec::new();
        for text in recipients {
            let to = address(text, first)?;
            let found = match directory::resolve(&config, Some(&to)) {
                Resolution::Local(rs) => rs,
                Resolution::Unknown => {
                    unknown.push(to.to_string());
                    continue;
                }
                Resolution::NotLocal => vec![Recipient {
                    original: to.to_string(),
                    route: Route::Remote(to),
                }],
            };
            for r in found {
                if !routed.iter().any(|have| have.route == r.route) {
                    routed.push(r);
                }
            }
        }
        if !unknown.is_empty() {
            return Err(SubmitError::NoSuchUser(unknown));
        }
        if routed.is_empty() {
            return Err(SubmitError::BadAddress("(no recipients)".into()));
        }
        let smtputf8 = !sender.as_ref().is_none_or(Address::is_ascii)
            || routed.iter().any(|r| !r.original.is_ascii());
        let envelope = Envelope {
            sender,
            recipients: routed,
            eight_bit: !body_is_ascii(&body),
            smtputf8,
        };
        let uid = uid.unwrap_or(u32::MAX);
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let origin = Origin::Local { uid, user };
        Ok(accept(
            &self.spool,
            &config,
            self.signer.get().as_ref(),
            envelope,
            origin,
            body,
            true,
        )
        .await?)
    }
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
