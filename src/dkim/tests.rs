//! Unit tests of the signer: what is signed, when, with which tags. That the
//! signatures verify is checked independently, with dkimpy, in tests/dkim.rs.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keys::{keygen, DomainKeys, KeyKind};
use super::{DkimError, Signer, MAX_HEADER_SECTION};

/// 2026-01-01T00:00:00Z.
const T: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T)
}

/// The PEM files of one key pair, generated once for all tests (RSA key
/// generation takes a while).
fn pems() -> &'static [(KeyKind, Vec<u8>); 2] {
    static PEMS: OnceLock<[(KeyKind, Vec<u8>); 2]> = OnceLock::new();
    PEMS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        keygen(dir.path(), "example.org", "tern", false).expect("keygen");
        KeyKind::ALL.map(|kind| {
            let path = kind.path(dir.path(), "example.org", "tern");
            (kind, std::fs::read(path).expect("key file"))
        })
    })
}

/// A signer for example.org (selector base `tern`) with the shared keys.
fn signer() -> Signer {
    let dir = tempfile::tempdir().expect("temp dir");
    for (kind, pem) in pems() {
        std::fs::write(kind.path(dir.path(), "example.org", "tern"), pem).expect("write key");
    }
    let keys = DomainKeys::load(dir.path(), "example.org", "tern").expect("load");
    Signer::new(vec![keys])
}

const MESSAGE: &[u8] = b"Received: from client.example\r\n\
From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Hello\r\n\
Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
X-Mailer: test\r\n\
Message-ID: <1@example.org>\r\n\
\r\n\
Hi Bob.\r\n";

/// The signature fields of `headers`, each unfolded (CRLF + WSP removed).
fn unfolded(headers: &[u8]) -> Vec<String> {
    let text = String::from_utf8(headers.to_vec()).expect("ASCII");
    assert!(text.ends_with("\r\n"), "{text}");
    let mut fields: Vec<String> = Vec::new();
    for line in text.split_terminator("\r\n") {
        match line.strip_prefix('\t') {
            Some(rest) => fields.last_mut().expect("a first line").push_str(rest),
            None => fields.push(line.to_string()),
        }
    }
    fields
}

/// The value of `tag` in an unfolded signature field.
fn tag(field: &str, tag: &str) -> String {
    let value = field.split_once(':').expect("a field").1;
    value
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix(&format!("{tag}=")))
        .unwrap_or_else(|| panic!("no {tag}= in {field}"))
        .replace(' ', "")
}

fn sign(message: &[u8]) -> Option<Vec<String>> {
    signer()
        .sign(message, now())
        .expect("signing works")
        .map(|headers| unfolded(&headers))
}

#[test]
fn two_signatures_rsa_first_then_ed25519() {
    let fields = sign(MESSAGE).expect("signed");
    assert_eq!(fields.len(), 2, "{fields:?}");
    for (field, (a, s)) in fields.iter().zip([
        ("rsa-sha256", "tern-rsa"),
        ("ed25519-sha256", "tern-ed25519"),
    ]) {
        assert!(field.starts_with("DKIM-Signature: v=1; "), "{field}");
        assert_eq!(tag(field, "a"), a);
        assert_eq!(tag(field, "s"), s);
        assert_eq!(tag(field, "d"), "example.org");
        assert_eq!(tag(field, "c"), "relaxed/relaxed");
        assert_eq!(tag(field, "t"), T.to_string());
        assert!(!field.contains("x="), "no expiry: {field}");
    }
    // One body hash for both; signatures of the right sizes.
    assert_eq!(tag(&fields[0], "bh"), tag(&fields[1], "bh"));
    let b = |f: &str| {
        use base64::prelude::{Engine as _, BASE64_STANDARD};
        BASE64_STANDARD.decode(tag(f, "b")).expect("base64")
    };
    assert_eq!(b(&fields[0]).len(), 256, "2048-bit RSA");
    assert_eq!(b(&fields[1]).len(), 64, "Ed25519");
}

#[test]
fn the_header_lines_are_folded_and_crlf_terminated() {
    let headers = signer().sign(MESSAGE, now()).expect("ok").expect("signed");
    let text = String::from_utf8(headers).expect("ASCII");
    for line in text.split_terminator("\r\n") {
        assert!(line.len() <= 80, "{line:?}");
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }
    assert_eq!(text.matches("DKIM-Signature: ").count(), 2);
}

/// A message from example.org with `n` Cc: fields: each adds `:Cc` to `h=`,
/// which moves where the lines of `b=` end.
fn with_cc_fields(n: usize) -> Vec<u8> {
    let mut m = b"From: alice@example.org\r\nSubject: s\r\n".to_vec();
    for i in 0..n {
        m.extend_from_slice(format!("Cc: c{i}@example.net\r\n").as_bytes());
    }
    m.extend_from_slice(b"\r\nbody\r\n");
    m
}

#[test]
fn no_fold_is_left_between_b_and_the_final_semicolon() {
    let signer = signer();
    let mut full_last_lines = 0;
    for n in 0..=80 {
        let headers = signer.sign(&with_cc_fields(n), now()).unwrap().unwrap();
        let text = String::from_utf8(headers).expect("ASCII");
        assert!(!text.contains("\r\n\t;\r\n"), "n={n}: {text}");
        // (mail-auth lets a line reach 81 characters where `bh=` starts
        // near the fold width: long, but far inside RFC 5322's 998.)
        for line in text.split_terminator("\r\n") {
            assert!(line.len() <= 998, "n={n}: {line:?}");
        }
        // Where mail-auth would have folded before the `;`, the last line is
        // a full one plus the `;`.
        full_last_lines += text
            .split_terminator("\r\n")
            .filter(|l| l.len() == 77 && l.ends_with(';'))
            .count();
    }
    assert!(full_last_lines > 0, "the boundary case was not reached");
}

/// `h=` when the message has none of the fields of `OVERSIGNED_FIELDS`:
/// each listed once.
const ALL_OVERSIGNED_ONCE: &str = "From:Sender:Reply-To:Subject:Date:To:Cc:Message-ID:\
    In-Reply-To:References:MIME-Version:Content-Type:Content-Transfer-Encoding";

#[test]
fn h_names_the_fields_present_and_oversigns_those_a_reader_sees() {
    let fields = sign(MESSAGE).expect("signed");
    assert_eq!(
        tag(&fields[0], "h"),
        "From:From:Sender:Reply-To:Subject:Subject:Date:Date:To:To:Cc:Message-ID:\
         Message-ID:In-Reply-To:References:MIME-Version:Content-Type:Content-Transfer-Encoding",
        "no Received, no X-Mailer; each shown field once more than it occurs"
    );
    let message = b"From: a@example.org\r\nCc: x@y.example\r\nTo: b@c.example\r\n\
        Cc: z@y.example\r\nContent-Type: text/plain\r\nList-Id: <l.example.org>\r\n\r\n";
    let fields = sign(message).expect("signed");
    assert_eq!(
        tag(&fields[1], "h"),
        "From:From:Sender:Reply-To:Subject:Date:To:To:Cc:Cc:Cc:Message-ID:In-Reply-To:\
         References:MIME-Version:Content-Type:Content-Type:Content-Transfer-Encoding:List-Id",
        "a repeated field is listed once per occurrence, plus one; List-Id is not oversigned"
    );
    let bare = sign(b"From: a@example.org\r\n\r\nx\r\n").expect("signed");
    assert_eq!(
        tag(&bare[0], "h"),
        ALL_OVERSIGNED_ONCE.replacen("From", "From:From", 1)
    );
    assert!(super::OVERSIGNED_FIELDS
        .iter()
        .all(|f| super::SIGNED_FIELDS.contains(f)));
}

#[test]
fn only_a_single_from_at_a_signing_domain_is_signed() {
    let cases: [&[u8]; 6] = [
        b"From: alice@example.com\r\n\r\nforeign domain\r\n",
        b"From: alice@sub.example.org\r\n\r\nsubdomain\r\n",
        b"To: bob@example.org\r\n\r\nno From\r\n",
        b"From: a@example.org\r\nFrom: b@example.org\r\n\r\ntwo From fields\r\n",
        b"From: a@example.org, b@example.org\r\n\r\ntwo authors\r\n",
        b"From: friends: a@example.org;\r\n\r\na group\r\n",
    ];
    for message in cases {
        assert_eq!(
            signer().sign(message, now()).expect("no error"),
            None,
            "{}",
            String::from_utf8_lossy(message)
        );
    }
    let cases: [&[u8]; 3] = [
        b"From: Alice <alice@EXAMPLE.Org>\r\n\r\ncase-insensitive\r\n",
        b"From: \"Smith, Alice\" (work)\r\n <alice@example.org>\r\n\r\nfolded\r\n",
        b"from: alice@example.org\r\n\r\nlowercase name\r\n",
    ];
    for message in cases {
        let fields = sign(message).expect("signed");
        assert_eq!(tag(&fields[0], "d"), "example.org");
    }
}

/// Hands out one byte per read.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn reading_in_pieces_signs_the_same_bytes() {
    // Both algorithms are deterministic (RSA PKCS#1 v1.5, Ed25519): the same
    // input gives the same signatures.
    let signer = signer();
    let whole = signer.sign(MESSAGE, now()).expect("ok");
    let trickled = signer.sign_reader(Trickle(MESSAGE), now()).expect("ok");
    assert!(whole.is_some());
    assert_eq!(whole, trickled);
}

#[test]
fn messages_without_body_or_blank_line_are_signed() {
    for message in [
        &b"From: alice@example.org\r\nSubject: no body\r\n\r\n"[..],
        b"From: alice@example.org\r\nSubject: no blank line\r\n",
    ] {
        let fields = sign(message).expect("signed");
        // The relaxed hash of an empty body is the hash of nothing
        // (RFC 6376 §3.4.4): SHA-256 of the empty string.
        assert_eq!(
            tag(&fields[0], "bh"),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
    assert_eq!(
        signer().sign(b"\r\nbody only\r\n", now()).expect("ok"),
        None
    );
}

#[test]
fn a_huge_header_section_is_an_error_not_a_signature() {
    let mut message = b"From: alice@example.org\r\n".to_vec();
    while message.len() <= MAX_HEADER_SECTION {
        message.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    message.extend_from_slice(b"\r\nbody\r\n");
    assert!(matches!(
        signer().sign(&message, now()),
        Err(DkimError::HeaderTooLarge)
    ));
}

#[test]
fn dns_records_name_each_selector() {
    let signer = signer();
    let records = signer.domains()[0].dns_records();
    assert_eq!(records[0].name, "tern-rsa._domainkey.example.org.");
    assert!(records[0]
        .value
        .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"));
    assert_eq!(records[1].name, "tern-ed25519._domainkey.example.org.");
    assert!(records[1].value.starts_with("v=DKIM1; k=ed25519; p="));
    // 32 bytes of key: 44 base64 characters.
    assert_eq!(records[1].value.len(), "v=DKIM1; k=ed25519; p=".len() + 44);
}

#[test]
fn keygen_refuses_to_replace_keys_without_force() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    for (kind, pem) in pems() {
        std::fs::write(kind.path(dir.path(), "example.org", "tern"), pem).expect("write key");
    }
    match keygen(dir.path(), "example.org", "tern", false) {
        Err(DkimError::KeyExists { path, .. }) => {
            assert_eq!(path, dir.path().join("example.org.tern.rsa.pem"))
        }
        other => panic!("{other:?}"),
    }
    // --force replaces both, atomically and private.
    let keys = keygen(dir.path(), "example.org", "tern", true).expect("forced");
    let old = String::from_utf8_lossy(&pems()[1].1).into_owned();
    let new_ed =
        std::fs::read_to_string(dir.path().join("example.org.tern.ed25519.pem")).expect("new key");
    assert_ne!(old, new_ed);
    for kind in KeyKind::ALL {
        let path = kind.path(dir.path(), "example.org", "tern");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    assert_eq!(keys.domain, "example.org");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
