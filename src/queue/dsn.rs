//! Delivery status notifications (RFC 3464): the bounce a sender gets when
//! recipients failed for good, and the warning when a message has been delayed.
//! A DSN is an ordinary queued message from the null sender `<>`, so it is
//! never bounced itself (RFC 5321 §6.1), and none is sent for a message that
//! came from `<>` (no bounce loops).
//!
//! `Status:`, `Remote-MTA:` and `Diagnostic-Code:` come from each
//! recipient's typed [`Diagnostic`].
//!
//! The original message's header section is quoted (text/rfc822-headers, RFC 6522,
//! rather than the whole message), at most
//! [`MAX_QUOTED_HEADERS`] of it, cut at a line boundary; the report says so
//! when it was cut.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::date::rfc5322;
use crate::live::Live;
use crate::smtp::{Address, Envelope, Recipient, Route};

use super::body::Body;
use super::diagnostic::Diagnostic;
use super::record::RcptStatus;
use super::spool::{from_millis, Loaded, Spool, SpoolError};

/// At most this much of the original header section is quoted in a
/// notification: real header sections are a few KiB, and a stranger's
/// 200 KiB one is not sent back whole (nor a message with no empty line,
/// whose "header section" is all of it).
pub const MAX_QUOTED_HEADERS: usize = 64 << 10;

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
    /// The reason, usually the remote's reply.
    pub diagnostic: Diagnostic,
}

/// Where mail to a sender goes, by the recipient directory's rule: a local
/// route, a remote one, or `None` when the address is in a local domain and
/// nobody here has it. `daemon.rs` supplies it: the directory is not the
/// queue's.
pub type SenderRoute = Arc<dyn Fn(&Config, &Address) -> Option<Route> + Send + Sync>;

/// Queues notifications through the spool.
pub struct Notifier {
    spool: Spool,
    live: Arc<Live>,
    route: SenderRoute,
}

impl Notifier {
    /// Notifications queued in `spool`, routed to their senders by `route`.
    pub fn new(spool: Spool, live: Arc<Live>, route: SenderRoute) -> Notifier {
        Notifier { spool, live, route }
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
        let config = self.live.config();
        let Some(route) = (self.route)(&config, &sender) else {
            log::warn!(
                "queue_id={} no notification: sender <{sender}> is not a local user",
                message.id
            );
            return Ok(());
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

impl Notifier {
    /// Queues the bounce for `loaded`, whose recipients at `failed` failed
    /// (their statuses hold the reasons); returns once it is durable.
    pub async fn bounce(&self, loaded: &Loaded, failed: Vec<usize>) -> Result<(), SpoolError> {
        let message = &loaded.entry.message;
        let reported = failed
            .into_iter()
            .filter_map(|i| match &message.statuses[i] {
                RcptStatus::Failed(reason) => {
                    Some(reported(&message.envelope.recipients[i], reason.clone()))
                }
                _ => None,
            })
            .collect();
        self.notify(loaded, Kind::Failed, reported).await
    }

    /// Queues the "still trying" notice for the recipients at the given
    /// indices, with their last reasons.
    pub async fn delayed(
        &self,
        loaded: &Loaded,
        deferred: Vec<(usize, Diagnostic)>,
    ) -> Result<(), SpoolError> {
        let message = &loaded.entry.message;
        let reported = deferred
            .into_iter()
            .map(|(i, reason)| reported(&message.envelope.recipients[i], reason))
            .collect();
        self.notify(loaded, Kind::Delayed, reported).await
    }
}

/// The report line for a recipient.
pub fn reported(r: &Recipient, diagnostic: Diagnostic) -> Reported {
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
    // RFC 3464 §2.3.4: the class of each Status matches the Action.
    let class = match kind {
        Kind::Failed => 5,
        Kind::Delayed => 4,
    };
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
    let all_headers = crate::message::header_section(&loaded.content);
    let quoted = quoted_headers(all_headers);
    if quoted.len() < all_headers.len() {
        m.push_str(&format!(
            "\r\nThe headers of your message follow at the end, truncated: the first\r\n\
             {} of its {} bytes of headers are quoted, cut at the end of a line.\r\n\r\n",
            quoted.len(),
            all_headers.len()
        ));
    } else {
        m.push_str("\r\nThe headers of your message follow at the end.\r\n\r\n");
    }
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
        m.push_str(&format!("Status: {}\r\n", r.diagnostic.status(class)));
        if let Some(remote) = &r.diagnostic.remote {
            m.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(&remote.host)));
        }
        m.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\n",
            one_line(&r.diagnostic.to_string())
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
    m.push_str(&String::from_utf8_lossy(quoted));
    if !quoted.ends_with(b"\r\n") {
        m.push_str("\r\n");
    }
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    m
}

/// The part of header section `headers` a notification quotes: all of it up
/// to [`MAX_QUOTED_HEADERS`] octets, else as many whole lines as fit (a cut
/// never splits a line, so nor a UTF-8 sequence; a first line longer than
/// the cap leaves nothing).
fn quoted_headers(headers: &[u8]) -> &[u8] {
    if headers.len() <= MAX_QUOTED_HEADERS {
        return headers;
    }
    let window = &headers[..MAX_QUOTED_HEADERS];
    match window.iter().rposition(|&b| b == b'\n') {
        Some(i) => &headers[..=i],
        None => &[],
    }
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

    /// A header section of over 200 KiB: 2,100 fields of 100 octets.
    fn huge_headers() -> Vec<u8> {
        let mut h = b"From: bob@example.org\r\nSubject: big\r\n".to_vec();
        for i in 0..2100 {
            h.extend_from_slice(format!("X-Filler-{i:04}: {}\r\n", "y".repeat(82)).as_bytes());
        }
        assert!(h.len() > 200 << 10);
        h
    }

    #[test]
    fn quoted_headers_are_capped_at_a_line_boundary() {
        let small = b"Subject: x\r\nFrom: y\r\n";
        assert_eq!(quoted_headers(small), small);
        let huge = huge_headers();
        let quoted = quoted_headers(&huge);
        assert!(quoted.len() <= MAX_QUOTED_HEADERS);
        assert!(quoted.len() > MAX_QUOTED_HEADERS - 100);
        assert!(quoted.ends_with(b"\r\n"));
        assert!(huge.starts_with(quoted));
        assert!(
            huge[quoted.len()..].starts_with(b"X-Filler-"),
            "cut between lines"
        );
        // One line longer than the cap: nothing of it.
        let one = format!("X: {}\r\n", "z".repeat(MAX_QUOTED_HEADERS));
        assert_eq!(quoted_headers(one.as_bytes()), b"");
    }

    #[tokio::test]
    async fn a_bounce_quotes_at_most_64_kib_of_headers_and_says_so() {
        use crate::smtp::Address;

        let (dir, spool) = crate::queue::spool::scratch();
        let config = Config::parse(
            &format!(
                "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\ndomains = [\"example.org\"]\n\
                 [[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n[[user]]\nname = \"bob\"\n",
                dir.path().display()
            ),
            std::path::Path::new("tern.toml"),
        )
        .unwrap();
        let mut headers = huge_headers();
        let mut content = headers.clone();
        content.extend_from_slice(b"\r\nthe body\r\n");
        let envelope = Envelope {
            sender: Some(Address::parse("bob@example.org").unwrap()),
            recipients: vec![Recipient {
                original: "far@remote.example".into(),
                route: Route::Remote(Address::parse("far@remote.example").unwrap()),
            }],
            eight_bit: false,
            smtputf8: false,
        };
        let id = spool.new_id();
        spool
            .enqueue(id, envelope, Vec::new(), Body::from_bytes(content))
            .await
            .unwrap();
        let loaded = spool.load(id).unwrap();
        let report = vec![reported(
            &loaded.entry.message.envelope.recipients[0],
            Diagnostic::from_remote(
                "mx",
                "192.0.2.1".parse().unwrap(),
                550,
                Some(crate::smtp::EnhancedCode(5, 1, 1)),
                "no",
            ),
        )];
        let text = compose(
            &config,
            &loaded,
            Kind::Failed,
            &report,
            "DSN1",
            SystemTime::now(),
        );

        assert!(text.len() < MAX_QUOTED_HEADERS + 4096, "{}", text.len());
        let quoted_len = quoted_headers(&headers).len();
        assert!(
            text.contains(&format!(
                "The headers of your message follow at the end, truncated: the first\r\n\
                 {quoted_len} of its {} bytes of headers are quoted, cut at the end of a line.\r\n",
                headers.len()
            )),
            "{}",
            &text[..2000]
        );
        let part = "Content-Type: text/rfc822-headers\r\n\r\n";
        let start = text.find(part).unwrap() + part.len();
        let end = text.rfind("\r\n--DSN1/mx.example.org--\r\n").unwrap();
        headers.truncate(quoted_len);
        assert_eq!(&text.as_bytes()[start..end], &headers[..]);
        assert!(!text.contains("the body"));

        // A small header section is quoted whole, with no such note.
        let id = spool.new_id();
        let envelope = loaded.entry.message.envelope.clone();
        let small = b"From: bob@example.org\r\nSubject: small\r\n\r\nbody\r\n".to_vec();
        spool
            .enqueue(id, envelope, Vec::new(), Body::from_bytes(small))
            .await
            .unwrap();
        let loaded = spool.load(id).unwrap();
        let text = compose(
            &config,
            &loaded,
            Kind::Failed,
            &report,
            "DSN2",
            SystemTime::now(),
        );
        assert!(text.contains("The headers of your message follow at the end.\r\n"));
        assert!(!text.contains("truncated"));
        assert!(text.contains(&format!(
            "{part}From: bob@example.org\r\nSubject: small\r\n\r\n--DSN2/mx.example.org--\r\n"
        )));
    }

    #[test]
    fn headers_only_are_quoted() {
        assert_eq!(
            crate::message::header_section(b"Subject: x\r\nFrom: y\r\n\r\nsecret body\r\n"),
            b"Subject: x\r\nFrom: y\r\n"
        );
    }
}
