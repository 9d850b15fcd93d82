//! dkimpy (Debian's python3-dkim), the independent check of our DKIM
//! signatures: `tests/fixtures/dkim_verify.py` verifies a message against the
//! TXT records `tern dkim dns` or `tern dkim keygen` printed.

use std::process::Command;

use super::peers::{fixture, run, unique_file, Run, PEER_TIMEOUT, PYTHON};

/// Fails loudly when dkimpy is missing: the independent check is the point.
pub fn require_dkimpy() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import dkim, nacl"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "dkimpy is missing: apt-get install -y python3-dkim python3-nacl \
         (Debian's {PYTHON} must import dkim and nacl)"
    );
}

/// What dkimpy said about a message: one line per signature.
pub struct Verdict {
    pub run: Run,
}

impl Verdict {
    pub fn lines(&self) -> Vec<&str> {
        self.run.stdout.lines().collect()
    }

    /// Every signature passed, and there were these algorithms, in order.
    pub fn assert_pass(&self, algorithms: &[&str]) {
        let lines = self.lines();
        assert!(
            self.run.success,
            "dkimpy failed:\n{}",
            self.run.transcript()
        );
        assert_eq!(lines.len(), algorithms.len(), "{}", self.run.transcript());
        for (line, a) in lines.iter().zip(algorithms) {
            assert!(
                line.starts_with(&format!("pass a={a} d=example.org ")),
                "{}",
                self.run.transcript()
            );
        }
    }

    /// dkimpy refused the message: every signature failed.
    pub fn assert_fail(&self) {
        assert!(
            !self.run.success,
            "dkimpy passed:\n{}",
            self.run.transcript()
        );
        let lines = self.lines();
        assert!(!lines.is_empty(), "{}", self.run.transcript());
        assert!(
            lines.iter().all(|l| l.starts_with("fail ")),
            "{}",
            self.run.transcript()
        );
    }
}

/// Runs dkim_verify.py on `message` with the TXT records in `zone`.
pub fn dkimpy(message: &[u8], zone: &str) -> Verdict {
    require_dkimpy();
    let dir = tempfile::tempdir().expect("temp dir");
    let dns = unique_file(dir.path(), "zone", zone.as_bytes());
    let file = unique_file(dir.path(), "signed", message);
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("dkim_verify.py"))
        .arg("--dns")
        .arg(&dns)
        .arg(&file);
    Verdict {
        run: run(cmd, PEER_TIMEOUT),
    }
}

/// A fresh RSA key for a test domain: the PEM file (PKCS#1, which dkimpy
/// reads) in `dir`, and the `v=DKIM1` TXT record publishing it.
pub fn rsa_test_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let key = dir.join("dkim-test-key.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl (apt-get install -y openssl)");
    assert!(made.status.success(), "openssl genrsa failed: {made:?}");
    let public = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl rsa");
    assert!(public.status.success(), "openssl rsa failed: {public:?}");
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(&public.stdout);
    (key, format!("v=DKIM1; k=rsa; p={p}"))
}

/// `message` signed by dkimpy (tests/fixtures/dkim_sign.py) for `domain`
/// with `selector`, as another domain's server would send it.
pub fn dkimpy_sign(message: &[u8], key: &std::path::Path, domain: &str, selector: &str) -> Vec<u8> {
    require_dkimpy();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = unique_file(dir.path(), "unsigned", message);
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("dkim_sign.py"))
        .arg("--key")
        .arg(key)
        .args(["--domain", domain, "--selector", selector])
        .arg(&file);
    let out = cmd.output().expect("run dkim_sign.py");
    assert!(
        out.status.success(),
        "dkim_sign.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
