//! Delivery status notifications (RFC 3464): the bounce a sender gets when
//! recipients failed for good, and the warning when a message has been delayed.
//! A DSN is an ordinary queued message from the null sender `<>`, so it is
//! never bounced itself (RFC 5321 §6.1), and none is sent for a message that
//! came from `<>` (no bounce loops).

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, Live};
use crate::local::directory::{self, Resolution};
use crate::smtp::date::rfc5322;
use crate::smtp::{Envelope, Recipient, Route};

use super::body::Body;
use super::record::RcptStatus;
use super::scheduler::{Bouncer, BoxFuture};
use super::spool::{from_millis, Loaded, Spool, SpoolError};

/// What the notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Recipients failed permanently (RFC 3464 Action: failed).
    Failed,
    /// Recipients are still being tried (Action: delayed).
    Delayed,
}

/// One recipient's line in the report.
#[derive(Debug, Clone)]
pub struct Reported {
    pub original: String,
    pub final_recipient: String,
    /// The reason, usually a reply: `550 5.1.1 ...`.
    pub diagnostic: String,
}

/// Queues notifications through the spool.
pub struct Notifier {
    spool: Spool,
    live: Arc<Live>,
}

impl Notifier {
    pub fn new(spool: Spool, live: Arc<Live>) -> Notifier {
        Notifier { spool, live }
    }

    /// Queues a notification about `loaded` to its sender. Returns `Ok` without
    /// doing anything when the sender is `<>` or cannot be reached.
    pub async fn notify(
        &self,
        loaded: &Loaded,
        kind: Kind,
        recipients: Vec<Reported>,
    ) -> Result<(), SpoolError> {
        let message = &loaded.entry.message;
        let Some(sender) = message.envelope.sender.clone() else {
            log::info!("queue_id={} no notification: the sender is <>", message.id);
            return Ok(());
        };
        let config = self.live.get();
        let route = match directory::resolve(&config, Some(&sender)) {
            Resolution::Local(mut routes) if !routes.is_empty() => routes.remove(0).route,
            Resolution::Local(_) | Resolution::Unknown => {
                log::warn!(
                    "queue_id={} no notification: sender <{sender}> is not a local user",
                    message.id
                );
                return Ok(());
            }
            Resolution::NotLocal => Route::Remote(sender.clone()),
        };
        let id = self.spool.new_id();
        let now = self.spool.clock().now();
        let text = compose(&config, loaded, kind, &recipients, &id.to_string(), now);
        let envelope = Envelope {
            sender: None,
            recipients: vec![Recipient {
                original: sender.to_string(),
                route,
            }],
            eight_bit: !text.is_ascii(),
            smtputf8: !sender.is_ascii(),
        };
        self.spool
            .enqueue(
                id,
                envelope,
                Vec::new(),
                Body::from_bytes(text.into_bytes()),
            )
            .await?;
        log::info!(
            "queue_id={} sender notification queued as {id} ({})",
            message.id,
            match kind {
                Kind::Failed => "failed",
                Kind::Delayed => "delayed",
            }
        );
        Ok(())
    }
}

impl Bouncer for Notifier {
    fn bounce<'a>(
        &'a self,
        loaded: &'a Loaded,
        failed: Vec<usize>,
    ) -> BoxFuture<'a, Result<(), SpoolError>> {
        Box::pin(async move {
            let message = &loaded.entry.message;
            let reported = failed
                .into_iter()
                .map(|i| {
                    let r = &message.envelope.recipients[i];
                    let diagnostic = match &message.statuses[i] {
                        RcptStatus::Failed(reason) => reason.clone(),
                        other => format!("{other:?}"),
                    };
                    reported(r, diagnostic)
                })
                .collect();
            self.notify(loaded, Kind::Failed, reported).await
        })
    }

    fn delayed<'a>(
        &'a self,
        loaded: &'a Loaded,
        deferred: Vec<(usize, String)>,
    ) -> BoxFuture<'a, Result<(), SpoolError>> {
        Box::pin(async move {
            let message = &loaded.entry.message;
            let reported = deferred
                .into_iter()
                .map(|(i, reason)| reported(&message.envelope.recipients[i], reason))
                .collect();
            self.notify(loaded, Kind::Delayed, reported).await
        })
    }
}

/// The report line for a recipient.
pub fn reported(r: &Recipient, diagnostic: String) -> Reported {
    Reported {
        original: r.original.clone(),
        final_recipient: match &r.route {
            Route::Remote(a) => a.to_string(),
            Route::Local(user) => r
                .original
                .split('@')
                .nth(1)
                .map_or(user.clone(), |d| format!("{user}@{d}")),
        },
        diagnostic,
    }
}

/// The enhanced status code in a reason (`550 5.1.1 ...` → `5.1.1`), or the
/// generic one for the kind.
fn status_of(diagnostic: &str, kind: Kind) -> String {
    let found = diagnostic.split_whitespace().find(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match (found, kind) {
        (Some(code), Kind::Failed) if code.starts_with('5') => code.to_string(),
        (Some(code), Kind::Delayed) if code.starts_with('4') => code.to_string(),
        (_, Kind::Failed) => "5.0.0".into(),
        (_, Kind::Delayed) => "4.0.0".into(),
    }
}

/// The remote host named in a reason (`mx.example[192.0.2.1] said: ...`).
fn remote_mta(diagnostic: &str) -> Option<&str> {
    let (host, _) = diagnostic.split_once('[')?;
    (!host.is_empty() && !host.contains(' ')).then_some(host)
}

/// The whole notification message (RFC 3464 multipart/report).
pub fn compose(
    config: &Config,
    loaded: &Loaded,
    kind: Kind,
    recipients: &[Reported],
    id: &str,
    now: SystemTime,
) -> String {
    let message = &loaded.entry.message;
    let host = &config.hostname;
    let sender = message
        .envelope
        .sender
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let boundary = format!("{id}/{host}");
    let (subject, action, intro) = match kind {
        Kind::Failed => (
            "Undelivered Mail Returned to Sender",
            "failed",
            "Your message could not be delivered to one or more recipients.\r\n\
             It has not been delivered to them and will not be tried again.",
        ),
        Kind::Delayed => (
            "Delayed Mail (still being retried)",
            "delayed",
            "Your message has not been delivered to one or more recipients yet.\r\n\
             The mail system will keep trying; you need not send it again.",
        ),
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", rfc5322(now)));
    m.push_str(&format!("Message-ID: <{id}.dsn@{host}>\r\n"));
    // RFC 3834: machines must not answer this automatically.
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated delivery status notification.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    m.push_str(&format!(
        "This is the mail system at {host}.\r\n\r\n{intro}\r\n\r\n"
    ));
    for r in recipients {
        m.push_str(&format!("<{}>: {}\r\n", r.original, r.diagnostic));
    }
    m.push_str("\r\nThe headers of your message follow at the end.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {host}\r\n"));
    m.push_str(&format!("X-Tern-Queue-ID: {}\r\n", message.id));
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322(from_millis(message.received_at))
    ));
    for r in recipients {
        m.push_str("\r\n");
        if r.original != r.final_recipient {
            m.push_str(&format!("Original-Recipient: rfc822; {}\r\n", r.original));
        }
        m.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            r.final_recipient
        ));
        m.push_str(&format!("Action: {action}\r\n"));
        m.push_str(&format!("Status: {}\r\n", status_of(&r.diagnostic, kind)));
        if let Some(mta) = remote_mta(&r.diagnostic) {
            m.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
        }
        m.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\n",
            one_line(&r.diagnostic)
        ));
        m.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322(now)));
        if kind == Kind::Delayed {
            let until = from_millis(message.received_at) + config.queue.lifetime;
            m.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322(until)));
        }
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let headers = crate::message::header_section(&loaded.content);
    m.push_str(&String::from_utf8_lossy(headers));
    if !headers.ends_with(b"\r\n") {
        m.push_str("\r\n");
    }
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    m
}

/// Keeps a reason on one header line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .take(900)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_the_reason() {
        assert_eq!(
            status_of("mx[1.2.3.4] said: 550 5.1.1 No such user", Kind::Failed),
            "5.1.1"
        );
        assert_eq!(
            status_of(
                "delivery time expired; last error: 451 4.3.0 later",
                Kind::Failed
            ),
            "5.0.0"
        );
        assert_eq!(status_of("451 4.7.1 greylisted", Kind::Delayed), "4.7.1");
        assert_eq!(status_of("connection refused", Kind::Delayed), "4.0.0");
        assert_eq!(status_of("version 1.2.3 is nice", Kind::Failed), "5.0.0");
    }

    #[test]
    fn remote_mta_is_named_only_when_known() {
        assert_eq!(
            remote_mta("mx.example[192.0.2.1] said: 550 no"),
            Some("mx.example")
        );
        assert_eq!(remote_mta("556 5.1.10 Domain x accepts no mail"), None);
    }

    #[test]
    fn headers_only_are_quoted() {
        assert_eq!(
            crate::message::header_section(b"Subject: x\r\nFrom: y\r\n\r\nsecret body\r\n"),
            b"Subject: x\r\nFrom: y\r\n"
        );
    }
}
