//! `config/tern.toml`, the documented reference file, is itself a valid
//! configuration with the values it documents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tern::config::{
    AliasSource, AliasTarget, Config, Credentials, DomainRoute, QueueSettings, Relay, Role,
    SenderPattern, Smarthost, SmarthostTls, TlsConfig, TlsPolicy,
};

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
            ("[::]:25".to_string(), Role::Mx),
            ("[::]:587".to_string(), Role::Submission),
            ("[::]:465".to_string(), Role::Submissions),
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
    assert_eq!(limits.local_messages_per_hour, 100);
    assert_eq!(limits.connections, 100);
    assert_eq!(limits.connections_per_ip, 10);
    assert_eq!(limits.errors, 10);
    assert_eq!(limits.line_length, 2048);
    assert_eq!(limits.command_timeout, Duration::from_secs(5 * 60));
    assert_eq!(limits.data_timeout, Duration::from_secs(3 * 60));
    assert_eq!(limits.session_timeout, Duration::from_secs(30 * 60));
    assert_eq!(limits.min_data_rate, 1024);
    assert_eq!(limits.free_space, 100 << 20);
    for role in [Role::Mx, Role::Submission, Role::Submissions] {
        let budget = limits.budget(role);
        assert_eq!((budget.connections, budget.connections_per_ip), (100, 10));
    }

    assert!(config.mx.verify_sender_domain);
    assert!(config.mx.sender_domain_exempt.is_empty());
    assert_eq!(config.mx.dns_timeout, Duration::from_secs(5));

    let relay = &config.relay;
    assert!(relay.nameservers.is_empty());
    assert_eq!(relay.port, 25);
    assert_eq!(relay.tls, TlsPolicy::Opportunistic);
    assert_eq!(
        relay.ca_file,
        PathBuf::from("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(relay.smarthost, None);
    assert!(relay.routes.is_empty());
    assert_eq!(relay.concurrency_per_destination, 4);
    assert_eq!(relay.connect_timeout, Duration::from_secs(30));
    assert_eq!(relay.command_timeout, Duration::from_secs(5 * 60));

    let queue = &config.queue;
    assert_eq!(queue.lifetime, Duration::from_secs(5 * 86_400));
    assert_eq!(queue.delay_notice, Duration::from_secs(4 * 3600));
    assert_eq!(queue.retry_first, Duration::from_secs(5 * 60));
    assert_eq!(queue.retry_max, Duration::from_secs(4 * 3600));

    // [dkim] is a commented-out example: nothing is signed.
    assert_eq!(config.dkim, None);
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
fn the_reference_relay_and_queue_are_the_defaults() {
    let config = Config::load(&reference_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.relay, Relay::default());
    assert_eq!(config.queue, QueueSettings::default());
}

/// `text` with every commented-out example table headed `# {header}`
/// uncommented: the header line and the `# key = value` lines right after it.
fn uncomment(text: &str, header: &str) -> String {
    let mut in_example = false;
    let mut result = String::new();
    for line in text.lines() {
        let example_key = line
            .strip_prefix("# ")
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter(|rest| rest.contains(" = "));
        if line == format!("# {header}") {
            in_example = true;
            result.push_str(header);
        } else if let (true, Some(key)) = (in_example, example_key) {
            result.push_str(key);
        } else {
            in_example = false;
            result.push_str(line);
        }
        result.push('\n');
    }
    result
}

#[test]
fn the_commented_out_smarthost_and_routes_are_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let uncommented = uncomment(&uncomment(&text, "[relay.smarthost]"), "[[route]]");
    assert!(
        uncommented.contains("\n[relay.smarthost]\nhost = "),
        "the smarthost example is still in the file"
    );
    assert_eq!(
        uncommented.matches("\n[[route]]\ndomain = ").count(),
        2,
        "the two route examples are still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.relay.smarthost,
        Some(Smarthost {
            host: "smtp.provider.example".into(),
            port: 587,
            tls: SmarthostTls::StartTls,
            auth: Some(Credentials {
                user: "me@provider.example".into(),
                password: "secret".into()
            }),
        })
    );
    assert_eq!(
        config.relay.routes,
        [
            DomainRoute {
                domain: "partner.example".into(),
                host: Some(("mx.partner.example".into(), 2525)),
                tls: Some(TlsPolicy::Required),
            },
            DomainRoute {
                domain: "bank.example".into(),
                host: None,
                tls: Some(TlsPolicy::Required),
            },
        ]
    );
    assert!(config
        .summary(Path::new("tern.toml"))
        .ends_with(", smarthost smtp.provider.example:587"));
}

#[test]
fn the_commented_out_role_budgets_are_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let mut uncommented = text.clone();
    for header in ["[limits.mx]", "[limits.submission]", "[limits.submissions]"] {
        uncommented = uncomment(&uncommented, header);
        assert!(
            uncommented.contains(&format!("\n{header}\nconnections = ")),
            "the {header} example is still in the file"
        );
    }
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let budgets: Vec<(usize, usize)> = [Role::Mx, Role::Submission, Role::Submissions]
        .into_iter()
        .map(|role| config.limits.budget(role))
        .map(|b| (b.connections, b.connections_per_ip))
        .collect();
    assert_eq!(budgets, [(300, 10), (20, 10), (20, 10)]);
}

#[test]
fn the_nameservers_example_is_valid() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let example = text
        .lines()
        .find_map(|line| line.strip_prefix("# Example: nameservers = "))
        .expect("the reference shows an example");
    let with_example = text.replacen(
        "\nnameservers = []\n",
        &format!("\nnameservers = {example}\n"),
        1,
    );
    assert_ne!(text, with_example, "nameservers = [] is in [relay]");
    let config =
        Config::parse(&with_example, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let nameservers: Vec<String> = config
        .relay
        .nameservers
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(nameservers, ["127.0.0.1:5353", "192.0.2.53:53"]);
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

#[test]
fn the_commented_out_dovecot_table_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    assert_eq!(
        Config::parse(&text, Path::new("tern.toml"))
            .unwrap()
            .dovecot,
        None
    );
    let uncommented = uncomment(&text, "[dovecot]");
    assert!(
        uncommented.contains("\n[dovecot]\n"),
        "the [dovecot] example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let dovecot = config.dovecot.expect("[dovecot] is parsed");
    assert_eq!(dovecot.users_file, PathBuf::from("/run/tern/dovecot-users"));
    assert_eq!(dovecot.group.as_deref(), Some("dovecot"));
}

#[test]
fn the_commented_out_dkim_table_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let uncommented = uncomment(&text, "[dkim]");
    assert!(
        uncommented.contains("\n[dkim]\nselector = "),
        "the [dkim] example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let dkim = config.dkim.expect("[dkim] is parsed");
    assert_eq!(dkim.selector, "tern");
    assert_eq!(dkim.keys_dir, PathBuf::from("/var/lib/tern/dkim"));
    assert_eq!(dkim.domains, ["example.org", "example.net"]);
    // The documented defaults are the values the example spells out.
    let bare = uncommented.replace(
        "[dkim]\nselector = \"tern\"\nkeys = \"/var/lib/tern/dkim\"\n\
         domains = [\"example.org\", \"example.net\"]\n",
        "[dkim]\n",
    );
    assert_ne!(
        bare, uncommented,
        "the [dkim] example in config/tern.toml changed"
    );
    let defaults = Config::parse(&bare, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let defaults = defaults.dkim.expect("[dkim] is parsed");
    assert_eq!(
        (defaults.selector, defaults.keys_dir, defaults.domains),
        (dkim.selector, dkim.keys_dir, dkim.domains)
    );
}

#[test]
fn the_commented_out_send_as_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let uncommented = text.replacen("\n# send_as = [", "\nsend_as = [", 1);
    assert_ne!(
        text, uncommented,
        "the send_as example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.users["alice"].send_as,
        [
            SenderPattern::Address {
                local: "newsletter".into(),
                domain: "example.org".into()
            },
            SenderPattern::Domain("example.net".into()),
        ]
    );
    // As shipped, nobody has exceptions.
    let shipped = Config::load(&reference_path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(shipped.users["alice"].send_as.is_empty());
    assert!(shipped.local_senders.is_empty());
}

#[test]
fn the_commented_out_local_senders_are_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let uncommented = text
        .replacen("\n# [local_senders]\n", "\n[local_senders]\n", 1)
        .replacen("\n# \"www-data\" = ", "\n\"www-data\" = ", 1)
        .replacen("\n# backup = ", "\nbackup = ", 1);
    assert_eq!(
        uncommented
            .matches("\n[local_senders]\n\"www-data\" = [")
            .count(),
        1,
        "the [local_senders] example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.local_senders["www-data"],
        [SenderPattern::Address {
            local: "noreply".into(),
            domain: "example.org".into()
        }]
    );
    assert_eq!(
        config.local_senders["backup"],
        [SenderPattern::Domain("example.net".into())]
    );
}

#[test]
fn the_public_addresses_and_the_commented_out_check_table_are_valid() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let config = Config::parse(&text, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let public: Vec<String> = config
        .public_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(public, ["192.0.2.25", "2001:db8::25"]);
    assert!(config.check.blocklists.is_empty(), "the default is none");
    let uncommented = uncomment(&text, "[check]");
    assert!(
        uncommented.contains("\n[check]\nblocklists = "),
        "the [check] example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.check.blocklists, ["zen.spamhaus.org"]);
}

#[test]
fn the_commented_out_acme_mta_sts_and_autoconfig_are_valid_when_uncommented() {
    use tern::config::{Challenge, MtaStsMode, LETS_ENCRYPT};
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    let plain = Config::parse(&text, Path::new("tern.toml")).unwrap();
    assert!(plain.acme.is_none() && plain.mta_sts.is_none() && plain.autoconfig.is_none());
    let mut uncommented = text.clone();
    for header in ["[[listener]]", "[acme]", "[mta_sts]", "[autoconfig]"] {
        uncommented = uncomment(&uncommented, header);
    }
    for example in [
        "\n[[listener]]\naddress = \"[::]:443\"\nrole = \"https\"\n",
        "\n[[listener]]\naddress = \"[::]:80\"\nrole = \"http\"\n",
        "\n[acme]\ncontact = ",
        "\n[mta_sts]\nmode = ",
        "\n[autoconfig]\nimap_port = ",
    ] {
        assert!(
            uncommented.contains(example),
            "{example:?} is not in the file"
        );
    }
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let roles: Vec<Role> = config.listeners.iter().map(|l| l.role).collect();
    assert_eq!(
        roles,
        [
            Role::Mx,
            Role::Submission,
            Role::Submissions,
            Role::Https,
            Role::Http
        ]
    );
    let acme = config.acme.clone().expect("[acme] is parsed");
    assert_eq!(acme.directory, LETS_ENCRYPT);
    assert_eq!(acme.contact, ["mailto:postmaster@example.org"]);
    assert_eq!(acme.challenge, Challenge::TlsAlpn01);
    assert_eq!(acme.reload_command, ["systemctl", "reload", "dovecot"]);
    let sts = config.mta_sts.clone().expect("[mta_sts] is parsed");
    assert_eq!(sts.mode, MtaStsMode::Testing);
    assert_eq!(sts.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(config.autoconfig.clone().unwrap().imap_port, 993);
    assert_eq!(
        config.certificate_names(),
        [
            "mail.example.org",
            "mta-sts.example.org",
            "mta-sts.example.net",
            "autoconfig.example.org",
            "autoconfig.example.net"
        ]
    );
}

#[test]
fn the_commented_out_spam_table_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(reference_path()).expect("readable");
    assert_eq!(
        Config::parse(&text, Path::new("tern.toml"))
            .expect("valid")
            .spam,
        None,
        "without [spam] nothing is scanned"
    );
    let uncommented = uncomment(&text, "[spam]");
    assert!(
        uncommented.contains("\n[spam]\nrspamd = "),
        "the [spam] example is still in the file"
    );
    let config =
        Config::parse(&uncommented, Path::new("tern.toml")).unwrap_or_else(|e| panic!("{e}"));
    let spam = config.spam.expect("[spam] is parsed");
    assert_eq!(spam.rspamd, "127.0.0.1:11333".parse().unwrap());
    assert_eq!(spam.timeout, Duration::from_secs(10));
    assert_eq!(spam.on_failure, tern::config::SpamFailure::Accept);
    assert!(!spam.scan_authenticated);
}
