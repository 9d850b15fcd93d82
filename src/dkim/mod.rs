//! DKIM signing (RFC 6376) of the mail our users send: every message whose
//! `From:` domain is one of the `[dkim]` domains gets two signatures, an
//! rsa-sha256 one and an ed25519-sha256 one (RFC 8463), both relaxed/relaxed,
//! once, when it is accepted and before it is spooled.
//!
//! mail-auth (pinned at 0.13.3, ring backend) does the canonicalization,
//! hashing, signing and the `DKIM-Signature:` text; this module decides what
//! is signed, with what, and when: which header fields go into `h=`, the
//! signing domain from `From:`, the time (`t=`, from the caller's clock, DESIGN
//! invariant 7: mail-auth's own `sign` reads the system clock, so we drive its
//! lower-level pieces instead).
//!
//! - [`keys`]: key files, key generation, the DNS records to publish.
//! - [`command`]: `tern dkim keygen` and `tern dkim dns`.
//!
//! The header fields of a message (which go into `h=`, and the author's
//! domain) are read with [`crate::message`].

pub mod command;
pub mod keys;

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_auth::common::crypto::{Algorithm, HashContext, HashImpl, Sha256, SigningKey};
use mail_auth::dkim::canonicalize::BodyHasher;
use mail_auth::dkim::{Canonicalization, Signature};

use crate::config::{Config, ConfigError, Dkim};
use crate::message::{self as headers, Field};
use keys::{DomainKeys, KeyKind};

/// The header fields we sign when the message has them, in `h=` order
/// (RFC 6376 §5.4.1: those that carry the message's meaning; never trace
/// fields like `Received:`, which later hops add to). Those of
/// [`OVERSIGNED_FIELDS`] are listed once more than they occur (see
/// [`signed_fields`]).
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "Content-Description",
    "Content-Language",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// The fields a reader's mail program shows, or that decide how it shows
/// the body: each is listed in `h=` once more than the message has it, once
/// when it has none (RFC 6376 §8.15, "oversigning"), so that one added after
/// signing (a second `Subject:`, a `To:`, a `Date:`, a `Reply-To:`) breaks the
/// signature instead of being shown under it. The rest of [`SIGNED_FIELDS`]
/// (`List-*`, which mailing lists add, `Content-Disposition`...) is signed
/// only as it occurs.
pub const OVERSIGNED_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The longest header section we sign: it is held in memory while the body
/// is hashed. Real header sections are a few KiB.
pub const MAX_HEADER_SECTION: usize = 1 << 20;

/// How much of the body is read at a time.
const READ_CHUNK: usize = 64 << 10;

/// What can go wrong with keys and signing.
///
/// Nothing here reaches an SMTP client: a message that cannot be signed is
/// queued unsigned (see `inbound::connection`), and key problems stop the
/// server at start, as config errors at the `[dkim]` table.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// A key file that the config implies does not exist.
    #[error("DKIM key {} is missing: run tern dkim keygen --domain {domain}", path.display())]
    MissingKey { path: PathBuf, domain: String },
    /// A key file exists but cannot be read (permissions, I/O).
    #[error("cannot read DKIM key {}: {error}", path.display())]
    ReadKey { path: PathBuf, error: io::Error },
    /// A key file holds no usable key of its kind.
    #[error("DKIM key {} is not a usable {} private key: {reason}", path.display(), kind.name())]
    BadKey {
        path: PathBuf,
        kind: KeyKind,
        reason: String,
    },
    /// A domain or selector given to `tern dkim keygen` is not valid.
    #[error("{0}")]
    BadName(String),
    /// `tern dkim keygen` without `--force` found a key in place.
    #[error(
        "DKIM key {} already exists: keep it, or replace both keys of {domain} with --force \
         (and then publish the new DNS records)",
        path.display()
    )]
    KeyExists { path: PathBuf, domain: String },
    /// Writing a new key (or creating its directory) failed.
    #[error("cannot write DKIM key {}: {error}", path.display())]
    WriteKey { path: PathBuf, error: io::Error },
    /// The random generator or the key encoder failed.
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
    /// The message could not be read back (a spilled body's file).
    #[error("cannot read the message to sign: {0}")]
    Read(#[from] io::Error),
    /// The header section is longer than [`MAX_HEADER_SECTION`].
    #[error("the header section is longer than {MAX_HEADER_SECTION} bytes")]
    HeaderTooLarge,
    /// The signing primitive failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One log line per domain `signer` signs for.
pub fn log_domains(signer: Option<&Signer>) {
    for keys in signer.iter().flat_map(|s| s.domains()) {
        log::info!(
            "dkim: signing mail from {} (selectors {}, {})",
            keys.domain,
            KeyKind::Rsa.selector(&keys.selector),
            KeyKind::Ed25519.selector(&keys.selector)
        );
    }
}

/// Signs messages for the configured domains. Built at start and on reload
/// ([`Signer::from_config`]); shared by all connections.
#[derive(Debug)]
pub struct Signer {
    domains: Vec<DomainKeys>,
}

impl Signer {
    /// A signer for these domains.
    pub fn new(domains: Vec<DomainKeys>) -> Signer {
        Signer { domains }
    }

    /// Loads the keys of every domain of `[dkim]`.
    pub fn load(dkim: &Dkim) -> Result<Signer, DkimError> {
        let domains = dkim
            .domains
            .iter()
            .map(|domain| DomainKeys::load(&dkim.keys_dir, domain, &dkim.selector))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Signer::new(domains))
    }

    /// The signer `config` asks for. With a `[dkim]` table every key it
    /// names must be there: a missing or broken one is a config error at the
    /// table, e.g. `tern.toml:40:1: DKIM key
    /// /var/lib/tern/dkim/example.org.tern.rsa.pem is missing: run tern dkim
    /// keygen --domain example.org`. Without one, the local domains whose keys
    /// are in `<data_dir>/dkim` under the default selector are signed (the
    /// appliance makes them on first boot); `None` when there are none.
    pub fn from_config(config: &Config) -> Result<Option<Signer>, ConfigError> {
        let Some(dkim) = &config.dkim else {
            return Ok(Signer::available(config));
        };
        Signer::load(dkim)
            .map(Some)
            .map_err(|e| dkim.place.error(e.to_string()))
    }

    /// Without `[dkim]`: the domains that have both keys in `<data_dir>/dkim`.
    fn available(config: &Config) -> Option<Signer> {
        let dir = config.data_dir.join("dkim");
        let selector = crate::config::DEFAULT_DKIM_SELECTOR;
        let mut domains = Vec::new();
        for domain in &config.domains {
            let present = keys::KeyKind::ALL
                .iter()
                .all(|k| k.path(&dir, domain, selector).is_file());
            if !present {
                log::info!("dkim: no keys for {domain} in {}; its mail is not signed (tern dkim keygen --domain {domain})", dir.display());
                continue;
            }
            match DomainKeys::load(&dir, domain, selector) {
                Ok(keys) => domains.push(keys),
                Err(e) => log::error!("dkim: {e}; mail from {domain} is not signed"),
            }
        }
        (!domains.is_empty()).then(|| Signer::new(domains))
    }

    /// The keys of each signing domain.
    pub fn domains(&self) -> &[DomainKeys] {
        &self.domains
    }

    /// The keys of each signing domain, taken out.
    pub fn into_domains(self) -> Vec<DomainKeys> {
        self.domains
    }

    /// The `DKIM-Signature:` fields to put in front of `message` (CRLF line
    /// ends, folded, each ending in CRLF; the rsa-sha256 one first), or `None`
    /// when the message is not ours to sign: its `From:` is not exactly one
    /// mailbox at one of our domains (logged). `now` is the signing time.
    pub fn sign(&self, message: &[u8], now: SystemTime) -> Result<Option<Vec<u8>>, DkimError> {
        self.sign_reader(message, now)
    }

    /// [`Signer::sign`] for a message read from `message`: only the header
    /// section is held in memory (at most [`MAX_HEADER_SECTION`]); the body
    /// is hashed as it is read.
    pub fn sign_reader(
        &self,
        mut message: impl Read,
        now: SystemTime,
    ) -> Result<Option<Vec<u8>>, DkimError> {
        let head = HeaderSection::read(&mut message)?;
        let fields = headers::fields(head.section());
        let domain = match headers::author_domain(&fields) {
            Ok(domain) => domain,
            Err(why) => {
                log::warn!("dkim: not signing: {why}");
                return Ok(None);
            }
        };
        let Some(keys) = self.domains.iter().find(|k| k.domain == domain) else {
            log::debug!("dkim: not signing: From: domain {domain} is not a signing domain");
            return Ok(None);
        };
        // Both signatures use SHA-256 and relaxed body canonicalization: one
        // body hash serves both.
        let mut body =
            BodyHasher::new(<Sha256 as HashImpl>::hasher(), Canonicalization::Relaxed, 0);
        body.write(head.body_start());
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => body.write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let body_hash = body.finish().0.complete().as_ref().to_vec();
        let (names, chosen) = signed_fields(&fields);
        let mut canonical_headers = Vec::with_capacity(head.section().len());
        Canonicalization::Relaxed.canonicalize_headers(chosen.into_iter(), &mut canonical_headers);
        let t = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = Vec::with_capacity(1536);
        for kind in KeyKind::ALL {
            let mut signature = Signature {
                v: 1,
                a: match kind {
                    KeyKind::Rsa => Algorithm::RsaSha256,
                    KeyKind::Ed25519 => Algorithm::Ed25519Sha256,
                },
                d: keys.domain.clone(),
                s: kind.selector(&keys.selector),
                bh: body_hash.clone(),
                h: names.clone(),
                t,
                ch: Canonicalization::Relaxed,
                cb: Canonicalization::Relaxed,
                ..Signature::default()
            };
            // RFC 6376 §3.7: the selected fields, then this DKIM-Signature
            // field with an empty b=, canonicalized, without its final CRLF.
            let mut signed = canonical_headers.clone();
            signature.write(&mut signed, false);
            let result = match kind {
                KeyKind::Rsa => keys.rsa.sign(signed.as_slice()),
                KeyKind::Ed25519 => keys.ed25519.sign(signed.as_slice()),
            };
            signature.b = result.map_err(|e| DkimError::Sign(e.to_string()))?;
            let mut field = Vec::with_capacity(768);
            signature.write(&mut field, true);
            out.extend_from_slice(&no_fold_before_the_end(fold_before_domain(&field)));
        }
        log::debug!("dkim: signed as {domain}");
        Ok(Some(out))
    }
}

/// mail-auth writes `v=`, `a=`, `s=`, `d=` and `c=` on the first line,
/// which passes 78 characters with most names; fold it before `d=`. Folding
/// at a space changes nothing a verifier sees: relaxed header
/// canonicalization unfolds and turns white space runs into one space (RFC
/// 6376 §3.4.2), and it is what our signatures use.
fn fold_before_domain(field: &[u8]) -> Vec<u8> {
    let first_line = field
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(field.len());
    match field[..first_line].windows(4).position(|w| w == b"; d=") {
        Some(i) => [&field[..=i], b"\r\n\t", &field[i + 2..]].concat(),
        None => field.to_vec(),
    }
}

/// mail-auth folds after the last line of `b=` when that line fills up,
/// even when only the closing `;` follows: `b=...xyz\r\n\t;`. RFC 6376
/// §3.7 has the verifier delete the `b=` value with the white space around
/// it, but dkimpy (and so the Python milters and list servers built on it)
/// deletes only the base64 and the folds inside it, keeps that last fold,
/// and fails the signature whenever the last line of `b=` ends exactly at
/// mail-auth's fold width. Put the `;` on that line instead (77 characters).
fn no_fold_before_the_end(mut field: Vec<u8>) -> Vec<u8> {
    if field.ends_with(b"\r\n\t;\r\n") {
        let end = field.len() - b"\r\n\t;\r\n".len();
        field.truncate(end);
        field.extend_from_slice(b";\r\n");
    }
    field
}

/// A field's name and raw value, as mail-auth canonicalizes them.
type NameAndValue<'a> = (&'a [u8], &'a [u8]);

/// `h=` and the fields it selects, in `h=` order. Each name of
/// [`SIGNED_FIELDS`] the message has is listed once per occurrence, and its
/// occurrences are taken from the bottom up, as a verifier takes them (RFC
/// 6376 §5.4.2). Each name of [`OVERSIGNED_FIELDS`] is listed once more
/// than it occurs: that entry selects nothing now (a field that does not
/// exist adds nothing to the hash, §5.4.2), but one more such field added
/// later is selected by it and breaks the signature (§8.15, "oversigning").
fn signed_fields<'a>(fields: &[Field<'a>]) -> (Vec<String>, Vec<NameAndValue<'a>>) {
    let mut names = Vec::new();
    let mut chosen = Vec::new();
    for &name in SIGNED_FIELDS {
        let present = fields
            .iter()
            .rev()
            .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()));
        for field in present {
            names.push(name.to_string());
            chosen.push((field.name, field.value));
        }
        if OVERSIGNED_FIELDS.contains(&name) {
            names.push(name.to_string());
        }
    }
    (names, chosen)
}

/// The start of a message: its header section and whatever of the body came
/// with it.
struct HeaderSection {
    bytes: Vec<u8>,
    /// The end of the header section: after the CRLF of its last field.
    section_end: usize,
    /// The start of the body: after the empty line.
    body_start: usize,
}

impl HeaderSection {
    /// Reads until the empty line that ends the header section (RFC 5322
    /// §2.1), or to the end of a message that has no body.
    fn read(message: &mut impl Read) -> Result<HeaderSection, DkimError> {
        let mut bytes = Vec::with_capacity(8192);
        let mut buf = [0u8; 8192];
        // Where the search for the empty line goes on from.
        let mut searched = 0;
        loop {
            if bytes.starts_with(b"\r\n") {
                // No header fields at all.
                return Ok(HeaderSection {
                    bytes,
                    section_end: 0,
                    body_start: 2,
                });
            }
            if let Some(i) = bytes[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
                let section_end = searched + i + 2;
                if section_end > MAX_HEADER_SECTION {
                    return Err(DkimError::HeaderTooLarge);
                }
                return Ok(HeaderSection {
                    bytes,
                    section_end,
                    body_start: section_end + 2,
                });
            }
            searched = bytes.len().saturating_sub(3);
            if bytes.len() > MAX_HEADER_SECTION {
                return Err(DkimError::HeaderTooLarge);
            }
            let n = match message.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                let end = bytes.len();
                return Ok(HeaderSection {
                    bytes,
                    section_end: end,
                    body_start: end,
                });
            }
            bytes.extend_from_slice(&buf[..n]);
        }
    }

    fn section(&self) -> &[u8] {
        &self.bytes[..self.section_end]
    }

    /// The part of the body read along with the header section.
    fn body_start(&self) -> &[u8] {
        &self.bytes[self.body_start..]
    }
}

#[cfg(test)]
mod tests;
