//! SMTP AUTH (RFC 4954) exchanges for the PLAIN (RFC 4616) and LOGIN
//! mechanisms: decoding the client's base64 responses into a user name and
//! password. Checking them is the policy layer's job.

use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT as BASE64;
use base64::Engine as _;

use super::reply::{EnhancedCode, Reply};

/// The mechanisms we offer, as advertised in EHLO.
pub const MECHANISMS: &str = "PLAIN LOGIN";

/// What the session does next in an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this 334 challenge and read the client's next line.
    Challenge(Reply, Exchange),
    /// The client gave these credentials; check them.
    Credentials { user: String, password: String },
    /// The exchange failed; send this reply.
    Fail(Reply),
}

/// An exchange waiting for the client's next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN without initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
}

/// RFC 4954 §4: the client cancels with `*`.
pub fn cancelled() -> Reply {
    Reply::new(501, EnhancedCode(5, 0, 0), "Authentication cancelled")
}

fn bad_base64() -> Reply {
    Reply::new(501, EnhancedCode(5, 5, 2), "Invalid base64 data")
}

fn challenge(text: &'static str) -> Reply {
    Reply::plain(334, text)
}

/// Starts an exchange for `AUTH mechanism [initial]`.
pub fn start(mechanism: &str, initial: Option<&str>) -> Step {
    match mechanism {
        "PLAIN" => match initial {
            // RFC 4954 §4: "=" is an empty initial response.
            Some(response) => plain(response),
            None => Step::Challenge(challenge(""), Exchange::Plain),
        },
        "LOGIN" => match initial {
            Some(response) => login_user(response),
            // "Username:"
            None => Step::Challenge(challenge("VXNlcm5hbWU6"), Exchange::LoginUser),
        },
        _ => Step::Fail(Reply::new(
            504,
            EnhancedCode(5, 5, 4),
            format!("Unrecognized authentication mechanism; offered: {MECHANISMS}"),
        )),
    }
}

impl Exchange {
    /// The client's line (without CRLF) in answer to the last challenge.
    pub fn respond(self, line: &str) -> Step {
        if line.trim() == "*" {
            return Step::Fail(cancelled());
        }
        match self {
            Exchange::Plain => plain(line),
            Exchange::LoginUser => login_user(line),
            Exchange::LoginPassword(user) => match decode_text(line) {
                Some(password) => Step::Credentials { user, password },
                None => Step::Fail(bad_base64()),
            },
        }
    }
}

fn decode_text(line: &str) -> Option<String> {
    let line = line.trim();
    if line == "=" {
        return Some(String::new());
    }
    // RFC 4648 strictly: no stray bits, padding only where the length
    // needs it (or none at all).
    let bytes = BASE64.decode(line).ok()?;
    String::from_utf8(bytes).ok()
}

fn login_user(line: &str) -> Step {
    match decode_text(line) {
        // "Password:"
        Some(user) => Step::Challenge(challenge("UGFzc3dvcmQ6"), Exchange::LoginPassword(user)),
        None => Step::Fail(bad_base64()),
    }
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`. An authorization
/// identity other than the user itself is not allowed.
fn plain(line: &str) -> Step {
    let Some(text) = decode_text(line) else {
        return Step::Fail(bad_base64());
    };
    let parts: Vec<&str> = text.split('\0').collect();
    let [authzid, user, password] = parts.as_slice() else {
        return Step::Fail(Reply::new(
            501,
            EnhancedCode(5, 5, 2),
            "Malformed PLAIN response",
        ));
    };
    if !authzid.is_empty() && authzid != user {
        return Step::Fail(Reply::new(
            535,
            EnhancedCode(5, 7, 8),
            "Authentication credentials invalid",
        ));
    }
    Step::Credentials {
        user: user.to_string(),
        password: password.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    #[test]
    fn responses_are_strict_base64() {
        assert_eq!(decode_text("YWI=").as_deref(), Some("ab"));
        assert_eq!(decode_text("YWI").as_deref(), Some("ab"), "unpadded");
        assert_eq!(decode_text("Y*I="), None);
        assert_eq!(decode_text("YWI=="), None, "too much padding");
        assert_eq!(decode_text("YW=I"), None, "padding in the middle");
        assert_eq!(decode_text("YWJ"), None, "stray bits");
        assert_eq!(decode_text("Y"), None, "impossible length");
    }

    fn creds(user: &str, password: &str) -> Step {
        Step::Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let token = encode(b"\0me\0secret");
        assert_eq!(start("PLAIN", Some(&token)), creds("me", "secret"));
        let Step::Challenge(reply, ex) = start("PLAIN", None) else {
            panic!()
        };
        assert_eq!(reply.to_bytes(), b"334 \r\n");
        assert_eq!(ex.respond(&token), creds("me", "secret"));
        let token = encode(b"me\0me\0pw");
        assert_eq!(start("PLAIN", Some(&token)), creds("me", "pw"));
    }

    #[test]
    fn plain_refuses_another_authorization_identity_and_garbage() {
        let token = encode(b"admin\0me\0secret");
        assert!(matches!(start("PLAIN", Some(&token)), Step::Fail(r) if r.code == 535));
        assert!(matches!(start("PLAIN", Some("%%%")), Step::Fail(r) if r.code == 501));
        assert!(
            matches!(start("PLAIN", Some(&encode(b"no nuls"))), Step::Fail(r) if r.code == 501)
        );
        assert!(matches!(start("PLAIN", Some("=")), Step::Fail(r) if r.code == 501));
    }

    #[test]
    fn login_exchange() {
        let Step::Challenge(r, ex) = start("LOGIN", None) else {
            panic!()
        };
        assert_eq!(r.to_bytes(), b"334 VXNlcm5hbWU6\r\n");
        let Step::Challenge(r, ex) = ex.respond(&encode(b"me")) else {
            panic!()
        };
        assert_eq!(r.to_bytes(), b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(ex.respond(&encode(b"secret")), creds("me", "secret"));
        // With the user name as initial response.
        let Step::Challenge(_, ex) = start("LOGIN", Some(&encode(b"me"))) else {
            panic!()
        };
        assert_eq!(ex.respond(&encode(b"pw")), creds("me", "pw"));
    }

    #[test]
    fn cancel_and_unknown_mechanism() {
        let Step::Challenge(_, ex) = start("LOGIN", None) else {
            panic!()
        };
        assert_eq!(ex.respond("*"), Step::Fail(cancelled()));
        assert!(matches!(start("CRAM-MD5", None), Step::Fail(r) if r.code == 504));
    }
}
