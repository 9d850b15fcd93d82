//! Policy: the answers to the session's sender and recipient [`Check`]s.
//! Who may send is [`super::senders`]' rule; where a recipient goes (and the
//! relay rule, DESIGN invariant 3) is [`crate::routing`]'s. The login they
//! apply to is the session's ([`crate::smtp::Session::authenticated`]).
//! Credentials are checked by the connection driver (it needs the blocking
//! password check and the throttle).

use crate::config::Config;
use crate::routing::srs::Srs;
use crate::routing::{self, Relay};
use crate::smtp::{Address, Answer, Domain, EnhancedCode, Reply};

use super::senders::{self, Sender};

/// May this client use `from` as its envelope sender? `login`: the user the
/// session authenticated as.
pub fn sender(config: &Config, login: Option<&str>, from: Option<&Address>) -> Answer {
    match login {
        // Authenticated users send only as addresses they own, or that
        // their `send_as` lists (DESIGN invariant 7).
        Some(user) if !senders::may_use(config, Sender::Login(user), from) => {
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
    }
}

/// Is `to` acceptable, and where does it go? Relaying to other domains is
/// only for a logged-in client, and for bounces to the SRS addresses we
/// gave forwarded mail (`srs`, checked on `day`): those go back to the
/// original sender; forged or expired ones get 550 5.1.1.
pub fn recipient(
    config: &Config,
    login: Option<&str>,
    to: Option<&Address>,
    srs: Option<(&Srs, u64)>,
) -> Answer {
    if let (Some((srs, day)), Some(address)) = (srs, to) {
        let ours = matches!(&address.domain, Domain::Name(d) if config.is_local_domain(d));
        if ours {
            match srs.reverse(&address.local, day) {
                Ok(None) => {}
                Ok(Some(original)) => {
                    return match routing::route(config, Some(&original), Relay::Allowed) {
                        Ok(mut recipients) => {
                            for r in &mut recipients {
                                r.original = address.to_string();
                            }
                            Answer::RecipientOk(recipients)
                        }
                        Err(refusal) => Answer::Rejected(Reply::from(&refusal)),
                    };
                }
                Err(e) => {
                    log::info!("RCPT <{address}> refused: {e}");
                    return Answer::Rejected(Reply::BAD_SRS_ADDRESS);
                }
            }
        }
    }
    let relay = match login {
        Some(_) => Relay::Allowed,
        None => Relay::Denied,
    };
    match routing::route(config, to, relay) {
        Ok(recipients) => Answer::RecipientOk(recipients),
        Err(refusal) => Answer::Rejected(Reply::from(&refusal)),
    }
}
