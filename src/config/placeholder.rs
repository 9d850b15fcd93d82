//! Recognising a placeholder configuration: a hostname or local domain that
//! is one of the names reserved for documentation (RFC 2606: example.com,
//! example.net, example.org and anything under them or under .example).
//! Mail for such a name never arrives, so a config that still has one has not
//! been filled in by its owner; the daemon says so in `systemctl status`
//! (sd_notify STATUS=) and in the journal. The names reserved for testing
//! (.test, .invalid, .localhost) are not flagged: test setups use them on
//! purpose.

use super::Config;

/// Whether `name` (lowercase, no trailing dot) is a documentation name.
pub(crate) fn is_documentation_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    ["example.com", "example.net", "example.org", "example"]
        .iter()
        .any(|reserved| name == *reserved || name.ends_with(&format!(".{reserved}")))
}

impl Config {
    /// The hostname and local domains that are documentation names, in that
    /// order; empty for a configuration an owner has filled in.
    pub fn placeholder_names(&self) -> Vec<&str> {
        std::iter::once(self.hostname.as_str())
            .chain(self.domains.iter().map(String::as_str))
            .filter(|name| is_documentation_name(name))
            .collect()
    }

    /// For a placeholder configuration read from `path`: one line telling
    /// the owner what to edit. `None` when nothing is a placeholder.
    pub fn placeholder_notice(&self, path: &std::path::Path) -> Option<String> {
        let names = self.placeholder_names();
        if names.is_empty() {
            return None;
        }
        Some(format!(
            "placeholder configuration ({} reserved for documentation): edit hostname, domains and [[user]] in {}, then systemctl reload tern",
            names.join(", "),
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_names_are_recognised() {
        for name in [
            "example.org",
            "mail.example.org",
            "EXAMPLE.NET",
            "example.com.",
            "host.example",
        ] {
            assert!(is_documentation_name(name), "{name}");
        }
        for name in [
            "tern.test",
            "example.org.uk",
            "myexample.org",
            "notexample",
            "mail.example-org.net",
        ] {
            assert!(!is_documentation_name(name), "{name}");
        }
    }

    fn config(hostname: &str, domains: &str) -> Config {
        let text = format!(
            "hostname = \"{hostname}\"\ndata_dir = \"/x\"\ndomains = {domains}\n\
             [[listener]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\
             [[user]]\nname = \"owner\"\n"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn a_placeholder_config_says_what_to_edit() {
        let placeholder = config("mail.example.org", r#"["example.org", "tern.test"]"#);
        assert_eq!(
            placeholder.placeholder_names(),
            ["mail.example.org", "example.org"]
        );
        let notice = placeholder
            .placeholder_notice(std::path::Path::new("/etc/tern/tern.toml"))
            .unwrap();
        assert!(notice.contains("mail.example.org, example.org"), "{notice}");
        assert!(notice.contains("/etc/tern/tern.toml"), "{notice}");
        let filled = config("mx.tern.test", r#"["tern.test"]"#);
        assert!(filled.placeholder_names().is_empty());
        assert_eq!(filled.placeholder_notice(std::path::Path::new("x")), None);
    }
}
