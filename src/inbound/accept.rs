//! Accepting a message into the queue, the same way whichever door it came
//! through (SMTP on 25/587/465, or local `sendmail` over the control socket):
//! assign the queue id, write our `Received:` header, DKIM-sign what our own
//! users submit (once, before spooling), and make it durable. Only when
//! [`accept`] returns `Ok` may the sender be told the message is queued.

use std::sync::Arc;
use std::time::SystemTime;

use crate::date::rfc5322;
use crate::dkim::Signer;
use crate::live::Snapshot;
use crate::queue::{Body, Folder, QueueId, Spool, SpoolError};
use crate::smtp::envelope::{local_received_header, received_header};
use crate::smtp::{Envelope, Trace};

/// Where a message came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An SMTP session. `show_peer`: put the client's address (and its login,
    /// if any) in `Received:` — yes on port 25, no for submission (privacy:
    /// it would say where the owner is).
    Smtp { trace: Trace, show_peer: bool },
    /// Local `sendmail`, run by this Unix user.
    Local { uid: u32, user: Option<String> },
}

impl Origin {
    /// For the log line: `peer=...` or `uid=...`.
    fn describe(&self) -> String {
        match self {
            Origin::Smtp { trace, .. } => format!("peer={}", trace.peer),
            Origin::Local { uid, .. } => format!("uid={uid}"),
        }
    }

    /// The log's structured `peer` field: the client's address, or
    /// `local uid=N` for sendmail.
    fn peer(&self) -> String {
        match self {
            Origin::Smtp { trace, .. } => trace.peer.to_string(),
            Origin::Local { uid, .. } => format!("local uid={uid}"),
        }
    }
}

/// What the checks of mail from another server ([`super::verify`]) add at
/// acceptance; nothing for our own users' mail.
#[derive(Debug, Default)]
pub struct Checked {
    /// The `X-Spam-*` fields and the `Authentication-Results:` field
    /// (CRLF-terminated), put above our `Received:` (RFC 8601 §5); empty
    /// for none.
    pub header: String,
    /// Where local recipients' copies go.
    pub folder: Folder,
    /// The queue id, when the checks needed it before acceptance (rspamd
    /// logs it); `None`: [`accept`] assigns one.
    pub id: Option<QueueId>,
}

/// Queues a message under the settings of `snapshot`. `sign`: DKIM-sign it
/// (when its From: is one of our signing domains). Returns the queue id once
/// the message is durable. `checked`: the verdict on mail from another
/// server.
pub async fn accept(
    spool: &Spool,
    snapshot: &Snapshot,
    envelope: Envelope,
    origin: Origin,
    body: Body,
    sign: bool,
    checked: Checked,
) -> Result<QueueId, SpoolError> {
    let (config, signer) = (&snapshot.config, snapshot.signer.as_ref());
    let id = checked.id.unwrap_or_else(|| spool.new_id());
    let now = spool.clock().now();
    let date = rfc5322(now);
    let single = match envelope.recipients.as_slice() {
        [only] => Some(only.original.as_str()),
        _ => None,
    };
    let received = match &origin {
        Origin::Smtp { trace, show_peer } => {
            let mut trace = trace.clone();
            if !show_peer {
                trace.authenticated = None;
            }
            received_header(
                &trace,
                &config.hostname,
                &id.to_string(),
                single,
                &date,
                *show_peer,
            )
        }
        Origin::Local { uid, user } => local_received_header(
            &config.hostname,
            *uid,
            user.as_deref(),
            &id.to_string(),
            single,
            &date,
        ),
    };
    let who = origin.describe();
    // RFC 6376 §5.6: the signatures go on top, above our Received:, as the
    // newest trace fields; neither is in the other's h=.
    let mut prepend = match (signer, sign) {
        (Some(signer), true) => dkim_signatures(signer, &body, now, id, &who).await,
        _ => Vec::new(),
    };
    prepend.extend_from_slice(checked.header.as_bytes());
    prepend.extend_from_slice(received.as_bytes());
    let sender = envelope
        .sender
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let rcpts = envelope.recipients.len();
    let size = body.len;
    let folder = checked.folder;
    spool
        .enqueue_into(id, envelope, prepend, body, folder)
        .await?;
    let peer = origin.peer();
    log::info!(
        queue_id:% = id, peer = peer.as_str(), action = "queued";
        "queue_id={id} {who} from=<{sender}> size={size} nrcpt={rcpts} status=queued{}",
        if folder == Folder::Inbox { String::new() } else { format!(" folder={}", folder.name()) }
    );
    Ok(id)
}

/// The `DKIM-Signature:` fields for a submitted message, or nothing when it
/// is not ours to sign (its From: is not at a signing domain; the signer
/// logs why).
///
/// A failure to sign never loses the message: it is logged as an error and
/// the message is queued unsigned. Failures are either I/O on the spilled
/// body (which the spool is about to read too, and would then refuse) or
/// would repeat on every retry (a header section over the limit), so a 451
/// would only move the failure to the client's outbox; an unsigned message
/// still reaches local recipients, and one refused for its missing
/// signature comes back to the sender as a bounce.
async fn dkim_signatures(
    signer: &Arc<Signer>,
    body: &Body,
    now: SystemTime,
    id: QueueId,
    who: &str,
) -> Vec<u8> {
    let reader = match body.reader() {
        Ok(reader) => reader,
        Err(e) => {
            log::error!("queue_id={id} {who} dkim=fail: cannot read the body to sign it, queued UNSIGNED: {e}");
            return Vec::new();
        }
    };
    let signer = signer.clone();
    // Hashing a large body and the RSA signature are CPU work: off the
    // async threads.
    match tokio::task::spawn_blocking(move || signer.sign_reader(reader, now)).await {
        Ok(Ok(Some(headers))) => {
            log::info!("queue_id={id} {who} dkim=signed");
            headers
        }
        Ok(Ok(None)) => {
            log::info!("queue_id={id} {who} dkim=none");
            Vec::new()
        }
        Ok(Err(e)) => {
            log::error!("queue_id={id} {who} dkim=fail: {e}; queued UNSIGNED");
            Vec::new()
        }
        Err(e) => {
            log::error!(
                "queue_id={id} {who} dkim=fail: the signing task failed: {e}; queued UNSIGNED"
            );
            Vec::new()
        }
    }
}
