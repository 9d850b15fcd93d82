//! Target `message_header`: the header section parser (`tern::message`) that
//! DKIM signing, `sendmail -t` and the sender rules read messages with, and
//! DKIM signing itself ([`Signer::sign`]) with keys made once per process.
//!
//! Input: a message (header section, maybe a body).
//!
//! Invariants: no panic; the header section is a prefix of the message and
//! the field lines are a prefix of it; every field's name is printable
//! ASCII without a colon and its value a slice of the section, fields in
//! order; every address returned has a local part and a non-empty domain;
//! an author domain has no ASCII upper case (DNS case-folding); the `DKIM-Signature:` fields a signature
//! adds are well-formed header fields (CRLF, folded lines).

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use tern::dkim::keys::keygen;
use tern::dkim::Signer;
use tern::message::{
    addresses, author_domain, fields, header_fields_len, header_section, mailboxes,
};

use super::smtp_data::has_bare_line_ending;

/// A signer for example.org; the keys live in a directory kept for the
/// process's lifetime.
fn signer() -> &'static Signer {
    static SIGNER: OnceLock<(tempfile::TempDir, Signer)> = OnceLock::new();
    &SIGNER
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("tern-fuzz-dkim")
                .tempdir()
                .expect("temporary directory");
            let keys = keygen(dir.path(), "example.org", "fuzz", false).expect("DKIM keygen");
            (dir, Signer::new(vec![keys]))
        })
        .1
}

fn check_address(a: &str) {
    let (local, domain) = a
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{a:?} has no @"));
    assert!(!domain.is_empty(), "{a:?} has no domain");
    let _ = local;
}

/// Parses and signs `data` (see the module documentation).
pub fn run(data: &[u8]) {
    let section = header_section(data);
    assert!(data.starts_with(section));
    assert!(header_fields_len(data) <= data.len());
    let all = fields(section);
    let mut last = 0;
    let base = section.as_ptr() as usize;
    for f in &all {
        assert!(!f.name.is_empty());
        assert!(f
            .name
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b':'));
        let start = f.value.as_ptr() as usize - base;
        assert!(
            start >= last && start + f.value.len() <= section.len(),
            "field out of order"
        );
        last = start + f.value.len();
        for list in [addresses(f.value), mailboxes(f.value)]
            .into_iter()
            .flatten()
        {
            list.iter().for_each(|a| check_address(a));
        }
    }
    if let Ok(domain) = author_domain(&all) {
        assert!(!domain.is_empty());
        // Case-folded as DNS names are (ASCII only, RFC 4343).
        assert!(
            !domain.bytes().any(|b| b.is_ascii_uppercase()),
            "{domain:?}"
        );
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(Some(signature)) = signer().sign(data, now) {
        assert!(signature.ends_with(b"\r\n") && !has_bare_line_ending(&signature));
        assert!(signature.starts_with(b"DKIM-Signature:"));
        for line in signature.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(
                line.starts_with(b"DKIM-Signature:") || matches!(line[0], b' ' | b'\t'),
                "signature line not folded: {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
