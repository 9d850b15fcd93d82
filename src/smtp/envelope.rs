//! What a finished SMTP transaction hands to the queue: the [`Envelope`] (sender,
//! routed recipients, body flags) and the [`Trace`] facts that go into the
//! `Received:` header ([`received_header`], RFC 5321 §4.4).

use std::net::IpAddr;

use super::address::Address;

/// Sender, recipients and body type of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `None` is the null reverse-path `<>` (bounces): never bounce to it.
    pub sender: Option<Address>,
    pub recipients: Vec<Recipient>,
    /// BODY=8BITMIME was given (RFC 6152).
    pub eight_bit: bool,
    /// SMTPUTF8 was given (RFC 6531).
    pub smtputf8: bool,
}

/// One delivery target, and the address the client named that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The RCPT TO address as the client gave it (`postmaster` for the bare form);
    /// used for `Delivered-To:` and in bounces (RFC 3461 ORCPT).
    pub original: String,
    pub route: Route,
}

/// Adds `more` to `recipients`, skipping routes already there: one copy
/// per destination, however many addresses (or aliases) lead to it.
pub fn add_recipients(recipients: &mut Vec<Recipient>, more: Vec<Recipient>) {
    for r in more {
        if !recipients.iter().any(|have| have.route == r.route) {
            recipients.push(r);
        }
    }
}

/// Where a recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// The Maildir of this local user.
    Local(String),
    /// Another server, by MX lookup of the domain.
    Remote(Address),
}

/// Facts about the session, for the `Received:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The EHLO/HELO argument.
    pub helo: String,
    pub peer: IpAddr,
    /// e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
    pub tls: Option<String>,
    /// Authenticated user, if any.
    pub authenticated: Option<String>,
    /// EHLO (true) or HELO (false).
    pub extended: bool,
    pub smtputf8: bool,
}

impl Trace {
    /// RFC 3848 / RFC 6531 §3.7.3 `with` protocol keyword.
    pub fn protocol(&self) -> &'static str {
        match (
            self.extended,
            self.smtputf8,
            self.tls.is_some(),
            self.authenticated.is_some(),
        ) {
            (false, _, _, _) => "SMTP",
            (true, false, false, false) => "ESMTP",
            (true, false, true, false) => "ESMTPS",
            (true, false, false, true) => "ESMTPA",
            (true, false, true, true) => "ESMTPSA",
            (true, true, false, false) => "UTF8SMTP",
            (true, true, true, false) => "UTF8SMTPS",
            (true, true, false, true) => "UTF8SMTPA",
            (true, true, true, true) => "UTF8SMTPSA",
        }
    }
}

/// The `Received:` header for a message (RFC 5321 §4.4, RFC 5322 §3.6.7),
/// folded, ending in CRLF. `date` is an RFC 5322 date-time. The peer address is
/// left out when `show_peer` is false (submission privacy).
pub fn received_header(
    trace: &Trace,
    hostname: &str,
    queue_id: &str,
    single_recipient: Option<&str>,
    date: &str,
    show_peer: bool,
) -> String {
    let helo = sanitize(&trace.helo);
    let mut h = String::with_capacity(256);
    if show_peer {
        h.push_str(&format!("Received: from {helo} ([{}])\r\n", trace.peer));
    } else {
        h.push_str(&format!("Received: from {helo}\r\n"));
    }
    h.push_str(&format!("\tby {hostname} (tern) with {}", trace.protocol()));
    if let Some(tls) = &trace.tls {
        h.push_str(&format!(" ({})", sanitize(tls)));
    }
    if let Some(user) = &trace.authenticated {
        h.push_str(&format!(" (authenticated as {})", sanitize(user)));
    }
    h.push_str(&format!(" id {queue_id}"));
    if let Some(rcpt) = single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
    }
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

/// The `Received:` header for a message submitted on this machine with
/// `sendmail` (RFC 5321 §4.4 allows a trace field with only "by"): which Unix
/// user ran it, no network address.
pub fn local_received_header(
    hostname: &str,
    uid: u32,
    user: Option<&str>,
    queue_id: &str,
    single_recipient: Option<&str>,
    date: &str,
) -> String {
    let who = match user {
        Some(name) => format!("{} uid {uid}", sanitize(name)),
        None => format!("uid {uid}"),
    };
    let mut h = format!("Received: by {hostname} (tern) via sendmail ({who})\r\n\tid {queue_id}");
    if let Some(rcpt) = single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
    }
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

/// Keeps client-supplied text from breaking the header: printable, no parens.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' || c == ';' {
                '?'
            } else {
                c
            }
        })
        .take(255)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> Trace {
        Trace {
            helo: "client.example".into(),
            peer: "192.0.2.7".parse().unwrap(),
            tls: Some("TLSv1.3 TLS13_AES_128_GCM_SHA256".into()),
            authenticated: None,
            extended: true,
            smtputf8: false,
        }
    }

    #[test]
    fn protocol_keywords() {
        let mut t = trace();
        assert_eq!(t.protocol(), "ESMTPS");
        t.tls = None;
        assert_eq!(t.protocol(), "ESMTP");
        t.authenticated = Some("me".into());
        assert_eq!(t.protocol(), "ESMTPA");
        t.extended = false;
        assert_eq!(t.protocol(), "SMTP");
    }

    #[test]
    fn received_header_shape() {
        let h = received_header(
            &trace(),
            "mx.example.org",
            "abc123",
            Some("me@example.org"),
            "Sat, 28 Nov 2026 15:52:42 +0000",
            true,
        );
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (tern) with ESMTPS \
             (TLSv1.3 TLS13_AES_128_GCM_SHA256) id abc123\r\n\tfor <me@example.org>;\r\n\tSat, 28 Nov 2026 15:52:42 +0000\r\n"
        );
    }

    #[test]
    fn local_submissions_name_the_user_not_an_address() {
        let h = local_received_header(
            "mx.example.org",
            1000,
            Some("alice"),
            "Q1",
            Some("bob@example.org"),
            "date",
        );
        assert_eq!(
            h,
            "Received: by mx.example.org (tern) via sendmail (alice uid 1000)\r\n\tid Q1\r\n\tfor <bob@example.org>;\r\n\tdate\r\n"
        );
    }

    #[test]
    fn client_text_cannot_inject_header_lines() {
        let mut t = trace();
        t.helo = "evil\r\nX-Injected: yes".into();
        let h = received_header(&t, "h", "id", None, "date", false);
        assert!(!h.contains("\r\nX-Injected"));
        assert!(!h.contains("192.0.2.7"));
    }
}
