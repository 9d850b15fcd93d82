//! The spam filter: after the data of a message from another server (and,
//! with `[spam] scan_authenticated`, of a logged-in user's or one from
//! local sendmail), before the
//! reply, rspamd ([`super::rspamd`]) is asked about it and its action becomes
//! the reply or the folder: `reject` → 550 5.7.1 with rspamd's message,
//! `soft reject`/`greylist` → 451 4.7.1, `add header`/`rewrite subject` →
//! the recipients' Junk folder, `no action` → the inbox. Either way the
//! message gets `X-Spam-*` fields with the score and the symbols. When rspamd
//! cannot answer, `[spam] on_failure` decides: deliver (with a warning) or
//! 451 4.7.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::config::{Role, SpamFailure, SpamFilter};
use crate::queue::{Body, Folder, QueueId};
use crate::smtp::{Envelope, Reply, Transaction};

use super::auth_results;
use super::rspamd::{self, Action, Verdict};

/// At most this many symbols are listed in `X-Spam-Status` (the heaviest).
const MAX_SYMBOLS: usize = 40;
/// The longest symbol name written; rspamd's are short capitals.
const MAX_SYMBOL_NAME: usize = 64;
/// The longest text of rspamd's taken into a reply.
const MAX_REPLY_TEXT: usize = 200;

/// The filter to scan this session's mail with, if any: anonymous clients
/// of the mx listeners; logged-in users only with `scan_authenticated`.
pub fn applies<'a>(
    filter: Option<&'a SpamFilter>,
    role: Role,
    login: Option<&str>,
) -> Option<&'a SpamFilter> {
    let filter = filter?;
    match login {
        None => (role == Role::Mx).then_some(filter),
        Some(_) => filter.scan_authenticated.then_some(filter),
    }
}

/// What the filter adds to an accepted message.
#[derive(Debug, Default)]
pub struct Scanned {
    /// `X-Spam-*` fields, CRLF-terminated; empty when rspamd did not answer.
    pub header: String,
    pub folder: Folder,
}

/// What rspamd is told about an SMTP transaction `tx` from `peer`, to be
/// queued as `id`.
pub fn smtp_request(
    tx: &Transaction,
    hostname: &str,
    id: QueueId,
    peer: SocketAddr,
) -> rspamd::Request {
    rspamd::Request {
        ip: peer.ip(),
        helo: tx.trace.helo.clone(),
        from: tx
            .envelope
            .sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        rcpts: tx
            .envelope
            .recipients
            .iter()
            .map(|r| r.original.clone())
            .collect(),
        hostname: hostname.to_string(),
        user: tx.trace.authenticated.clone(),
        queue_id: id.to_string(),
    }
}

/// What rspamd is told about a local sendmail submission: it comes from
/// this machine (127.0.0.1, HELO `localhost`), by the Unix login `user`.
pub fn local_request(
    envelope: &Envelope,
    hostname: &str,
    id: QueueId,
    user: Option<&str>,
) -> rspamd::Request {
    rspamd::Request {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "localhost".into(),
        from: envelope
            .sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        rcpts: envelope
            .recipients
            .iter()
            .map(|r| r.original.clone())
            .collect(),
        hostname: hostname.to_string(),
        user: user.map(str::to_owned),
        queue_id: id.to_string(),
    }
}

/// Scans `body` (to be queued as `id`, described by `request`; `peer` for
/// the log: the client's address, or `local uid=N`); `Err` is the refusal.
/// Logs the verdict. An accepted body comes back without `X-Spam-*` fields
/// of its own (a copy in `tmp_dir` when it had some): only ours may speak
/// for the filter.
pub async fn scan(
    filter: &SpamFilter,
    request: rspamd::Request,
    body: Body,
    id: QueueId,
    peer: &str,
    tmp_dir: &Path,
) -> Result<(Body, Scanned), Reply> {
    let scanned = verdict(filter, request, &body, id, peer).await?;
    let tmp_dir = tmp_dir.to_path_buf();
    let stripped =
        tokio::task::spawn_blocking(move || auth_results::strip_spam_fields(body, &tmp_dir)).await;
    match stripped {
        Ok(Ok((body, 0))) => Ok((body, scanned)),
        Ok(Ok((body, n))) => {
            log::info!("queue_id={id} peer={peer} removed {n} X-Spam field(s) the message brought");
            Ok((body, scanned))
        }
        Ok(Err(e)) => {
            log::error!("queue_id={id} peer={peer} cannot rewrite the message: {e}");
            Err(Reply::QUEUE_FAILED)
        }
        Err(e) => {
            log::error!("queue_id={id} peer={peer} the rewriting task failed: {e}");
            Err(Reply::LOCAL_ERROR)
        }
    }
}

/// rspamd's verdict on `body`, or what `on_failure` makes of its absence.
async fn verdict(
    filter: &SpamFilter,
    request: rspamd::Request,
    body: &Body,
    id: QueueId,
    peer: &str,
) -> Result<Scanned, Reply> {
    let verdict = match rspamd::check(filter.rspamd, filter.timeout, &request, body).await {
        Ok(verdict) => verdict,
        Err(e) => {
            return match filter.on_failure {
                SpamFailure::Accept => {
                    log::warn!(
                        queue_id:% = id, peer = peer, action = "spam-unscanned";
                        "queue_id={id} peer={peer} spam filter failed: {e}; delivered unscanned (on_failure = accept)"
                    );
                    Ok(Scanned::default())
                }
                SpamFailure::Tempfail => {
                    log::warn!(
                        queue_id:% = id, peer = peer, action = "spam-unscanned";
                        "queue_id={id} peer={peer} spam filter failed: {e}; answered 451 (on_failure = tempfail)"
                    );
                    Err(Reply::SPAM_FILTER_UNAVAILABLE)
                }
            };
        }
    };
    let symbols = symbols(&verdict).join(", ");
    let score = format!("{:.2}", verdict.score);
    let event = match verdict.action {
        Action::Reject | Action::SoftReject => "spam-refused",
        Action::Junk | Action::NoAction => "spam-checked",
    };
    log::info!(
        queue_id:% = id, peer = peer, action = event,
        spam_action = verdict.action.name(), spam_score = score.as_str();
        "queue_id={id} peer={peer} spam action={:?} score={score} symbols={symbols}",
        verdict.action_name
    );
    match verdict.action {
        Action::Reject => Err(reject_reply(verdict.smtp_message.as_deref())),
        Action::SoftReject => Err(Reply::SPAM_DEFERRED),
        Action::Junk => Ok(Scanned {
            header: header(&verdict, true),
            folder: Folder::Junk,
        }),
        Action::NoAction => Ok(Scanned {
            header: header(&verdict, false),
            folder: Folder::Inbox,
        }),
    }
}

/// 550 5.7.1 with rspamd's message made a safe one-line reply text:
/// printable ASCII only, runs of anything else one space, bounded.
fn reject_reply(message: Option<&str>) -> Reply {
    let Some(message) = message else {
        return Reply::SPAM_REJECT;
    };
    let mut text = String::new();
    for c in message.chars() {
        let c = if (' '..='~').contains(&c) { c } else { ' ' };
        if c == ' ' && (text.is_empty() || text.ends_with(' ')) {
            continue;
        }
        if text.len() >= MAX_REPLY_TEXT {
            break;
        }
        text.push(c);
    }
    let text = text.trim_end();
    if text.is_empty() {
        Reply::SPAM_REJECT
    } else {
        Reply::SPAM_REJECT.with_text(text.to_string())
    }
}

/// `NAME(score)` of the heaviest symbols, names cut to safe characters.
fn symbols(verdict: &Verdict) -> Vec<String> {
    verdict
        .symbols
        .iter()
        .take(MAX_SYMBOLS)
        .map(|(name, score)| {
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .take(MAX_SYMBOL_NAME)
                .collect();
            format!("{name}({score:.2})")
        })
        .collect()
}

/// The `X-Spam-*` fields: `X-Spam-Flag: YES` for spam, the score, and the
/// status with the action and the symbols, folded (RFC 5322 §2.2.3) so no
/// line passes 78 characters.
fn header(verdict: &Verdict, spam: bool) -> String {
    let score = format!("{:.2}", verdict.score);
    let mut out = String::new();
    if spam {
        out.push_str("X-Spam-Flag: YES\r\n");
    }
    out.push_str(&format!("X-Spam-Score: {score}\r\n"));
    let action: String = verdict
        .action_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .take(32)
        .collect();
    let mut line = format!(
        "X-Spam-Status: {}, score={score} action=\"{action}\"",
        if spam { "Yes" } else { "No" }
    );
    for (i, symbol) in symbols(verdict).iter().enumerate() {
        let sep = if i == 0 { " tests=" } else { ", " };
        if line.len() + sep.len() + symbol.len() > 76 {
            out.push_str(&line);
            out.push_str(if i == 0 { " tests=\r\n" } else { ",\r\n" });
            line = format!("\t{symbol}");
        } else {
            line.push_str(sep);
            line.push_str(symbol);
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn filter(scan_authenticated: bool) -> SpamFilter {
        SpamFilter {
            rspamd: "127.0.0.1:11333".parse().unwrap(),
            timeout: Duration::from_secs(5),
            on_failure: SpamFailure::Accept,
            scan_authenticated,
        }
    }

    #[test]
    fn whose_mail_is_scanned() {
        let off = filter(false);
        assert!(applies(None, Role::Mx, None).is_none());
        assert!(applies(Some(&off), Role::Mx, None).is_some());
        assert!(applies(Some(&off), Role::Submission, Some("me")).is_none());
        let on = filter(true);
        assert!(applies(Some(&on), Role::Submission, Some("me")).is_some());
        assert!(applies(Some(&on), Role::Submissions, Some("me")).is_some());
    }

    #[test]
    fn reject_text_is_one_safe_line() {
        assert_eq!(reject_reply(None), Reply::SPAM_REJECT);
        assert_eq!(reject_reply(Some("\r\n\t ")), Reply::SPAM_REJECT);
        let reply = reject_reply(Some("Gtube pattern\r\n250 fake\u{7f}é"));
        assert_eq!(reply.text, "Gtube pattern 250 fake");
        assert_eq!(
            (reply.code, reply.enhanced),
            (550, Some(crate::smtp::EnhancedCode(5, 7, 1)))
        );
        let long = reject_reply(Some(&"x".repeat(5000)));
        assert_eq!(long.text.len(), MAX_REPLY_TEXT);
    }

    #[test]
    fn headers_are_folded_and_clean() {
        let verdict = Verdict {
            action: Action::Junk,
            action_name: "add header".into(),
            score: 9.8,
            required_score: 15.0,
            symbols: (0..30)
                .map(|i| (format!("SYMBOL_NUMBER_{i}\r\nX-Evil: 1"), 0.5))
                .collect(),
            smtp_message: None,
        };
        let h = header(&verdict, true);
        assert!(h.starts_with(
            "X-Spam-Flag: YES\r\nX-Spam-Score: 9.80\r\nX-Spam-Status: Yes, score=9.80 \
             action=\"add header\" tests="
        ));
        assert!(h.ends_with("\r\n"));
        for line in h.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.len() <= 78, "{line:?}");
            assert!(
                line.starts_with("X-Spam-") || line.starts_with('\t'),
                "{line:?}"
            );
            assert!(!line.contains("X-Evil:"), "{line:?}");
        }
        assert_eq!(h.matches("SYMBOL_NUMBER_").count(), 30);
        let clean = Verdict {
            action: Action::NoAction,
            action_name: "no action".into(),
            score: -0.1,
            required_score: 15.0,
            symbols: vec![("MIME_GOOD".into(), -0.1)],
            smtp_message: None,
        };
        assert_eq!(
            header(&clean, false),
            "X-Spam-Score: -0.10\r\nX-Spam-Status: No, score=-0.10 action=\"no action\" \
             tests=MIME_GOOD(-0.10)\r\n"
        );
    }
}
