//! Where a recipient goes: the one rule every entry point uses (SMTP on 25,
//! 587 and 465, and the control and submission sockets behind `sendmail`).
//!
//! [`route`] looks the address up in the [`directory`] (users, aliases,
//! catch-alls, `+tags`): at one of our domains it is delivered here or is
//! unknown; any other domain is relayed only for a client that may relay, an
//! authenticated login or a program on this machine (DESIGN invariant 3:
//! never an open relay). [`add`] keeps one copy per destination, however
//! many addresses lead to it. [`srs`] rewrites the sender of forwarded mail
//! and routes bounces to those addresses back.

pub mod directory;
pub mod srs;

use crate::config::Config;
use crate::smtp::{Address, Recipient, Reply, Route};

pub use crate::smtp::envelope::add_recipients as add;
pub use directory::{owns, resolve, Resolution};

/// May mail go on to other domains for this client?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// An authenticated login, or a program on this machine.
    Allowed,
    /// Anyone else: only our own domains.
    Denied,
}

/// Why a recipient is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// At one of our domains, but nobody by that name.
    #[error("no such user here")]
    NoSuchUser,
    /// Another domain, for a client that may not relay.
    #[error("relaying denied")]
    RelayDenied,
}

impl From<&Refusal> for Reply {
    /// 550 5.1.1 for an unknown user, 554 5.7.1 for a relay attempt.
    fn from(refusal: &Refusal) -> Reply {
        match refusal {
            Refusal::NoSuchUser => Reply::NO_SUCH_USER,
            Refusal::RelayDenied => Reply::RELAY_DENIED,
        }
    }
}

/// Where `to` goes (`None`: the bare `<Postmaster>`): the recipients it
/// expands to, or why it is refused.
pub fn route(
    config: &Config,
    to: Option<&Address>,
    relay: Relay,
) -> Result<Vec<Recipient>, Refusal> {
    match directory::resolve(config, to) {
        Resolution::Local(recipients) => Ok(recipients),
        Resolution::Unknown => Err(Refusal::NoSuchUser),
        Resolution::NotLocal => match to {
            Some(address) if relay == Relay::Allowed => Ok(vec![Recipient {
                original: address.to_string(),
                route: Route::Remote(address.clone()),
            }]),
            _ => Err(Refusal::RelayDenied),
        },
    }
}

/// Where mail to the single address `to` goes, for the queue's notices to a
/// sender: its first route (local, or remote when the domain is not ours),
/// `None` when nobody here has it.
pub fn route_of(config: &Config, to: &Address) -> Option<Route> {
    let recipients = route(config, Some(to), Relay::Allowed).ok()?;
    recipients.into_iter().next().map(|r| r.route)
}
