//! Configuration: `tern.toml` → [`raw::RawConfig`] (serde, `deny_unknown_fields`,
//! spans kept) → validated [`Config`]. Everything downstream takes a `Config` and
//! never re-checks it ("parse, don't validate"). Errors carry `file:line:col` and
//! what was expected ([`ConfigError`]).
//!
//! The reference file `config/tern.toml` documents every key; which file a
//! command uses is [`Source`]'s rule, and the embedded default it falls back
//! to is [`DEFAULT_TOML`].

mod error;
mod names;
mod placeholder;
mod raw;
mod source;
mod syntax;
mod units;
mod validate;
mod web;

pub use error::{ConfigError, Place, Position};
pub(crate) use names::{dns_name_problem, selector_problem};
pub use source::{Source, CONFIG_ENV, SYSTEM_CONFIG};
pub use units::{parse_duration, parse_size};
pub use web::{
    Acme, Autoconfig, Challenge, MtaSts, MtaStsMode, LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration `tern serve` runs with when no `--config` is given: listens on
/// 127.0.0.1:2525, keeps its data in `./tern-data`, serves domain `localhost` with
/// one user `me`, and generates a self-signed certificate on first start.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A validated configuration. Construct with [`Config::load`] or [`Config::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Our name in the banner, EHLO replies, `Received:` and Maildir file names.
    pub hostname: String,
    /// Root of the spool, the Maildirs and generated certificates.
    pub data_dir: PathBuf,
    pub listeners: Vec<Listener>,
    pub tls: TlsConfig,
    /// Local domains, lowercase, without trailing dot. Never empty.
    pub domains: Vec<String>,
    /// Local users by lowercase name. Never empty.
    pub users: BTreeMap<String, User>,
    /// The user that `postmaster@` each local domain reaches unless an alias says
    /// otherwise (RFC 5321 §4.5.1). Always a key of `users`.
    pub postmaster: String,
    pub aliases: Vec<Alias>,
    /// Plus-addressing separator: `me+tag@` reaches `me`. `None` turns it off.
    pub recipient_delimiter: Option<char>,
    pub limits: Limits,
    /// How mail leaves for other servers (`[relay]`, `[relay.smarthost]`, `[[route]]`).
    pub relay: Relay,
    /// Retry schedule and lifetime of queued mail (`[queue]`).
    pub queue: QueueSettings,
    /// How submitted mail is traced (`[submission]`).
    pub submission: Submission,
    /// DKIM signing of submitted mail (`[dkim]`); `None`: nothing is signed.
    pub dkim: Option<Dkim>,
    /// Checks on mail from other servers (`[mx]`).
    pub mx: MxPolicy,
    /// The user database written for Dovecot (`[dovecot]`); `None`: none.
    pub dovecot: Option<DovecotUsers>,
    /// `[local_senders]`: what each Unix login (other than root and group
    /// tern) may use as envelope sender and in From: when it runs
    /// `sendmail`, besides `<login>@<hostname>`. Keyed by login, as written.
    pub local_senders: BTreeMap<String, Vec<SenderPattern>>,
    /// The addresses the world reaches this server at: `public_addresses`,
    /// or else the listeners' addresses that are neither wildcard nor
    /// loopback (possibly none). What `tern dns` publishes and `tern check`
    /// looks up (A/AAAA, PTR, SPF, blocklists).
    pub public_addresses: Vec<IpAddr>,
    /// Whether `public_addresses` was written in the file (or taken from
    /// the listeners).
    pub public_addresses_configured: bool,
    /// What `tern check` looks at besides the DNS records (`[check]`).
    pub check: CheckSettings,
    /// The logins of this host (from /etc/passwd, read by [`Config::load`];
    /// empty after [`Config::parse`]), lowercased: mail to them at the
    /// hostname is system mail for the postmaster (see `routing::directory`).
    pub system_accounts: BTreeSet<String>,
    /// Certificates from an ACME CA (`[acme]`); `None`: `[tls]` decides.
    pub acme: Option<Acme>,
    /// The MTA-STS policy on the https listener (`[mta_sts]`); `None`: off.
    pub mta_sts: Option<MtaSts>,
    /// Mail-client autoconfiguration on the https listener (`[autoconfig]`);
    /// `None`: off.
    pub autoconfig: Option<Autoconfig>,
    /// The spam filter (`[spam]`); `None`: no message is scanned.
    pub spam: Option<SpamFilter>,
}

/// `[spam]`: messages are scanned by rspamd after the data, before the
/// reply (see `crate::inbound::spam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamFilter {
    /// rspamd's normal worker (HTTP `/checkv2`), e.g. 127.0.0.1:11333.
    pub rspamd: SocketAddr,
    /// The longest a scan may take, connection to answer. Default 10 s.
    pub timeout: Duration,
    /// What a message gets when rspamd is down, slow or answers nonsense.
    pub on_failure: SpamFailure,
    /// Scan mail from logged-in users and local sendmail too. Default off:
    /// only anonymous mail on the mx listeners is scanned.
    pub scan_authenticated: bool,
}

/// What to do when rspamd cannot give an answer (`[spam] on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamFailure {
    /// Deliver as if it had said "no action", with a warning in the journal
    /// (the default: a broken filter loses no mail).
    Accept,
    /// 451 4.7.1: the sender retries later.
    Tempfail,
}

/// `[check]`: settings of `tern check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSettings {
    /// DNS blocklist zones (lowercase) each public address is looked up in,
    /// e.g. `zen.spamhaus.org`. Default: none.
    pub blocklists: Vec<String>,
}

/// Where tern writes Dovecot's user database (`[dovecot]`, see
/// `crate::dovecot`): a passwd-file with every user that has a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotUsers {
    /// The file (written atomically, mode 0640).
    pub users_file: PathBuf,
    /// The group that may read it (Dovecot's auth process runs as
    /// `dovecot`); `None` keeps the daemon's own group.
    pub group: Option<String>,
}

/// Checks on mail arriving on the mx listeners from other servers (`[mx]`).
/// Logged-in users and local sendmail are ours and never checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxPolicy {
    /// Refuse a sender whose domain cannot receive a reply: NXDOMAIN, null
    /// MX, or neither MX nor address records. Default on.
    pub verify_sender_domain: bool,
    /// Sender domains not looked up (lowercase), for partners whose DNS is
    /// broken.
    pub sender_domain_exempt: Vec<String>,
    /// The longest one check may wait for DNS, per message. Default 5 s.
    pub dns_timeout: Duration,
    /// Check SPF, DKIM, DMARC and iprev and add Authentication-Results.
    /// Default on.
    pub authenticate: bool,
    /// A DMARC failure of a domain whose policy is `p=reject` is refused
    /// (550 5.7.1); off, it goes to Junk. Default on.
    pub dmarc_reject: bool,
    /// What an SPF fail of MAIL FROM does when DMARC does not pass.
    pub spf_fail: SpfFailAction,
    /// Messages larger than this are not DKIM-verified (mail-auth holds the
    /// whole message in memory): `dkim=none`. Default 4 MiB.
    pub dkim_max_size: u64,
}

/// What to do with mail whose MAIL FROM fails SPF (`[mx] spf_fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfFailAction {
    /// Deliver normally, the result recorded (the default: forwarding
    /// breaks SPF).
    Deliver,
    /// Deliver to the Junk folder.
    Junk,
    /// Refuse at the end of DATA with 550 5.7.23.
    Reject,
}

/// An address someone may send as beyond their own (`send_as` of a
/// `[[user]]`, the values of `[local_senders]`). Always at a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPattern {
    /// `name@domain` (both lowercase): that address, with or without a
    /// `+tag`.
    Address { local: String, domain: String },
    /// `@domain` (lowercase): every address at that domain.
    Domain(String),
}

impl SenderPattern {
    /// Does `local@domain` (any case) match? `delimiter` is the
    /// recipient delimiter: `shared+x@` matches `shared@`.
    pub fn matches(&self, local: &str, domain: &str, delimiter: Option<char>) -> bool {
        match self {
            SenderPattern::Domain(d) => d.eq_ignore_ascii_case(domain),
            SenderPattern::Address {
                local: l,
                domain: d,
            } => {
                let local = local.to_lowercase();
                let base = match delimiter {
                    Some(c) => local.split_once(c).map_or(local.as_str(), |(b, _)| b),
                    None => local.as_str(),
                };
                d.eq_ignore_ascii_case(domain) && (*l == local || l == base)
            }
        }
    }
}

impl std::fmt::Display for SenderPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderPattern::Address { local, domain } => write!(f, "{local}@{domain}"),
            SenderPattern::Domain(domain) => write!(f, "@{domain}"),
        }
    }
}

/// The base DKIM selector when `[dkim]` names none.
pub const DEFAULT_DKIM_SELECTOR: &str = "tern";

/// DKIM signing (`[dkim]`, see `crate::dkim`): mail submitted by our users
/// whose From: domain is one of `domains` gets an rsa-sha256 and an
/// ed25519-sha256 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// The base selector (lowercase). Each key has its own selector: the RSA
    /// key is published at `<selector>-rsa._domainkey.<domain>`, the Ed25519
    /// key at `<selector>-ed25519._domainkey.<domain>`. Default `tern`.
    pub selector: String,
    /// The directory holding the private keys,
    /// `<domain>.<selector>.rsa.pem` and `<domain>.<selector>.ed25519.pem`.
    /// Default `<data_dir>/dkim`.
    pub keys_dir: PathBuf,
    /// The signing domains (lowercase, each a local domain). Default: all
    /// local domains.
    pub domains: Vec<String>,
    /// Where `[dkim]` is written, for a key file found missing at start.
    pub place: Place,
}

/// Settings of the submission ports (587, 465).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submission {
    /// Put the client's address and login in the `Received:` header of
    /// submitted mail. Off by default: it would tell every recipient where
    /// the owner was when sending.
    pub trace: bool,
}

/// How mail for other domains is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// DNS servers to ask (`ip:port`, port 53 if omitted in the file); empty means
    /// the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// The port remote MX hosts are contacted on: 25 on the Internet (tests use
    /// others).
    pub port: u16,
    /// TLS policy for delivery by MX unless a route says otherwise.
    pub tls: TlsPolicy,
    /// PEM bundle of trusted certificate authorities, for verified TLS
    /// (`tls = "required"` and smarthosts). Default
    /// `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: PathBuf,
    /// Send everything through this server instead of MX lookups.
    pub smarthost: Option<Smarthost>,
    /// Per-domain exceptions: a fixed host and/or a TLS policy.
    pub routes: Vec<DomainRoute>,
    /// Connections to one destination domain at the same time (default 4).
    pub concurrency_per_destination: usize,
    /// Time to establish a TCP connection (default 30s).
    pub connect_timeout: Duration,
    /// Time to wait for any reply of the remote server (default 5m; the reply to
    /// the final dot gets twice this, RFC 5321 §4.5.3.2.6).
    pub command_timeout: Duration,
}

/// TLS towards other servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered, certificate not verified (RFC 7435); plaintext
    /// otherwise.
    Opportunistic,
    /// STARTTLS required and the certificate verified against `ca_file` for the
    /// host name; otherwise the delivery is deferred.
    Required,
}

/// A relay host that takes all outgoing mail (for ISPs that block port 25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    /// A DNS name (lowercase) or an IP address (IPv6 without brackets).
    pub host: String,
    /// Default 587 (465 when `tls` is implicit).
    pub port: u16,
    pub tls: SmarthostTls,
    /// Credentials for AUTH PLAIN/LOGIN, sent only over verified TLS.
    pub auth: Option<Credentials>,
}

/// How TLS starts with the smarthost. The certificate is always verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmarthostTls {
    /// STARTTLS on a plain connection (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// A user name and password for a smarthost.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

/// A per-domain exception to MX delivery (`[[route]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRoute {
    /// The recipient domain (lowercase), exact match.
    pub domain: String,
    /// Deliver to this host (and port, default `relay.port`) instead of the MX.
    /// The host is a DNS name (lowercase) or an IP address (IPv6 without
    /// brackets).
    pub host: Option<(String, u16)>,
    /// TLS policy for this domain instead of `relay.tls`.
    pub tls: Option<TlsPolicy>,
}

/// The queue's retry schedule (`[queue]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Bounce what could not be delivered in this time (default 5d).
    pub lifetime: Duration,
    /// Tell the sender once a message has waited this long (default 4h).
    pub delay_notice: Duration,
    /// First retry after this (default 5m); doubles each time.
    pub retry_first: Duration,
    /// Longest wait between attempts (default 4h).
    pub retry_max: Duration,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            nameservers: Vec::new(),
            port: 25,
            tls: TlsPolicy::Opportunistic,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            smarthost: None,
            routes: Vec::new(),
            concurrency_per_destination: 4,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            lifetime: Duration::from_secs(5 * 86_400),
            delay_notice: Duration::from_secs(4 * 3600),
            retry_first: Duration::from_secs(300),
            retry_max: Duration::from_secs(4 * 3600),
        }
    }
}

/// One listening socket and the role it plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub role: Role,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail from the world for our domains. STARTTLS offered.
    Mx,
    /// Port 587: STARTTLS, then AUTH, then relay (RFC 6409).
    Submission,
    /// Port 465: implicit TLS from the first byte (RFC 8314).
    Submissions,
    /// Port 443: ACME TLS-ALPN-01, the MTA-STS policy, client autoconfig.
    Https,
    /// Port 80: ACME HTTP-01; everything else is redirected to https.
    Http,
}

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// PEM files given by the owner.
    Files { cert: PathBuf, key: PathBuf },
    /// Generate a self-signed certificate for `hostname` under
    /// `data_dir/tls/` on first start, reuse it afterwards.
    SelfSigned,
}

/// A local user: one Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Lowercase login name; also the local part it receives at every local domain.
    pub name: String,
    /// The Maildir (containing tmp/, new/, cur/).
    pub maildir: PathBuf,
    /// The argon2id hash (PHC string) of the password for AUTH on the
    /// submission ports; `None`: this user cannot log in.
    pub password: Option<String>,
    /// Addresses this user may send as besides its own name and the
    /// aliases that deliver to it (`send_as`), at MAIL FROM and in From:.
    pub send_as: Vec<SenderPattern>,
}

/// One alias line: mail for `source` goes to every target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub source: AliasSource,
    pub targets: Vec<AliasTarget>,
}

/// The addresses an alias matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasSource {
    /// `name@domain`: exactly that address (domain is local).
    Address { local: String, domain: String },
    /// `name`: that local part at every local domain.
    LocalPart(String),
    /// `@domain`: catch-all for anything else at that local domain.
    CatchAll(String),
}

/// Where aliased mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasTarget {
    /// A local user (key of `Config::users`).
    User(String),
    /// Any address outside our domains (handed to the outbound relay).
    Remote(String),
}

/// Every limit the server enforces (DESIGN invariant 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub message_size: u64,
    /// Recipients per transaction; more get 452 4.5.3. Also the most a
    /// local user without privileges may give one `sendmail`.
    pub recipients: usize,
    /// Messages one local Unix user (other than root and group tern) may
    /// queue through `sendmail` in any hour; more are refused for now.
    pub local_messages_per_hour: usize,
    /// `[limits] connections`: the default budget of concurrent connections
    /// of each listener role (see [`Limits::budget`]).
    pub connections: usize,
    /// `[limits] connections_per_ip`: the default per-address budget of each
    /// listener role.
    pub connections_per_ip: usize,
    /// The connection budget of each listener role: a flood on one never
    /// refuses another (`[limits.mx]`, `[limits.submission]`,
    /// `[limits.submissions]`, each defaulting to the two keys above).
    pub budgets: RoleBudgets,
    /// Free space kept in reserve on the filesystem of `data_dir`, in bytes:
    /// below it MAIL gets 452 4.3.1 (like Postfix's queue_minfree). 0: off.
    pub free_space: u64,
    /// Error replies per session before 421 4.7.0 and disconnect.
    pub errors: usize,
    /// Longest command line, CRLF included; longer get 500 5.5.2.
    pub line_length: usize,
    /// Idle time allowed while waiting for a command (RFC 5321 §4.5.3.2.7: 5 min).
    pub command_timeout: Duration,
    /// Idle time allowed between reads of message data (RFC 5321 §4.5.3.2.6: 3 min).
    pub data_timeout: Duration,
    /// Total time one connection may last.
    pub session_timeout: Duration,
    /// Bytes per second message data must average: a data phase must end
    /// within `data_timeout` plus the time this rate allows for what was
    /// received. 0: only `data_timeout` between reads applies.
    pub min_data_rate: u64,
}

/// How many connections one listener role takes at once: in all, and from
/// one client (an IPv4 address, or an IPv6 /64). More get 421 4.7.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub connections: usize,
    pub connections_per_ip: usize,
}

/// The connection budget of each listener role. Listeners of the same role
/// (say `0.0.0.0:25` and `[::]:25`) share their role's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleBudgets {
    pub mx: ConnectionBudget,
    pub submission: ConnectionBudget,
    pub submissions: ConnectionBudget,
    /// The https and http listeners together (the `[limits]` defaults).
    pub web: ConnectionBudget,
}

impl RoleBudgets {
    /// The budget of `role`.
    pub fn of(&self, role: Role) -> ConnectionBudget {
        match role {
            Role::Mx => self.mx,
            Role::Submission => self.submission,
            Role::Submissions => self.submissions,
            Role::Https | Role::Http => self.web,
        }
    }
}

impl Limits {
    /// The connection budget of listeners of `role`.
    pub fn budget(&self, role: Role) -> ConnectionBudget {
        self.budgets.of(role)
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, e))?;
        let mut config = Config::parse_bytes(&bytes, path)?;
        config.system_accounts = system_accounts(Path::new("/etc/passwd"));
        Ok(config)
    }

    /// [`Config::parse`] for the bytes of a file: one that is not UTF-8 is a
    /// mistake at the first byte that is not (TOML is UTF-8, TOML 1.0 §2).
    pub fn parse_bytes(bytes: &[u8], origin: &Path) -> Result<Config, ConfigError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Config::parse(text, origin),
            Err(e) => {
                let at = e.valid_up_to();
                let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
                Err(ConfigError::at(
                    origin,
                    valid,
                    at..at,
                    format!("byte 0x{:02x} is not UTF-8: expected UTF-8 text", bytes[at]),
                ))
            }
        }
    }

    /// Validates `text`; `origin` names the file in error messages, and relative
    /// paths in the text resolve against its directory.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw = raw::RawConfig::from_toml(text, origin)?;
        validate::validate(raw, text, origin)
    }

    /// The embedded default (see [`DEFAULT_TOML`]).
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TOML, Path::new("<embedded default>"))
            .expect("the embedded default config is valid")
    }

    /// Is `domain` (any case) the hostname, where system mail arrives?
    pub fn is_hostname(&self, domain: &str) -> bool {
        self.hostname.eq_ignore_ascii_case(domain)
    }

    /// Is `domain` (any case) one of ours?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// A one-line summary for `tern config check`, naming the file it came from:
    /// `ok: /etc/tern/tern.toml: hostname mail.example.org, 3 listeners (mx
    /// 0.0.0.0:25, submission 0.0.0.0:587, submissions 0.0.0.0:465), 2 domains,
    /// 2 users, 3 aliases`, then `, smarthost smtp.provider.example:587` when
    /// one is set and `, dkim for 2 domains (selector tern)` with `[dkim]`.
    pub fn summary(&self, origin: &Path) -> String {
        let listeners = self
            .listeners
            .iter()
            .map(|l| format!("{} {}", l.role.name(), l.address))
            .collect::<Vec<_>>()
            .join(", ");
        let smarthost = match &self.relay.smarthost {
            Some(s) if s.host.contains(':') => format!(", smarthost [{}]:{}", s.host, s.port),
            Some(s) => format!(", smarthost {}:{}", s.host, s.port),
            None => String::new(),
        };
        let dkim = match &self.dkim {
            Some(d) => format!(
                ", dkim for {} (selector {})",
                count(d.domains.len(), "domain", "domains"),
                d.selector
            ),
            None => String::new(),
        };
        format!(
            "ok: {}: hostname {}, {} ({listeners}), {}, {}, {}{smarthost}{dkim}",
            origin.display(),
            self.hostname,
            count(self.listeners.len(), "listener", "listeners"),
            count(self.domains.len(), "domain", "domains"),
            count(self.users.len(), "user", "users"),
            count(self.aliases.len(), "alias", "aliases"),
        )
    }

    /// The names an ACME certificate covers: the hostname, then
    /// `mta-sts.<domain>` and `autoconfig.<domain>` for each local domain
    /// when those services are on.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = vec![self.hostname.clone()];
        for (on, prefix) in [
            (self.mta_sts.is_some(), "mta-sts"),
            (self.autoconfig.is_some(), "autoconfig"),
        ] {
            if on {
                for domain in &self.domains {
                    let name = format!("{prefix}.{domain}");
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    /// Directory of the durable spool.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

/// `1 user`, `2 users`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Role {
    /// The name used in tern.toml.
    pub fn name(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
            Role::Https => "https",
            Role::Http => "http",
        }
    }

    /// Does this listener speak SMTP (rather than HTTP)?
    pub fn is_smtp(self) -> bool {
        matches!(self, Role::Mx | Role::Submission | Role::Submissions)
    }
}

/// The login names in the passwd file at `path`, lowercased; none when it
/// cannot be read (the file is read by hand: the static binary's NSS
/// lookups are not to be trusted for a whole listing).
pub fn system_accounts(path: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty() && !name.starts_with('#') && !name.starts_with('+'))
        .collect()
}
