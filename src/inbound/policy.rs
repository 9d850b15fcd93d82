//! Policy: the answers to the session's [`Check`]s. Who may send, which
//! recipients we accept, and the relay rule (DESIGN invariant 3): without
//! authentication, only recipients at our own domains are accepted. The
//! sender rules themselves live in [`super::senders`].

use crate::config::Config;
use crate::local::directory::{self, Resolution};
use crate::smtp::{Answer, Check, EnhancedCode, Recipient, Reply, Route};

use super::senders::{self, Sender};

/// What the policy knows about the client.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// Authenticated as this user (submission).
    pub authenticated: Option<String>,
}

impl ClientContext {
    /// Relaying to other domains is only for authenticated users.
    pub fn may_relay(&self) -> bool {
        self.authenticated.is_some()
    }
}

/// Answers one check.
pub fn answer(config: &Config, client: &ClientContext, check: Check) -> Answer {
    match check {
        Check::Sender { from } => match &client.authenticated {
            // Authenticated users send only as addresses they own, or that
            // their `send_as` lists (DESIGN invariant 7).
            Some(user) if !senders::may_use(config, Sender::Login(user), from.as_ref()) => {
                Answer::Rejected(Reply::new(
                    553,
                    EnhancedCode(5, 7, 1),
                    format!(
                        "Sender address <{}> is not owned by user {user}",
                        from.map(|a| a.to_string()).unwrap_or_default()
                    ),
                ))
            }
            _ => Answer::SenderOk,
        },
        // Answered by the connection driver (it needs the blocking password
        // check and the throttle).
        Check::Credentials { .. } => Answer::Rejected(Reply::LOCAL_ERROR),
        Check::Recipient { to } => match directory::resolve(config, to.as_ref()) {
            Resolution::Local(recipients) => Answer::RecipientOk(recipients),
            Resolution::Unknown => Answer::Rejected(Reply::NO_SUCH_USER),
            Resolution::NotLocal => match to {
                Some(address) if client.may_relay() => Answer::RecipientOk(vec![Recipient {
                    original: address.to_string(),
                    route: Route::Remote(address),
                }]),
                _ => Answer::Rejected(Reply::RELAY_DENIED),
            },
        },
    }
}
