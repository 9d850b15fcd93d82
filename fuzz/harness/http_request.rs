//! Target `http_request`: the https/http listeners' request head parser
//! ([`tern::web::http::parse`]) and the pages answered for what it accepts
//! ([`tern::web::pages::respond`]), with MTA-STS and autoconfig on.
//!
//! Input: a request head (request line, header fields, empty line).
//!
//! Invariants: no panic; an accepted request is GET or HEAD with a path
//! starting with `/`, printable ASCII, a Host without a port, upper case or
//! a trailing dot; every answer is 200 or 404, its head one
//! `Content-Length` that matches the body, and no header line holds a CR
//! or LF of the client's (no response splitting).

use std::path::Path;
use std::sync::OnceLock;

use tern::config::Config;
use tern::web::http::parse;
use tern::web::pages::{respond, MailPorts};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::parse(
            "hostname = \"mx.example.org\"\ndata_dir = \"/nonexistent\"\n\
             domains = [\"example.org\", \"example.net\"]\n\
             [[listener]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\
             [[listener]]\naddress = \"127.0.0.1:443\"\nrole = \"https\"\n\
             [[user]]\nname = \"me\"\n[mta_sts]\n[autoconfig]\n",
            Path::new("tern.toml"),
        )
        .expect("the fuzz config is valid")
    })
}

/// Parses `data` and answers it (see the module documentation).
pub fn run(data: &[u8]) {
    let Ok(request) = parse(data) else {
        return;
    };
    assert!(request.path.starts_with('/'), "{request:?}");
    assert!(
        request.path.bytes().all(|b| b.is_ascii_graphic()),
        "{request:?}"
    );
    assert!(
        !request.host.contains(|c: char| c.is_ascii_uppercase()) && !request.host.ends_with('.'),
        "{request:?}"
    );
    let ports = MailPorts {
        submission: Some(587),
        submissions: Some(465),
    };
    let response = respond(config(), ports, &request);
    assert!(matches!(response.status, 200 | 404), "{response:?}");
    let bytes = response.to_bytes(false);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
    assert!(head.split("\r\n").all(|l| !l.contains(['\r', '\n'])));
    assert_eq!(head.matches("\r\nContent-Length: ").count(), 1, "{head}");
    assert!(head.contains(&format!(
        "\r\nContent-Length: {}\r\n",
        bytes.len() - end - 4
    )));
}
