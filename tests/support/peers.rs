//! Real SMTP peers as child processes: Debian's Python with smtplib
//! (`tests/fixtures/smtp_send.py`) and swaks. Every run is bounded in time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's interpreter: the `python3` on PATH may be another one.
pub const PYTHON: &str = "/usr/bin/python3";

/// How long one peer may take to send one message (3 MiB over TLS included).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished child process printed.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The queue id from a `250 2.0.0 Ok: queued as <id>` line of the output.
    pub fn queue_id(&self) -> Option<String> {
        let at = self.stdout.rfind("queued as ")? + "queued as ".len();
        let id: String = self.stdout[at..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        (!id.is_empty()).then_some(id)
    }

    /// Both outputs, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` to completion; kills it after `timeout` and panics.
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{described} did not finish in {timeout:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The path of swaks. A missing peer fails the test with the command that
/// installs it (scripts/test installs it on Debian); it never counts as a pass.
/// STARTTLS in swaks needs Net::SSLeay (libnet-ssleay-perl), a Recommends that
/// `--no-install-recommends` leaves out: that is checked too.
pub fn swaks() -> PathBuf {
    let path = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join("swaks"))
        .find(|p| p.is_file())
        .expect("swaks is not installed: apt-get install -y swaks libnet-ssleay-perl");
    let ssleay = Command::new("perl")
        .args(["-MNet::SSLeay", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ssleay,
        "swaks cannot do TLS without Net::SSLeay: apt-get install -y libnet-ssleay-perl"
    );
    path
}

/// How a Python smtplib run sends its message.
#[derive(Debug, Clone, Default)]
pub struct PythonSend {
    pub from: String,
    pub to: Vec<String>,
    pub mail_options: Vec<String>,
    pub starttls: bool,
    /// BDAT chunk size; `None` sends with DATA.
    pub bdat: Option<usize>,
    pub helo: String,
}

/// Sends `message` (exact bytes, in a file under `dir`) to `port` on
/// localhost with smtplib; `cafile` is the certificate to trust for STARTTLS.
pub fn python_send(dir: &Path, port: u16, cafile: &Path, send: &PythonSend, message: &[u8]) -> Run {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: apt-get install -y python3"
    );
    let file = unique_file(dir, "python", message);
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("smtp_send.py"))
        .args(["--host", "localhost", "--port", &port.to_string()])
        .args(["--helo", &send.helo, "--from", &send.from])
        .arg("--file")
        .arg(&file)
        .arg("--cafile")
        .arg(cafile);
    for to in &send.to {
        cmd.args(["--to", to]);
    }
    for option in &send.mail_options {
        cmd.arg(format!("--mail-option={option}"));
    }
    if send.starttls {
        cmd.arg("--starttls");
    }
    if let Some(chunk) = send.bdat {
        cmd.args(["--bdat", &chunk.to_string()]);
    }
    run(cmd, PEER_TIMEOUT)
}

/// Writes `bytes` to a fresh file in `dir`.
pub fn unique_file(dir: &Path, prefix: &str, bytes: &[u8]) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!(
        "{prefix}-{}.eml",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bytes).expect("write message file");
    path
}
