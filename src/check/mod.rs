//! `tern dns` and `tern check`: whether the world can reach, trust and
//! deliver to this server, seen from the server itself.
//!
//! - [`records`]: the records to publish (`tern dns`, and every fix).
//! - [`live`]: the lookups, through the configured resolver (`[relay]
//!   nameservers`): MX, the hostname's addresses, forward-confirmed reverse
//!   DNS, DKIM, DMARC, MTA-STS/TLS-RPT, blocklists; [`spf`]: SPF evaluated
//!   with mail-auth and its DNS lookups counted.
//! - [`certs`]: the certificate tern serves on its listeners.
//!
//! Each finding is a [`Check`]: ok, warning, failed or skipped, what was
//! found and, unless ok, the exact record (or step) that fixes it. `tern
//! check` never changes anything; it exits 1 when a check failed.

pub mod certs;
pub mod dns;
pub mod live;
pub mod records;
pub mod spf;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{Config, Source};
use crate::dkim::keys::DomainKeys;
use crate::dkim::Signer;
use crate::queue::listing::MessageSummary;
use crate::terminal::terminal_safe;

/// Why `tern dns` or `tern check` could not run at all (a failed check is a
/// result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Resolver(String),
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Works, but worth a look (self-signed certificate, deferred mail).
    Warning,
    /// Broken: other servers will refuse or misfile mail. `tern check`
    /// exits 1.
    Failed,
    /// Not applicable or not configured (MTA-STS, no public address).
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What kind of check: `mx`, `address`, `ptr`, `spf`, `spf-lookups`,
    /// `dkim`, `dmarc`, `mta-sts`, `tls-rpt`, `certificate`, `blocklist`,
    /// `queue`.
    pub check: &'static str,
    /// What it was about: a domain, an address, a selector, a file.
    pub subject: String,
    pub status: Status,
    /// What was found, in one line.
    pub found: String,
    /// Unless ok: the record to publish or the step that fixes it (may be
    /// several lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn new(check: &'static str, subject: impl Into<String>, status: Status) -> Check {
        Check {
            check,
            subject: subject.into(),
            status,
            found: String::new(),
            fix: None,
        }
    }

    pub fn found(mut self, found: impl Into<String>) -> Check {
        self.found = found.into();
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything `tern check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Failed),
            checks,
        }
    }

    /// The checks of kind `check`.
    pub fn of<'a>(&'a self, check: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks.iter().filter(move |c| c.check == check)
    }

    /// The table for people: a row per check, its fix indented below it,
    /// then the totals. Everything from DNS is made terminal-safe.
    pub fn table(&self) -> String {
        let width = |f: fn(&Check) -> usize| self.checks.iter().map(f).max().unwrap_or(0);
        let kind_w = width(|c| c.check.len()).max(5);
        let subject_w = width(|c| c.subject.chars().count()).max(7);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<8} {:<kind_w$} {:<subject_w$} FOUND",
            "STATUS", "CHECK", "SUBJECT"
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<8} {:<kind_w$} {:<subject_w$} {}",
                c.status.label(),
                c.check,
                terminal_safe(&c.subject),
                terminal_safe(&c.found)
            );
            if let Some(fix) = &c.fix {
                for (i, line) in fix.lines().enumerate() {
                    let lead = if i == 0 { "fix:" } else { "    " };
                    let _ = writeln!(out, "         {lead} {}", terminal_safe(line));
                }
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} ok, {} warning(s), {} failed, {} skipped",
            count(Status::Ok),
            count(Status::Warning),
            count(Status::Failed),
            count(Status::Skipped)
        );
        out
    }
}

/// The DKIM keys tern signs with under `config`, or the check that says
/// why there are none.
pub fn signing_keys(config: &Config) -> Result<Vec<DomainKeys>, Check> {
    match Signer::from_config(config) {
        Ok(Some(signer)) => Ok(signer.into_domains()),
        Ok(None) => Err(Check::new("dkim", "keys", Status::Warning)
            .found("no DKIM keys: mail from this server is not signed")
            .fix("tern dkim keygen --all-missing, then publish what tern dns prints")),
        Err(e) => Err(Check::new("dkim", "keys", Status::Failed)
            .found(e.to_string())
            .fix("tern dkim keygen --all-missing (or correct [dkim] in tern.toml)")),
    }
}

/// `tern dns`: the records to publish, for the config at `path`.
pub fn dns_command(source: &Source) -> Result<String, CheckError> {
    let config = source.load()?;
    let keys = match signing_keys(&config) {
        Ok(keys) => keys,
        Err(check) => {
            eprintln!("tern: {}", check.found);
            Vec::new()
        }
    };
    Ok(records::zone_snippets(&config, &keys))
}

/// `tern check`: every check, for the config at `path`, at `now`.
pub fn check_command(
    source: &Source,
    now: SystemTime,
    queue: impl FnOnce(&Config) -> Result<Vec<MessageSummary>, String>,
) -> Result<Report, CheckError> {
    let config = source.load()?;
    let queue = queue_checks(queue(&config), now);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CheckError::Runtime)?;
    let mut checks = runtime.block_on(async {
        let resolver = crate::outbound::resolver::tokio_resolver(&config.relay.nameservers)
            .map_err(CheckError::Resolver)?;
        Ok::<_, CheckError>(live::run(&config, &resolver).await)
    })?;
    checks.extend(certs::check(&config, now));
    checks.extend(queue);
    Ok(Report::new(checks))
}

/// `tern dns` on the command line: the records on stdout; the exit code.
pub fn dns_cli(source: &Source) -> u8 {
    match dns_command(source) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `tern check` on the command line: the table (or JSON) on stdout; exit
/// code 0 when nothing failed, 1 when a check failed or none could run.
/// `queue` lists the queued messages (the daemon's list, or the spool's
/// when it is down: `control::command::queued_messages`).
pub fn check_cli(
    source: &Source,
    json: bool,
    queue: impl FnOnce(&Config) -> Result<Vec<MessageSummary>, String>,
) -> u8 {
    let report = match check_command(source, SystemTime::now(), queue) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("tern: {e}");
            return 1;
        }
    };
    if !crate::terminal::print_report(&report, json, Report::table) {
        return 1;
    }
    u8::from(!report.ok)
}

/// The queue's check, from the list of queued messages (or why there is
/// none).
fn queue_checks(listed: Result<Vec<MessageSummary>, String>, now: SystemTime) -> Vec<Check> {
    match listed {
        Ok(messages) => vec![queue_check(&messages, now)],
        Err(e) => vec![Check::new("queue", "deferred", Status::Warning).found(e)],
    }
}

/// Deferred messages (tried and waiting for another attempt, not held) and
/// their most common reasons.
pub fn queue_check(messages: &[MessageSummary], now: SystemTime) -> Check {
    let deferred: Vec<&MessageSummary> = messages
        .iter()
        .filter(|m| m.attempts > 0 && !m.held)
        .collect();
    if deferred.is_empty() {
        return Check::new("queue", "deferred", Status::Ok)
            .found(format!("none ({} message(s) queued)", messages.len()));
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for m in &deferred {
        let reason: String = m
            .last_errors
            .first()
            .map_or_else(|| "no reason recorded".to_string(), ToString::to_string)
            .chars()
            .take(100)
            .collect();
        *reasons.entry(reason).or_default() += 1;
    }
    let mut common: Vec<(String, usize)> = reasons.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let oldest = deferred.iter().map(|m| m.received_at).min().unwrap_or(0);
    let age = crate::queue::scheduler::age(oldest, now);
    let mut fix = String::new();
    for (reason, n) in common.iter().take(3) {
        let _ = writeln!(fix, "{n} x {reason}");
    }
    fix.push_str("tern queue list shows them; tern queue flush retries now");
    Check::new("queue", "deferred", Status::Warning)
        .found(format!(
            "{} deferred message(s), the oldest {} min old",
            deferred.len(),
            age.as_secs() / 60
        ))
        .fix(fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueId;

    fn message(attempts: u32, held: bool, error: &str) -> MessageSummary {
        MessageSummary {
            id: QueueId(1),
            received_at: 0,
            size: 1,
            sender: String::new(),
            pending: vec!["a@b.example".into()],
            recipients: 1,
            attempts,
            next_attempt: 0,
            held,
            last_errors: vec![crate::queue::Diagnostic::note(
                crate::smtp::EnhancedCode(4, 0, 0),
                error,
            )],
        }
    }

    #[test]
    fn the_queue_check_counts_deferred_mail_and_names_common_reasons() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(600);
        assert_eq!(queue_check(&[], now).status, Status::Ok);
        let check = queue_check(
            &[
                message(1, false, "451 4.4.1 timeout"),
                message(2, false, "451 4.4.1 timeout"),
                message(1, false, "421 busy"),
                message(1, true, "held one"),
                message(0, false, "new"),
            ],
            now,
        );
        assert_eq!(check.status, Status::Warning);
        assert_eq!(check.found, "3 deferred message(s), the oldest 10 min old");
        let fix = check.fix.unwrap();
        assert!(
            fix.starts_with("2 x 451 4.4.1 timeout\n1 x 421 busy\n"),
            "{fix}"
        );
    }

    #[test]
    fn the_table_shows_fixes_under_their_row_and_the_totals() {
        let report = Report::new(vec![
            Check::new("mx", "example.org", Status::Ok).found("10 mx.example.org"),
            Check::new("dmarc", "example.org", Status::Failed)
                .found("no DMARC record")
                .fix("_dmarc.example.org. IN TXT \"v=DMARC1; p=none\""),
        ]);
        assert!(!report.ok);
        let table = report.table();
        assert!(
            table.contains("FAILED   dmarc example.org no DMARC record\n"),
            "{table}"
        );
        assert!(
            table.contains("         fix: _dmarc.example.org. IN TXT"),
            "{table}"
        );
        assert!(table.ends_with("1 ok, 0 warning(s), 1 failed, 0 skipped\n"));
    }
}
