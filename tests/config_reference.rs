//! `config/tern.toml`, the documented reference file, is itself a valid
//! configuration with the values it documents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tern::config::{AliasSource, AliasTarget, Config, Role, TlsConfig};

fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tern.toml")
}

#[test]
fn the_reference_config_loads_with_the_documented_values() {
    let config = Config::load(&reference_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.hostname, "mail.example.org");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/tern"));
    assert_eq!(config.domains, ["example.org", "example.net"]);
    assert_eq!(config.postmaster, "alice");
    assert_eq!(config.recipient_delimiter, Some('+'));
    assert_eq!(config.tls, TlsConfig::SelfSigned);

    let listeners: Vec<(String, Role)> = config
        .listeners
        .iter()
        .map(|l| (l.address.to_string(), l.role))
        .collect();
    assert_eq!(
        listeners,
        [
            ("0.0.0.0:25".to_string(), Role::Mx),
            ("0.0.0.0:587".to_string(), Role::Submission),
            ("0.0.0.0:465".to_string(), Role::Submissions),
        ]
    );

    assert_eq!(config.users.len(), 1);
    assert_eq!(
        config.users["alice"].maildir,
        PathBuf::from("/var/lib/tern/mail/alice")
    );

    let sources: Vec<&AliasSource> = config.aliases.iter().map(|a| &a.source).collect();
    assert_eq!(
        sources,
        [
            &AliasSource::Address {
                local: "info".into(),
                domain: "example.org".into()
            },
            &AliasSource::LocalPart("abuse".into()),
            &AliasSource::Address {
                local: "lists".into(),
                domain: "example.org".into()
            },
            &AliasSource::CatchAll("example.net".into()),
        ]
    );
    assert_eq!(
        config.aliases[2].targets,
        [
            AliasTarget::User("alice".into()),
            AliasTarget::Remote("friend@example.com".into())
        ]
    );

    let limits = &config.limits;
    assert_eq!(limits.message_size, 25 * 1024 * 1024);
    assert_eq!(limits.recipients, 100);
    assert_eq!(limits.connections, 100);
    assert_eq!(limits.connections_per_ip, 10);
    assert_eq!(limits.errors, 10);
    assert_eq!(limits.line_length, 2048);
    assert_eq!(limits.command_timeout, Duration::from_secs(5 * 60));
    assert_eq!(limits.data_timeout, Duration::from_secs(3 * 60));
    assert_eq!(limits.session_timeout, Duration::from_secs(30 * 60));
}

#[test]
fn the_reference_limits_are_the_defaults() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let without_limits = text.split("\n[limits]").next().unwrap_or_default();
    let path = Path::new("tern.toml");
    let full = Config::parse(&text, path).expect("valid");
    let defaults = Config::parse(without_limits, path).expect("valid without [limits]");
    assert_eq!(full.limits, defaults.limits);
}

#[test]
fn the_commented_out_tls_table_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let uncommented = text
        .replace("# [tls]\n", "[tls]\n")
        .replace("# cert = ", "cert = ")
        .replace("# key = ", "key = ");
    assert_ne!(text, uncommented, "the [tls] example is still in the file");
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.tls,
        TlsConfig::Files {
            cert: "/etc/tern/tls/fullchain.pem".into(),
            key: "/etc/tern/tls/key.pem".into()
        }
    );
}
