//! Target `smtp_auth`: strict base64 (as AUTH decodes it) and the
//! AUTH PLAIN and LOGIN exchanges ([`auth::start`], [`auth::Exchange::respond`]).
//!
//! Input: lines separated by LF. The first is the `AUTH` argument
//! (mechanism, then optionally the initial response); each further line is
//! the client's answer to the last challenge.
//!
//! Invariants: no panic; decoding is strict, so what decodes is exactly the
//! canonical encoding of its bytes (padding aside) and every encoding
//! decodes back; challenges are 334 and failures 5yz with one line of text;
//! credentials come out of PLAIN only as `[authzid] NUL user NUL password`
//! with the authzid empty or the user, and out of LOGIN as two decoded
//! lines; an exchange ends after at most as many steps as the client sent
//! lines.

use tern::smtp::auth::{self, Step};

/// The same strict base64 as AUTH (src/smtp/auth.rs): RFC 4648, padding
/// where the length needs it, or none.
mod base64 {
    use ::base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT as BASE64;
    use ::base64::Engine as _;

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        BASE64.decode(text).ok()
    }

    pub(super) fn encode(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }
}

fn check_base64(text: &str) {
    if let Some(bytes) = base64::decode(text) {
        assert_eq!(
            base64::encode(&bytes).trim_end_matches('='),
            text.trim_end_matches('='),
            "{text:?} decodes but is not the canonical encoding"
        );
    }
}

fn decoded(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    base64::decode(text)
}

/// Runs the exchange over `data` (see the module documentation).
pub fn run(data: &[u8]) {
    assert_eq!(
        base64::decode(&base64::encode(data)).as_deref(),
        Some(data),
        "round trip"
    );
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Some(first) = lines.next() else {
        return;
    };
    let mut words = first.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next();
    if let Some(i) = initial {
        check_base64(i);
    }
    let mut sent: Vec<&str> = initial.into_iter().collect();
    let mut step = auth::start(&mechanism, initial);
    loop {
        match step {
            Step::Challenge(reply, exchange) => {
                assert_eq!(reply.code, 334);
                let Some(line) = lines.next() else {
                    return;
                };
                check_base64(line);
                sent.push(line);
                step = exchange.respond(line);
            }
            Step::Fail(reply) => {
                assert!((500..=599).contains(&reply.code), "{reply:?}");
                assert!(!reply.text.contains(['\r', '\n']));
                return;
            }
            Step::Credentials { user, password } => {
                match mechanism.as_str() {
                    "PLAIN" => {
                        assert_eq!(sent.len(), 1, "PLAIN takes one response");
                        let raw = decoded(sent[0]).expect("credentials from bad base64");
                        let mut parts = raw.split(|&b| b == 0);
                        let authzid = parts.next().unwrap_or_default();
                        assert!(authzid.is_empty() || authzid == user.as_bytes());
                        assert_eq!(parts.next(), Some(user.as_bytes()));
                        assert_eq!(parts.next(), Some(password.as_bytes()));
                        assert_eq!(parts.next(), None);
                    }
                    "LOGIN" => {
                        assert_eq!(sent.len(), 2, "LOGIN takes two responses");
                        assert_eq!(decoded(sent[0]).as_deref(), Some(user.as_bytes()));
                        assert_eq!(decoded(sent[1]).as_deref(), Some(password.as_bytes()));
                    }
                    other => panic!("credentials from mechanism {other:?}"),
                }
                return;
            }
        }
    }
}
