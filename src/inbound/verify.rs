//! Is mail from another server what it claims to be? On the mx listeners
//! (never for logged-in users or local sendmail, whose mail is ours), with
//! mail-auth over tern's one hickory resolver:
//!
//! - at MAIL FROM, [`begin`] spawns SPF (RFC 7208) of the HELO name and of
//!   the MAIL FROM domain, and iprev (the client's forward-confirmed reverse
//!   DNS, RFC 8601 §3): the lookups overlap RCPT and DATA;
//! - after the data, [`finish`] awaits them, verifies every DKIM signature
//!   (RFC 6376) and DMARC with alignment (RFC 7489), writes the
//!   `Authentication-Results:` field (RFC 8601) and [`decide`]s what the
//!   `[mx]` policy does with the message.
//!
//! Each stage is bounded by `[mx] dns_timeout`: SPF and iprev from MAIL
//! FROM, DKIM and DMARC from the end of the data (what the client waits for
//! after its final dot is at most one `dns_timeout`). A stage that runs out
//! is recorded as `temperror`, which never refuses for good.
//!
//! Messages larger than `[mx] dkim_max_size` are not DKIM-verified: mail-auth
//! parses a whole message in memory, and a spilled body may be as large as
//! the message size limit. They get `dkim=none` with a comment, and a DMARC
//! failure of theirs goes to Junk instead of being refused.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    Error as AuthError, IprevOutput, IprevResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{MxPolicy, Role, SpfFailAction};
use crate::queue::Folder;
use crate::smtp::{Address, Reply};

/// What all sessions together may hold in memory for DKIM verification at
/// once (DESIGN invariant 5): 32 MiB, counted in KiB. A message that cannot
/// have its share before its DNS deadline is not verified (`dkim=none`,
/// "busy"), like one over `dkim_max_size`.
const VERIFY_MEMORY_KIB: u32 = 32 << 10;
static VERIFY_MEMORY: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(VERIFY_MEMORY_KIB as usize);

/// Reserves memory to verify a message of `len` bytes, waiting at most
/// until `deadline`; `None` when the budget stays taken.
pub async fn reserve_memory(
    len: u64,
    deadline: Instant,
) -> Option<tokio::sync::SemaphorePermit<'static>> {
    let kib = u32::try_from(len.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, VERIFY_MEMORY_KIB);
    tokio::time::timeout_at(deadline, VERIFY_MEMORY.acquire_many(kib))
        .await
        .ok()?
        .ok()
}

/// Why a message's DKIM signatures were not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// Larger than `[mx] dkim_max_size`.
    TooLarge,
    /// The memory for verification stayed taken by other sessions.
    Busy,
}

/// What the checks begun at MAIL FROM found.
struct Early {
    /// `None` when the HELO argument is not a domain name (an address
    /// literal): there is nothing to check.
    spf_helo: Option<SpfOutput>,
    spf_mail_from: SpfOutput,
    iprev: IprevOutput,
}

/// The checks of one transaction, begun at MAIL FROM. Dropping it (RSET, a
/// new MAIL, the session's end) stops its lookups.
pub struct Pending {
    authenticator: MessageAuthenticator,
    task: JoinHandle<Early>,
    ip: IpAddr,
    helo: String,
    /// MAIL FROM as `local@domain`; empty for the null sender.
    mail_from: String,
    /// The domain SPF checked for MAIL FROM: its domain, or the HELO name
    /// for the null sender (RFC 7208 §2.4). DMARC aligns with it.
    mail_from_domain: String,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Is mail of this session checked? Only on mx listeners, only for clients
/// that did not log in (local sendmail never comes here: its mail, like a
/// login's, is ours), and only when `[mx] authenticate` is on.
pub fn applies(policy: &MxPolicy, role: Role, login: Option<&str>) -> bool {
    policy.authenticate && role == Role::Mx && login.is_none()
}

/// A name worth an SPF check: dotted, letters, digits and hyphens.
fn is_domain_name(name: &str) -> bool {
    name.contains('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Starts SPF (HELO and MAIL FROM) and iprev for a transaction from `ip`,
/// each bounded by `limit`. `hostname` is ours (SPF's `%{r}` macro).
pub fn begin(
    authenticator: MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    mail_from: Option<&Address>,
    hostname: &str,
    limit: Duration,
) -> Pending {
    let helo = helo.trim_end_matches('.').to_ascii_lowercase();
    let mail_from = mail_from.map(ToString::to_string).unwrap_or_default();
    let mail_from_domain = match mail_from.rsplit_once('@') {
        Some((_, domain)) => domain.to_ascii_lowercase(),
        None => helo.clone(),
    };
    let task = {
        let (auth, helo, from, domain) = (
            authenticator.clone(),
            helo.clone(),
            mail_from.clone(),
            mail_from_domain.clone(),
        );
        let host = hostname.to_string();
        tokio::spawn(async move {
            let checks = async {
                let helo_spf = async {
                    if !is_domain_name(&helo) {
                        return None;
                    }
                    let params = SpfParameters::verify_ehlo(ip, &helo, &host);
                    Some(auth.verify_spf(params).await)
                };
                let from_spf = async {
                    if !is_domain_name(&domain) {
                        return SpfOutput::new(domain.clone()).with_result(SpfResult::None);
                    }
                    let params = SpfParameters::verify_mail_from(ip, &helo, &host, &from);
                    auth.verify_spf(params).await
                };
                tokio::join!(helo_spf, from_spf, auth.verify_iprev(ip))
            };
            match tokio::time::timeout(limit, checks).await {
                Ok((spf_helo, spf_mail_from, iprev)) => Early {
                    spf_helo,
                    spf_mail_from,
                    iprev,
                },
                Err(_) => timed_out(&helo, &domain, limit),
            }
        })
    };
    Pending {
        authenticator,
        task,
        ip,
        helo,
        mail_from,
        mail_from_domain,
    }
}

/// SPF and iprev, when their lookups did not finish in time.
fn timed_out(helo: &str, domain: &str, limit: Duration) -> Early {
    Early {
        spf_helo: is_domain_name(helo)
            .then(|| SpfOutput::new(helo.to_string()).with_result(SpfResult::TempError)),
        spf_mail_from: SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
        iprev: IprevOutput {
            result: IprevResult::TempError(no_answer(limit)),
            ptr: None,
        },
    }
}

fn no_answer(limit: Duration) -> AuthError {
    AuthError::Io(format!("no DNS answer within {}s", limit.as_secs_f32()))
}

/// What the `[mx]` policy does with a verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver as usual.
    Inbox,
    /// Deliver to the recipients' Junk folder, for this reason.
    Junk(String),
    /// Refuse at the end of DATA with this reply.
    Refuse(Reply),
}

impl Disposition {
    /// The folder of a message that is accepted.
    pub fn folder(&self) -> Folder {
        match self {
            Disposition::Junk(_) => Folder::Junk,
            _ => Folder::Inbox,
        }
    }
}

/// The results of one message, for the header, the policy and the log.
pub struct Verified {
    /// The `Authentication-Results:` field, CRLF-terminated.
    pub header: String,
    pub disposition: Disposition,
    pub summary: Summary,
}

/// One word per method (`pass`, `fail`, `temperror`...), for the log.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// SPF of MAIL FROM.
    pub spf: &'static str,
    pub dkim: &'static str,
    pub dmarc: &'static str,
    pub iprev: &'static str,
    /// The RFC 5322 From: domain DMARC evaluated (empty if none).
    pub from_domain: String,
}

/// The facts [`decide`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub dmarc: DmarcResult,
    /// The policy the From: domain publishes (`p=`, or `sp=` for a
    /// subdomain).
    pub policy: Policy,
    pub from_domain: String,
    pub spf_mail_from: SpfResult,
    /// False when the message was too large for DKIM verification.
    pub dkim_verified: bool,
}

/// The `[mx]` policy (RFC 7489 §6.6.4, RFC 7208 §8.4): a DMARC failure
/// under `p=reject` is refused (or goes to Junk when `dmarc_reject` is off,
/// or when DKIM could not be verified), under `p=quarantine` goes to Junk; a
/// temporary error gets 451 only where the policy would reject; an SPF fail
/// does what `spf_fail` says unless DMARC passed.
pub fn decide(policy: &MxPolicy, facts: &Facts) -> Disposition {
    let domain = &facts.from_domain;
    let rejects = facts.policy == Policy::Reject;
    match &facts.dmarc {
        DmarcResult::Fail(_) if rejects && policy.dmarc_reject && facts.dkim_verified => {
            return Disposition::Refuse(Reply::DMARC_POLICY_REJECT.with_text(format!(
                "Message refused: it fails DMARC and the policy of {domain} is reject (p=reject)"
            )));
        }
        DmarcResult::Fail(_) if rejects || facts.policy == Policy::Quarantine => {
            let why = if !facts.dkim_verified {
                "too large to verify DKIM"
            } else if rejects {
                "dmarc_reject is off"
            } else {
                "p=quarantine"
            };
            return Disposition::Junk(format!("fails DMARC of {domain} ({why})"));
        }
        DmarcResult::TempError(_) if rejects && policy.dmarc_reject && facts.dkim_verified => {
            return Disposition::Refuse(Reply::DMARC_TEMPORARY);
        }
        DmarcResult::Pass => return Disposition::Inbox,
        _ => {}
    }
    match (facts.spf_mail_from, policy.spf_fail) {
        (SpfResult::Fail, SpfFailAction::Reject) => Disposition::Refuse(Reply::SPF_FAIL),
        (SpfResult::Fail, SpfFailAction::Junk) => Disposition::Junk("fails SPF".into()),
        _ => Disposition::Inbox,
    }
}

/// Awaits the checks of `pending`, verifies DKIM and DMARC of `message` (the
/// message as received) and decides; gives up on DNS at `deadline`. When
/// `dkim` says why the signatures are not verified, `message` may be only
/// the header section: DMARC then rests on SPF alone.
pub async fn finish(
    mut pending: Pending,
    message: &[u8],
    dkim: Result<(), Unverified>,
    policy: &MxPolicy,
    hostname: &str,
    deadline: Instant,
) -> Verified {
    let limit = policy.dns_timeout;
    let early = match tokio::time::timeout_at(deadline, &mut pending.task).await {
        Ok(Ok(early)) => early,
        _ => timed_out(&pending.helo, &pending.mail_from_domain, limit),
    };
    let verify_dkim = dkim;
    let parsed = AuthenticatedMessage::parse(message);
    let auth = &pending.authenticator;
    let (dkim, dmarc) = match &parsed {
        Some(msg) => {
            let checks = async {
                let dkim = match verify_dkim {
                    Ok(()) => auth.verify_dkim(msg).await,
                    Err(_) => Vec::new(),
                };
                let params = DmarcParameters::new(
                    msg,
                    &dkim,
                    &pending.mail_from_domain,
                    &early.spf_mail_from,
                );
                let dmarc = auth.verify_dmarc(params).await;
                (dkim, dmarc)
            };
            match tokio::time::timeout_at(deadline, checks).await {
                Ok(done) => done,
                Err(_) => (
                    vec![DkimOutput::temp_err(no_answer(limit))],
                    DmarcOutput::new(from_domain(msg))
                        .with_spf_result(DmarcResult::TempError(no_answer(limit)))
                        .with_dkim_result(DmarcResult::TempError(no_answer(limit))),
                ),
            }
        }
        None => (Vec::new(), DmarcOutput::new(String::new())),
    };
    let header_from = parsed.as_ref().map(|m| m.from()).unwrap_or_default();
    let mut header =
        AuthenticationResults::new(hostname).with_iprev_result(&early.iprev, pending.ip);
    if let Some(spf) = &early.spf_helo {
        header = header.with_spf_ehlo_result(spf, pending.ip, &pending.helo);
    }
    header = header.with_spf_mailfrom_result(
        &early.spf_mail_from,
        pending.ip,
        &pending.mail_from,
        &pending.helo,
    );
    let dkim_part = match (verify_dkim, dkim.is_empty()) {
        (Err(Unverified::TooLarge), _) => {
            ";\r\n\tdkim=none (not verified: message larger than dkim_max_size)".into()
        }
        (Err(Unverified::Busy), _) => {
            ";\r\n\tdkim=none (not verified: too many messages being verified at once)".into()
        }
        (Ok(_), true) => ";\r\n\tdkim=none".into(),
        // RFC 8601 §2.7.1: a body hash that does not match "failed the
        // verification test": `fail`, where mail-auth writes `neutral`. A
        // tampered body is what DKIM exists to catch.
        (Ok(_), false) => AuthenticationResults::new("")
            .with_dkim_results(&dkim, header_from)
            .to_string()
            .replace(
                "dkim=neutral (body hash did not verify)",
                "dkim=fail (body hash did not verify)",
            ),
    };
    let dmarc_part = if parsed.is_some() {
        AuthenticationResults::new("")
            .with_dmarc_result(&dmarc)
            .to_string()
    } else {
        String::new()
    };
    let facts = Facts {
        dmarc: dmarc.result(),
        policy: dmarc.policy(),
        from_domain: dmarc.domain().to_string(),
        spf_mail_from: early.spf_mail_from.result(),
        dkim_verified: verify_dkim.is_ok(),
    };
    Verified {
        header: format!("Authentication-Results: {header}{dkim_part}{dmarc_part}\r\n"),
        disposition: decide(policy, &facts),
        summary: Summary {
            spf: spf_word(early.spf_mail_from.result()),
            dkim: dkim_word(&dkim, verify_dkim.is_ok()),
            dmarc: dmarc_word(&facts.dmarc),
            iprev: iprev_word(&early.iprev.result),
            from_domain: facts.from_domain,
        },
    }
}

fn from_domain(msg: &AuthenticatedMessage<'_>) -> String {
    msg.from()
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// An SPF result's name, as in Received-SPF and Authentication-Results
/// (RFC 7208 §2.6); `tern check` shows the same words.
pub fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// `pass` if any signature passes, else the first one's result.
fn dkim_word(outputs: &[DkimOutput<'_>], verified: bool) -> &'static str {
    if !verified {
        return "none";
    }
    if outputs.iter().any(|o| o.result() == &DkimResult::Pass) {
        return "pass";
    }
    match outputs.first().map(DkimOutput::result) {
        None => "none",
        Some(DkimResult::Pass) => "pass",
        Some(DkimResult::Neutral(e)) if *e == AuthError::Dkim(DkimError::FailedBodyHashMatch) => {
            "fail"
        }
        Some(DkimResult::Neutral(_)) => "neutral",
        Some(DkimResult::Fail(_)) => "fail",
        Some(DkimResult::PermError(_)) => "permerror",
        Some(DkimResult::TempError(_)) => "temperror",
        Some(DkimResult::None) => "none",
    }
}

fn dmarc_word(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn iprev_word(result: &IprevResult) -> &'static str {
    match result {
        IprevResult::Pass => "pass",
        IprevResult::Fail(_) => "fail",
        IprevResult::TempError(_) => "temperror",
        IprevResult::PermError(_) => "permerror",
        IprevResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dmarc_reject: bool, spf_fail: SpfFailAction) -> MxPolicy {
        MxPolicy {
            verify_sender_domain: true,
            sender_domain_exempt: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            authenticate: true,
            dmarc_reject,
            spf_fail,
            dkim_max_size: 4 << 20,
        }
    }

    fn facts(dmarc: DmarcResult, p: Policy, spf: SpfResult) -> Facts {
        Facts {
            dmarc,
            policy: p,
            from_domain: "bank.example".into(),
            spf_mail_from: spf,
            dkim_verified: true,
        }
    }

    #[test]
    fn dmarc_and_spf_policy() {
        let on = policy(true, SpfFailAction::Deliver);
        let fail = || DmarcResult::Fail(AuthError::NotAligned);
        let temp = || DmarcResult::TempError(AuthError::Io("timeout".into()));
        let d = decide(&on, &facts(fail(), Policy::Reject, SpfResult::Fail));
        let Disposition::Refuse(reply) = d else {
            panic!("p=reject failure accepted: {d:?}")
        };
        assert_eq!(
            (reply.code, reply.enhanced.map(|e| e.to_string())),
            (550, Some("5.7.1".into()))
        );
        assert!(
            reply.text.contains("policy of bank.example is reject"),
            "{}",
            reply.text
        );
        // Off, or unverified for size: Junk, never refused.
        let off = policy(false, SpfFailAction::Deliver);
        assert!(matches!(
            decide(&off, &facts(fail(), Policy::Reject, SpfResult::Fail)),
            Disposition::Junk(_)
        ));
        let mut big = facts(fail(), Policy::Reject, SpfResult::Fail);
        big.dkim_verified = false;
        assert!(matches!(decide(&on, &big), Disposition::Junk(_)));
        assert!(matches!(
            decide(&on, &facts(fail(), Policy::Quarantine, SpfResult::Fail)),
            Disposition::Junk(_)
        ));
        assert_eq!(
            decide(&on, &facts(fail(), Policy::None, SpfResult::Fail)),
            Disposition::Inbox
        );
        // A DNS failure: 451 only where the policy would reject.
        let d = decide(&on, &facts(temp(), Policy::Reject, SpfResult::TempError));
        assert!(matches!(d, Disposition::Refuse(r) if r.code == 451));
        assert_eq!(
            decide(
                &on,
                &facts(temp(), Policy::Quarantine, SpfResult::TempError)
            ),
            Disposition::Inbox
        );
        assert_eq!(
            decide(
                &on,
                &facts(temp(), Policy::Unspecified, SpfResult::TempError)
            ),
            Disposition::Inbox
        );
        // SPF fail alone: as configured, and never when DMARC passed.
        assert_eq!(
            decide(
                &on,
                &facts(DmarcResult::None, Policy::None, SpfResult::Fail)
            ),
            Disposition::Inbox
        );
        let strict = policy(true, SpfFailAction::Reject);
        let d = decide(
            &strict,
            &facts(DmarcResult::None, Policy::None, SpfResult::Fail),
        );
        assert!(matches!(d, Disposition::Refuse(r) if r.code == 550));
        assert_eq!(
            decide(
                &strict,
                &facts(DmarcResult::Pass, Policy::Reject, SpfResult::Fail)
            ),
            Disposition::Inbox
        );
        let junk = policy(true, SpfFailAction::Junk);
        assert!(matches!(
            decide(
                &junk,
                &facts(DmarcResult::None, Policy::None, SpfResult::Fail)
            ),
            Disposition::Junk(_)
        ));
    }

    #[test]
    fn only_anonymous_clients_of_mx_listeners_are_checked() {
        let on = policy(true, SpfFailAction::Deliver);
        assert!(applies(&on, Role::Mx, None));
        assert!(
            !applies(&on, Role::Mx, Some("me")),
            "a login's mail is ours"
        );
        assert!(!applies(&on, Role::Submission, None));
        assert!(!applies(&on, Role::Submissions, Some("me")));
        let off = MxPolicy {
            authenticate: false,
            ..on
        };
        assert!(!applies(&off, Role::Mx, None));
    }

    #[test]
    fn domain_names() {
        assert!(is_domain_name("mail.example.com"));
        assert!(!is_domain_name("[192.0.2.1]"));
        assert!(!is_domain_name("localhost"));
    }
}
