//! The fuzz harnesses (fuzz/harness/) over their saved inputs, under plain
//! `cargo test`: for each target, every file of fuzz/corpus/TARGET/ and
//! fuzz/regressions/TARGET/ goes through the same `run` function the
//! libFuzzer target calls, so a regression fails here without the fuzz
//! toolchain. One `#[test]` per target.
//!
//! `cargo test --test fuzz_corpus -- --ignored seed_corpora` (re)writes the
//! seed inputs from the SMTP transcripts (tests/transcripts/*.txt: the `>`
//! and `>>` lines as the client's byte stream), the config fixtures
//! (tests/configs/*/tern.toml, config/tern.toml) and sample spool records;
//! scripts/fuzz then grows and minimizes the corpus.

// The harness is `pub` for the fuzz crate, which uses it as a library.
#[allow(unreachable_pub)]
#[path = "../fuzz/harness/mod.rs"]
mod harness;
#[path = "support/transcript_lang.rs"]
#[allow(dead_code, unreachable_pub)]
mod transcript_lang;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs target `name` over its corpus and regressions; a panic names the file.
fn replay(name: &str) {
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for file in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| run(&data));
            if let Err(panic) = outcome {
                eprintln!(
                    "fuzz input {} fails (replay it with scripts/fuzz)",
                    file.display()
                );
                std::panic::resume_unwind(panic);
            }
            count += 1;
        }
    }
    assert!(count > 0, "no saved inputs for fuzz target {name}");
    eprintln!("fuzz target {name}: {count} saved inputs pass");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn message_header() {
    replay("message_header");
}

#[test]
fn smtp_auth() {
    replay("smtp_auth");
}

#[test]
fn http_request() {
    replay("http_request");
}

#[test]
fn smtp_command() {
    replay("smtp_command");
}

#[test]
fn smtp_data() {
    replay("smtp_data");
}

#[test]
fn smtp_session() {
    replay("smtp_session");
}

#[test]
fn spool_record() {
    replay("spool_record");
}

#[test]
fn spool_segment() {
    replay("spool_segment");
}

#[test]
fn every_target_is_replayed() {
    let dir = fuzz_dir().join("fuzz_targets");
    for file in inputs(&dir) {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        assert!(
            harness::TARGETS.iter().any(|(n, _)| *n == stem),
            "fuzz target {stem} has no harness in fuzz/harness/mod.rs"
        );
    }
    assert_eq!(inputs(&dir).len(), harness::TARGETS.len());
}

/// Writes `data` as a seed of `target` named by its content.
fn seed(target: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    let name = format!("seed-{:08x}-{}", crc32fast::hash(data), data.len());
    fs::write(dir.join(name), data).expect("write seed");
}

/// The client's side of a transcript: its reads, the TLS handshakes left
/// out (the fuzz driver completes them at once).
fn client_reads(script: &transcript_lang::Script) -> Vec<Vec<u8>> {
    script
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            transcript_lang::Kind::Send(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
#[ignore = "writes the seed corpora; run by hand"]
fn seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut transcripts = inputs(&root.join("tests/transcripts"));
    transcripts.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    for path in &transcripts {
        let text = fs::read_to_string(path).expect("transcript");
        let script = transcript_lang::parse(&text)
            .unwrap_or_else(|(line, e)| panic!("{}:{line}: {e}", path.display()));
        let reads = client_reads(&script);
        let stream: Vec<u8> = reads.concat();
        // The session: MX (STARTTLS offered) and submission (AUTH required).
        for flags in [0x01, 0x07] {
            let mut input = vec![flags, 6, 100];
            input.extend(harness::smtp_session::encode_packets(&reads));
            seed("smtp_session", &input);
        }
        // DATA content: everything after each DATA line.
        let mut from = 0;
        while let Some(at) = find(&stream[from..], b"DATA\r\n") {
            let start = from + at + 6;
            let mut input = vec![128, 4];
            input.extend_from_slice(&stream[start..stream.len().min(start + 2048)]);
            seed("smtp_data", &input);
            if let Some(end) = find(&stream[start..], b"\r\n.\r\n") {
                seed("message_header", &stream[start..start + end + 2]);
            }
            from = start;
        }
        // Command lines, and AUTH exchanges (the AUTH argument, then the
        // lines after it).
        let lines: Vec<&[u8]> = stream
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty() && l.len() <= 512)
            .collect();
        for (i, line) in lines.iter().enumerate() {
            if line.len() <= 200 {
                seed("smtp_command", line);
            }
            if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"AUTH ") {
                let mut input = line[5..].to_vec();
                for next in lines.iter().skip(i + 1).take(2) {
                    input.push(b'\n');
                    input.extend_from_slice(next);
                }
                seed("smtp_auth", &input);
            }
        }
    }
    // Configs: the reference and every broken fixture.
    seed(
        "config",
        &fs::read(root.join("config/tern.toml")).expect("config/tern.toml"),
    );
    for dir in fs::read_dir(root.join("tests/configs")).expect("tests/configs") {
        let file = dir.expect("entry").path().join("tern.toml");
        if let Ok(text) = fs::read(&file) {
            seed("config", &text);
        }
    }
    // Spool records and a segment holding them.
    let mut segment = tern::queue::record::SEGMENT_MAGIC.to_vec();
    for (record, body) in sample_records() {
        let frame = record.encode();
        seed("spool_record", &frame[tern::queue::record::FRAME_HEADER..]);
        segment.extend_from_slice(&frame);
        segment.extend_from_slice(&body);
    }
    for flags in [0u8, 2] {
        let mut input = vec![flags];
        input.extend_from_slice(&segment);
        seed("spool_segment", &input);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One record of every kind (a message with its body).
fn sample_records() -> Vec<(tern::queue::Record, Vec<u8>)> {
    use tern::queue::record::MessageRecord;
    use tern::queue::{Diagnostic, QueueId, RcptStatus, Record};
    use tern::smtp::{Address, EnhancedCode, Envelope, Recipient, Route};
    let body = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    let id = QueueId(0x1234_5678_9abc);
    let message = Record::Message(MessageRecord {
        id,
        received_at: 1_800_000_000_000,
        envelope: Envelope {
            sender: Some(Address::parse("\"odd sender\"@b.example").expect("address")),
            recipients: vec![
                Recipient {
                    original: "Me@example.org".into(),
                    route: Route::Local("me".into()),
                },
                Recipient {
                    original: "friend@[192.0.2.1]".into(),
                    route: Route::Remote(Address::parse("friend@[192.0.2.1]").expect("address")),
                },
            ],
            eight_bit: true,
            smtputf8: false,
        },
        statuses: vec![
            RcptStatus::Pending,
            RcptStatus::Failed(Diagnostic::reply(550, EnhancedCode(5, 1, 1), "no")),
        ],
        prepend: b"Received: x\r\n".to_vec(),
        body_len: body.len() as u64,
        body_crc: crc32fast::hash(&body),
        folder: Default::default(),
    });
    vec![
        (message, body),
        (
            Record::Recipient {
                id,
                index: 0,
                status: RcptStatus::Delivered(Diagnostic::note(EnhancedCode(2, 0, 0), "maildir")),
            },
            Vec::new(),
        ),
        (
            Record::Attempt {
                id,
                attempts: 2,
                next_attempt: 5,
                errors: vec![Diagnostic::reply(451, EnhancedCode(4, 0, 0), "later")],
            },
            Vec::new(),
        ),
        (Record::Hold { id, held: true }, Vec::new()),
        (Record::DelayNotified { id }, Vec::new()),
        (Record::Done { id }, Vec::new()),
    ]
}
